"""One local run of an export at a time, across the processes and machines sharing its storage.

The Function App runs an export as one orchestration instance per export, so a second
start is refused while one runs (409). Local runs (`cli.py run`) have no such instance:
two of them at once (a scheduled job overlapping the one before, a `--resume` while the
run still goes) sent the same rows twice, each report counting only its own requests.
The hold is a blob lease on `export-runs/<export>/local-run.lock`, taken for LEASE_S and
renewed while the run goes, so that a run that was killed frees it within LEASE_S.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob import ContainerClient

__all__ = ["RunInProgress", "export_hold"]

log = logging.getLogger(__name__)

LEASE_S = 60  # the service takes 15 to 60 seconds (or infinite, which a killed run would never free)
RENEW_S = 15


class RunInProgress(Exception):
    """Another local run of the export holds it; the message says who, since when."""


@contextmanager
def export_hold(container: ContainerClient, export: str) -> Iterator[None]:
    """Hold `export` for this run (RunInProgress if another run holds it) until the block ends."""
    blob = container.get_blob_client(f"{export}/local-run.lock")
    try:
        blob.upload_blob(b"", overwrite=False)
    except ResourceExistsError:
        pass  # left by an earlier run: the lease on it is what counts
    try:
        lease = blob.acquire_lease(lease_duration=LEASE_S)
    except ResourceExistsError:  # 409 LeaseAlreadyPresent
        holder = (blob.get_blob_properties().metadata or {}).get("holder", "another run")
        raise RunInProgress(
            f'export "{export}" is being run already, by {holder}: wait for it to end (a run that was '
            f"killed frees it within {LEASE_S} s), then run again") from None
    blob.set_blob_metadata({"holder": _holder()}, lease=lease)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(RENEW_S):
            try:
                lease.renew()
            except HttpResponseError as error:  # storage unreachable for a while: the run goes on unheld
                log.warning("the hold on export %s could not be renewed: %s", export, error.reason)

    keeper = threading.Thread(target=renew, name=f"hold-{export}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join()
        try:
            lease.release()
        except HttpResponseError:  # lost meanwhile: it expires on its own
            pass


def _holder() -> str:
    """Who holds the export, for the message another run gets: user, machine, process, since when."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "a local user"
    holder = f"{user} on {socket.gethostname()} (process {os.getpid()}) since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
    return holder.encode("ascii", "replace").decode()  # metadata travels in a header
