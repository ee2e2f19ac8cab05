"""One local run of an export at a time, across the processes and machines sharing its storage.

The Function App runs an export as one orchestration instance per export, so a second
start is refused while one runs (409). Local runs (`cli.py run`) have no such instance:
two of them at once (a scheduled job overlapping the one before, a `--resume` while the
run still goes) sent the same rows twice, each report counting only its own requests.
The hold is a blob lease on `export-runs/<export>/local-run.lock`, taken for LEASE_S and
renewed while the run goes, so that a run that was killed frees it within LEASE_S, or
at once for a run started on the same machine (its process is seen to be gone).
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobClient, BlobLeaseClient, ContainerClient

__all__ = ["RunInProgress", "export_hold"]

log = logging.getLogger(__name__)

LEASE_S = 60  # the service takes 15 to 60 seconds (or infinite, which a killed run would never free)
RENEW_S = 15
NAMING_S = 1.0  # how long a run that has just taken the lease may take to name itself


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
        lease = _take(blob, export)
    except RunInProgress:
        # A run killed on this machine (`kill -9`, then `--resume` at once) need not be waited
        # for: its process is gone. Elsewhere, its lease runs out within LEASE_S.
        if not _held_by_a_process_gone(blob):
            raise
        BlobLeaseClient(blob).break_lease(lease_break_period=0)
        lease = _take(blob, export)
    blob.set_blob_metadata(_holder(), lease=lease)
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


def _take(blob: BlobClient, export: str) -> BlobLeaseClient:
    try:
        return blob.acquire_lease(lease_duration=LEASE_S)
    except ResourceExistsError:  # 409 LeaseAlreadyPresent
        holder = (blob.get_blob_properties().metadata or {}).get("holder", "another run")
        raise RunInProgress(
            f'export "{export}" is being run already, by {holder}: wait for it to end (a run that was '
            f"killed frees it within {LEASE_S} s), then run again") from None


def _held_by_a_process_gone(blob: BlobClient) -> bool:
    """True if the holder named in the lock's metadata was a process of this machine that no
    longer runs: its lease is left from a run that was killed."""
    named = blob.get_blob_properties().metadata or {}
    if named.get("host") != socket.gethostname() or not _gone(named.get("pid", "")):
        return False
    # A run takes the lease, then names itself: one that has just taken it is named by now.
    time.sleep(NAMING_S)
    return (blob.get_blob_properties().metadata or {}).get("pid") == named["pid"]


def _gone(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return True
    except PermissionError:  # another user's process, running
        return False
    return False


def _holder() -> dict[str, str]:
    """Who holds the export, for the message another run gets (user, machine, process, since
    when), and for telling that process gone."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "a local user"
    host = socket.gethostname()
    holder = f"{user} on {host} (process {os.getpid()}) since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
    return {name: value.encode("ascii", "replace").decode()  # metadata travels in headers
            for name, value in {"holder": holder, "host": host, "pid": str(os.getpid())}.items()}
