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
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceModifiedError
from azure.storage.blob import BlobClient, BlobLeaseClient, ContainerClient

from shared.processes import gone_from_here, this_process
from shared.state import RunStore

__all__ = ["RunInProgress", "export_hold", "local_user"]

log = logging.getLogger(__name__)

LEASE_S = 60  # the service takes 15 to 60 seconds (or infinite, which a killed run would never free)
RENEW_S = 15
NAMING_S = 1.0  # how long a run that has just taken the lease may take to name itself


class RunInProgress(Exception):
    """Another local run of the export holds it; the message says who, since when."""


@contextmanager
def export_hold(container: ContainerClient, export: str) -> Iterator[None]:
    """Hold `export` for this run (RunInProgress if another run holds it) until the block ends."""
    blob = container.get_blob_client(RunStore.hold_path(export))
    try:
        blob.upload_blob(b"", overwrite=False)
    except ResourceExistsError:
        pass  # left by an earlier run: the lease on it is what counts
    try:
        lease = _take(blob, export)
    except RunInProgress:
        # A run killed on this machine (`kill -9`, then `--resume` at once) need not be waited
        # for: its process is gone. Elsewhere, its lease runs out within LEASE_S.
        version = _left_by_a_process_gone(blob)
        if version is None:
            raise
        try:  # only the lock as it was judged: of two runs taking over at once, one breaks it
            BlobLeaseClient(blob).break_lease(lease_break_period=0, etag=version,
                                              match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceExistsError):
            raise _taken_over(export) from None
        lease = _take(blob, export)
    try:  # naming itself changes the lock's version: no run judging the one before gone breaks it now
        blob.set_blob_metadata(_holder(), lease=lease)
    except HttpResponseError:  # broken meanwhile by a run that judged the same lock, named by nobody yet
        raise _taken_over(export) from None
    stop = threading.Event()

    def renew() -> None:
        said = False
        while not stop.wait(RENEW_S):
            try:  # one short attempt: its retries must not outlast the lease
                lease.renew(**_ONE_TRY)
                said = False
            except AzureError as error:  # storage unreachable a while: tried again, the run goes on
                if not said:
                    log.warning("the hold on export %s could not be renewed: %s", export, error.message)
                said = True

    keeper = threading.Thread(target=renew, name=f"hold-{export}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join()
        try:
            lease.release(**_ONE_TRY)
        except AzureError:  # lost or unreachable: it expires on its own, and the run's own outcome stands
            pass


# A lease call made once, briefly: the SDK's own retries took 85 s against a storage gone.
_ONE_TRY = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 10}


def _take(blob: BlobClient, export: str) -> BlobLeaseClient:
    try:
        return blob.acquire_lease(lease_duration=LEASE_S)
    except ResourceExistsError:  # 409 LeaseAlreadyPresent
        holder = (blob.get_blob_properties().metadata or {}).get("holder", "another run")
        raise RunInProgress(
            f'export "{export}" is being run already, by {holder}: wait for it to end (a run that was '
            f"killed frees it within {LEASE_S} s), then run again") from None


def _taken_over(export: str) -> RunInProgress:
    """What a run is told when another took a killed run's hold over at the same moment."""
    return RunInProgress(f'export "{export}" is being run already: another run took it over just now')


def _left_by_a_process_gone(blob: BlobClient) -> str | None:
    """The lock's version (ETag) if the holder its metadata names was a process of this
    machine that no longer runs (its lease is left from a run that was killed), else None."""
    properties = blob.get_blob_properties()
    named = properties.metadata or {}
    if not gone_from_here(named.get("host"), named.get("pid")):
        return None
    # A run takes the lease, then names itself: one that has just taken it is named by now.
    time.sleep(NAMING_S)
    again = blob.get_blob_properties()
    return again.etag if again.etag == properties.etag else None


def local_user() -> str:
    """The name of the person running this process (for run requests, holds, consent stamps)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment (a container without one)
        return "a local user"


def _holder() -> dict[str, str]:
    """Who holds the export, for the message another run gets (user, machine, process, since
    when), and for telling that process gone."""
    here = this_process()
    holder = (f"{local_user()} on {here['host']} (process {here['pid']}) "
              f"since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
    return {name: value.encode("ascii", "replace").decode()  # metadata travels in headers
            for name, value in {"holder": holder, **here}.items()}
