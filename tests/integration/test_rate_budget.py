"""A connection's rate limit shared by every process sending to it, through a blob in Azurite:
whoever sends alone gets all of it, processes split it by their senders, a newcomer waits
until the others made room, a process that leaves or goes silent gives its part back, and a
process that cannot read the blob stops sending. Two pacers on one connection, each with its
own budget as two hosts would have, never send above the limit together."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from azure.storage.blob import BlobClient

from shared.budgets import RateBudget
from shared.http import Pacer
from shared.http.pacing import HEADROOM

# Short timings so that a test takes seconds; the same ratios as the defaults.
TIMINGS = {"refresh_s": 0.1, "stale_s": 0.25, "settle_s": 0.6, "expire_s": 1.5}


@pytest.fixture
def blob(storage, unique) -> BlobClient:
    return storage.container("export-state").get_blob_client(f"rate-budgets/test-{unique}.json")


@pytest.fixture(autouse=True)
def _stopped_after_the_test():
    """Budgets a failing test left with senders stop writing (their threads would go on)."""
    yield
    while _made:
        _senders(_made.pop(), 0)


_made: list[RateBudget] = []


def _budget(blob: BlobClient, **timings: float) -> RateBudget:
    budget = RateBudget(blob, **{**TIMINGS, **timings})
    _made.append(budget)
    return budget


def _until(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def _senders(budget: RateBudget, count: int) -> None:
    """Chunk activities join or leave until `count` send through this process."""
    while budget.senders < count:
        budget.join()
    while budget.senders > count:
        budget.leave()


def _listed(blob: BlobClient) -> dict:
    return json.loads(blob.download_blob().readall())["processes"]


def _watch(budgets: list[RateBudget], seconds: float) -> float:
    """The largest sum of the budgets' shares seen over `seconds`, sampled every few ms."""
    worst, deadline = 0.0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        worst = max(worst, sum(budget.share() for budget in budgets))
        time.sleep(0.003)
    return worst


def test_a_process_alone_on_a_connection_has_the_whole_limit_and_is_listed(blob):
    budget = _budget(blob)
    assert budget.share() == 0  # nothing sends: nothing to share
    _senders(budget, 2)
    _until(lambda: budget.share() == 1.0)
    _until(lambda: _listed(blob).get(budget.process, {}).get("senders") == 2)  # the second at the next refresh
    _senders(budget, 0)
    _until(lambda: budget.process not in _listed(blob))  # removed once nothing sends


def test_processes_split_the_limit_by_senders_and_a_newcomer_waits_for_room(blob):
    first, second = _budget(blob), _budget(blob)
    _senders(first, 3)
    _until(lambda: first.share() == 1.0)
    _senders(second, 1)
    _until(lambda: second.process in _listed(blob))
    joined = time.monotonic()
    assert second.share() == 0  # the first may not have seen it yet
    worst = _watch([first, second], 1.2)
    assert worst <= 1.0 + 1e-9
    assert first.share() == pytest.approx(0.75) and second.share() == pytest.approx(0.25)
    assert time.monotonic() - joined >= TIMINGS["settle_s"]
    _senders(first, 1)  # fewer senders here: a smaller share at once, a larger one there later
    assert first.share() == pytest.approx(0.5)
    _until(lambda: second.share() == pytest.approx(0.5))
    _senders(first, 0)
    _senders(second, 4)  # more senders while alone: the whole limit at once
    _until(lambda: second.share() == 1.0)
    _senders(second, 0)


def test_a_process_knows_since_when_it_is_alone_so_its_pacer_bursts_only_into_a_window_nobody_else_used(blob):
    """`alone_s`: infinite on a connection nobody used; None as soon as another process is
    listed; once it left, counted from when its entry was taken out (the blob's last write,
    by storage's clock, rounded to the safe side), as its requests may have gone until
    then. Its own entry taken out and written again (chunks of a run a moment apart) does
    not count: its pacer counts its own requests."""
    first, second = _budget(blob), _budget(blob)
    assert first.alone_s() is None  # no share yet
    _senders(first, 1)
    _until(lambda: first.share() == 1.0)
    assert first.alone_s() == float("inf")
    _senders(first, 0)
    _until(lambda: first.process not in _listed(blob))
    _senders(first, 1)  # back, nobody else having written
    _until(lambda: first.share() == 1.0)
    assert first.alone_s() == float("inf")
    _senders(second, 1)
    _until(lambda: first.alone_s() is None)
    _senders(second, 0)
    _until(lambda: second.process not in _listed(blob))
    left = time.time()
    _until(lambda: first.alone_s() is not None and first.alone_s() > 0)
    assert first.alone_s() <= time.time() - left + 0.2
    _until(lambda: first.alone_s() > 1.5)  # and it grows
    _senders(first, 0)


def test_a_process_back_after_another_sent_alone_meanwhile_counts_from_its_leaving(blob):
    """The first process leaves; a second sends alone (bursting, maybe) and leaves; the
    first, back at once, must not burst into that window."""
    first, second = _budget(blob), _budget(blob)
    _senders(first, 1)
    _until(lambda: first.alone_s() == float("inf"))
    _senders(first, 0)
    _until(lambda: first.process not in _listed(blob))
    _senders(second, 1)
    _until(lambda: second.share() == 1.0)
    _senders(second, 0)
    _until(lambda: second.process not in _listed(blob))
    left = time.time()
    _senders(first, 1)
    _until(lambda: first.share() == 1.0)
    assert first.alone_s() <= time.time() - left + 0.2
    _senders(first, 0)


def test_added_senders_count_only_once_the_others_had_time_to_make_room(blob):
    first, second = _budget(blob), _budget(blob)
    _senders(first, 1)
    _senders(second, 1)
    _until(lambda: first.share() == pytest.approx(0.5) and second.share() == pytest.approx(0.5))
    _senders(first, 3)
    assert first.share() == pytest.approx(0.5)  # not yet: the second still sends at half
    assert _watch([first, second], 1.2) <= 1.0 + 1e-9
    assert first.share() == pytest.approx(0.75) and second.share() == pytest.approx(0.25)
    _senders(first, 0)
    _senders(second, 0)


def test_a_host_gone_silent_is_forgotten_after_the_expiry(blob):
    blob.upload_blob(json.dumps({"processes": {"gone-host": {"senders": 3, "seen": time.time()}}}), overwrite=True)
    budget = _budget(blob)
    _senders(budget, 1)
    _until(lambda: budget.process in _listed(blob))
    assert budget.share() == 0  # the silent host may still be sending
    _until(lambda: budget.share() == pytest.approx(0.25), seconds=TIMINGS["settle_s"] + 2)
    _until(lambda: budget.share() == 1.0, seconds=TIMINGS["expire_s"] + 2)
    _until(lambda: "gone-host" not in _listed(blob))  # dropped by the next write
    _senders(budget, 0)


def test_a_throttle_window_announced_to_one_process_holds_the_others_and_keeps_their_entries(blob):
    first, second = _budget(blob), _budget(blob)
    _senders(first, 2)
    _senders(second, 1)
    _until(lambda: blob.exists() and {first.process, second.process} <= set(_listed(blob)))
    assert second.held_s() == 0
    announced = time.monotonic()
    first.hold(1.5)  # a 429 with Retry-After: 1.5, or Braze's window spent until its reset
    assert first.held_s() > 1.4  # this process at once
    _until(lambda: second.held_s() > 0, seconds=1.0)  # the other at its next read
    assert time.monotonic() - announced < 0.5  # written at once, read within a refresh
    assert 1.0 < second.held_s() <= 1.5
    assert {first.process, second.process} <= set(_listed(blob))  # the hold took no entry out
    first.hold(0.2)  # a shorter window inside a longer one changes nothing
    assert 1.0 < second.held_s() <= 1.5
    _until(lambda: second.held_s() == 0 and first.held_s() == 0, seconds=2.0)
    _until(lambda: "hold_until" not in json.loads(blob.download_blob().readall()), seconds=TIMINGS["expire_s"])
    _senders(first, 0)
    _senders(second, 0)


def test_a_pacer_holds_while_another_process_waits_out_a_window_it_was_told(blob):
    told, holding = Pacer(100, budget=_budget(blob)), Pacer(100, budget=_budget(blob))
    told.join()
    holding.join()
    _until(lambda: told.rate > 0 and holding.rate > 0, seconds=3.0)
    told.hold(1.0)
    time.sleep(TIMINGS["refresh_s"] * 3)  # the other has read it
    started = time.monotonic()
    holding.acquire()
    assert time.monotonic() - started >= 0.5  # it waited out the rest of the window
    told.leave()
    holding.leave()


def test_a_process_that_cannot_read_the_budget_does_not_send_and_says_why(caplog):
    unreachable = BlobClient.from_blob_url("http://127.0.0.1:9/devstoreaccount1/export-state/rate-budgets/x.json",
                                           retry_total=0, connection_timeout=0.2)
    budget = _budget(unreachable)
    with caplog.at_level(logging.WARNING, logger="segment_export.budgets"):
        _senders(budget, 1)
        _until(lambda: "not updated" in caplog.text)
    assert budget.share() == 0
    _senders(budget, 0)


def test_two_hosts_pacers_on_one_connection_stay_under_its_limit_together_and_use_it(blob):
    limit, seconds = 200.0, 3.0
    sent: list[float] = []
    lock = threading.Lock()

    def host(pacer: Pacer, stop_at: float) -> None:
        pacer.join()
        while time.monotonic() < stop_at:
            pacer.acquire()
            with lock:
                sent.append(time.monotonic())
        pacer.leave()

    started = time.monotonic()
    pacers = [Pacer(limit, budget=_budget(blob)), Pacer(limit, budget=_budget(blob))]
    threads = [threading.Thread(target=host, args=(pacers[0], started + seconds))]
    threads[0].start()
    time.sleep(0.5)  # the second host joins while the first has the whole limit
    threads += [threading.Thread(target=host, args=(pacer, started + seconds)) for pacer in [pacers[1]] * 2]
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join()
    sent.sort()
    busiest = max(sum(1 for t in sent[i:] if t < start + 1.0) for i, start in enumerate(sent))
    assert busiest <= limit  # in any one second
    assert len(sent) >= 0.8 * limit * HEADROOM * seconds  # and the limit used, not halved


def test_an_exiting_process_takes_its_entry_out_so_the_others_need_not_wait_for_it(blob, monkeypatch):
    """At exit, a process still listed as sending (a chunk was sending when it stopped)
    removes itself: the others get its share at once, not after EXPIRE_S."""
    from shared import budgets

    leaving, staying = _budget(blob), _budget(blob)
    leaving.join(), staying.join()
    _until(lambda: blob.exists() and {leaving.process, staying.process} <= set(_listed(blob)))
    monkeypatch.setattr(budgets, "_budgets", {"leaving": leaving})  # this process's budgets, as atexit finds them
    budgets._remove_entries()
    assert leaving.process not in _listed(blob) and staying.process in _listed(blob)


def test_an_exiting_process_whose_storage_is_gone_exits_at_once_leaving_its_entry_to_expire(monkeypatch):
    # The SDK retries a storage call it cannot make for over 80 s: an exit that waited for the
    # entry's removal hung that long (pytest's own exit did, once its Azurite had stopped).
    from sandbox.azurite import Azurite
    from shared import budgets
    from shared.state import Storage

    with Azurite() as azurite:
        storage = Storage.from_connection_string(azurite.connection_string)
        storage.ensure_containers()
        budget = _budget(storage.container("export-state").get_blob_client("rate-budgets/exiting.json"))
        budget.join()  # a chunk still sending when the process exits
        _until(lambda: budget.share() == 1.0)  # listed in the blob
    monkeypatch.setattr(budgets, "_budgets", {"exiting": budget})  # this process's budgets, as atexit finds them
    started = time.monotonic()
    budgets._remove_entries()
    assert time.monotonic() - started < budgets.EXIT_WAIT_S + 0.5


@pytest.mark.parametrize("other_runs", [True, False], ids=["running", "killed"])
def test_the_share_of_a_killed_process_of_this_machine_is_free_at_once(blob, other_runs):
    """A run killed (kill -9) leaves its entry; resumed at once, it found the limit taken by
    a process that sends nothing, waited SETTLE_S, then sent at half the rate until the
    entry expired. A process of another machine, or one still running, keeps its share."""
    import socket
    import subprocess
    import sys

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        if not other_runs:
            other.kill()
            other.wait()
        blob.upload_blob(json.dumps({"processes": {f"{socket.gethostname()}-{other.pid}-0": {
            "senders": 4, "seen": time.time(), "host": socket.gethostname(), "pid": str(other.pid)}}}))
        budget = _budget(blob, expire_s=30.0)  # the running one's entry stays listed for the test
        _senders(budget, 1)
        _until(lambda: budget.share() > 0)
        # Sharing with a running process: a fifth (1 sender of 5), once settled; a killed one's: all.
        assert budget.share() == (pytest.approx(1 / 5) if other_runs else 1.0)
        assert (f"{socket.gethostname()}-{other.pid}-0" in _listed(blob)) is other_runs
    finally:
        other.kill()
        other.wait()
