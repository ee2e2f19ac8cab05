"""Pacing: keeping one connection's requests under the vendor's rate limit, honouring its holds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Budget", "Pacer", "pacer_for"]


class Budget(Protocol):
    """This process's part of a connection's rate limit, agreed with the other processes
    sending to it (`shared.budgets.RateBudget`: hosts of a scaled-out app, concurrent runs)."""

    def join(self) -> None:
        """A chunk activity of this process starts sending to the connection."""

    def leave(self) -> None:
        """It stopped."""

    def share(self) -> float:
        """The part of the limit this process may use now, 0 to 1 (0: wait)."""

    def hold(self, seconds: float) -> None:
        """The vendor announced a throttle window of `seconds` to this process: tell the others."""

    def held_s(self) -> float:
        """Seconds left of the latest throttle window announced to any process (0: none)."""


class Pacer:
    """Keeps requests to one vendor under its rate limit, and honours its throttle windows.

    A token bucket shared by every thread sending to the same connection in this process.
    Chunk activities `join` while they send and `leave` after. With a `budget`, the rate is
    the connection's limit times this process's share of it, agreed with the other
    processes sending to the connection, so that activities spread over several hosts
    stay under the vendor's limit together, and whoever is sending uses all of it; a
    throttle window the vendor announces to one of them holds them all. Without one
    (tests, one process by construction), the whole limit.
    """

    def __init__(self, limit_per_s: float, *, budget: Budget | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.limit_per_s = limit_per_s
        self._budget = budget
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0  # earliest moment the next request may leave
        self._hold_until = 0.0

    def join(self) -> None:
        """A chunk activity starts sending through this pacer (its process's share may grow)."""
        if self._budget is not None:
            self._budget.join()

    def leave(self) -> None:
        if self._budget is not None:
            self._budget.leave()

    @property
    def rate(self) -> float:
        """Requests a second this process may send now (0 while its share is being agreed)."""
        # Under the limit by HEADROOM: evenly spaced requests at exactly the limit can still
        # put one request too many into a vendor's window, depending on where it starts.
        share = 1.0 if self._budget is None else self._budget.share()
        return HEADROOM * self.limit_per_s * share

    def hold(self, seconds: float) -> None:
        """No request leaves before `seconds` from now (a throttle window the vendor announced),
        from this process nor, once they have read the budget, from the others."""
        with self._lock:
            self._hold_until = max(self._hold_until, self._clock() + seconds)
        if self._budget is not None:
            self._budget.hold(seconds)

    def _held_s(self) -> float:
        """Seconds left of a throttle window: this process's own, or one another process announced."""
        held = self._budget.held_s() if self._budget is not None else 0.0
        return max(held, self._hold_until - self._clock())

    def acquire(self) -> float:
        """Wait for this request's turn; returns the seconds waited."""
        wait = 0.0
        while (rate := self.rate) <= 0:  # no share yet: others sending to the connection must make room first
            self._sleep(SHARE_POLL_S)
            wait += SHARE_POLL_S
        with self._lock:
            now = self._clock()
            # A slot missed by less than CATCH_UP_S is still taken: a thread woken a few ms
            # late (the interpreter lock) does not push every later request back.
            slot = max(self._next, now - CATCH_UP_S)
            if (held := self._held_s()) > 0:
                slot = max(slot, now + held)
            self._next = slot + 1.0 / rate
            start = max(slot, now)
        wait += start - now
        if start > now:
            self._sleep(start - now)
        # A throttle window may have been announced while this thread slept.
        while (remaining := self._held_s()) > 0:
            self._sleep(remaining)
            wait += remaining
        return wait


# 3%: at 1% (10 ms a second at 10 requests/s), a request held up 10-20 ms on its way (the
# interpreter lock, a busy vendor) let the next one into the same fixed window: 1-3 of
# 200 Campaign Monitor requests were throttled at its 10/s.
HEADROOM = 0.97
SHARE_POLL_S = 0.01
# How late a request may be and still take its slot. Requests then leave at most
# CATCH_UP_S worth of slots early in any span of time: within the headroom above for a
# window of a second or more (at 1,000 requests/s, 19 of the 30 a second spares; at
# 10/s, none: a slot is 103 ms).
CATCH_UP_S = 0.02

_pacers: dict[str, Pacer] = {}
_pacers_lock = threading.Lock()


def pacer_for(key: str, limit_per_s: float, budget: Callable[[], Budget] | None = None) -> Pacer:
    """The process-wide pacer of one connection: every sender to it shares its rate and holds.

    `budget` makes the connection's budget, the first time this process sends to it.
    """
    with _pacers_lock:
        pacer = _pacers.get(key)
        if pacer is None or pacer.limit_per_s != limit_per_s:
            pacer = _pacers[key] = Pacer(limit_per_s, budget=budget() if budget else None)
        return pacer
