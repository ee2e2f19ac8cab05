"""Pacing: keeping one connection's requests under the vendor's rate limit, honouring its holds."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
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

    def alone_s(self) -> float | None:
        """Seconds since another process may last have sent to the connection, as far as
        this one knows; None while this one has no whole share (another is listed as
        sending, or this one's view is not fresh)."""


class Pacer:
    """Keeps requests to one vendor under its rate limit, and honours its throttle windows.

    Shared by every thread sending to the same connection in this process. Chunk
    activities `join` while they send and `leave` after. With a `budget`, the rate is the
    connection's limit times this process's share of it, agreed with the other processes
    sending to the connection, so that activities spread over several hosts stay under
    the vendor's limit together, and whoever is sending uses all of it; a throttle window
    the vendor announces to one of them holds them all. Without one (tests, one process by
    construction), the whole limit.

    A vendor counts requests in a window (`DestinationSpec.rate_window_s`): Snapchat 10 in
    any second, Omnisend 400 in any minute. A pacer alone on its connection lets requests
    go as soon as they are ready while fewer than the vendor's count left in the last
    window `burst_of` chooses (stretched by HEADROOM, so that a request held up on its way
    still arrives within the window it is counted in): a run needing a few requests does not
    wait a tenth of a second between them, and a long one averages 97% of the limit; the
    busiest window holds the vendor's count, never more. Alone since less than a window
    (`Budget.alone_s`: another process sent, and may have burst), it first waits for that
    window to pass. Sharing the connection, it spaces requests evenly at its share of the
    rate instead (the processes' requests interleave; none may burst into the others'
    window), still never more than the count in a window.
    """

    def __init__(self, limit_per_s: float, *, window_s: float = 1.0, budget: Budget | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self._budget = budget
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0  # earliest moment the next request may leave, spaced
        self._hold_until = 0.0
        self._sent: deque[float] = deque()  # when this process's requests left (or will), the last span's
        self.configure(limit_per_s, window_s)

    def configure(self, limit_per_s: float, window_s: float) -> None:
        """The connection's limit and the vendor's window (settings changed): the requests
        already sent still count."""
        with self._lock:
            self.limit_per_s, self.window_s = limit_per_s, window_s
            seconds, self._burst = burst_of(limit_per_s, window_s)
            self._span = seconds / HEADROOM  # the window this process's requests are counted in

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
        while True:
            while (rate := self.rate) <= 0:  # no share yet: others sending to the connection must make room first
                self._sleep(SHARE_POLL_S)
                wait += SHARE_POLL_S
            # Seconds since another process may have sent (None: one sends now, spaced).
            quiet = math.inf if self._budget is None else self._budget.alone_s()
            with self._lock:
                now = self._clock()
                sent, span = self._sent, self._span
                while len(sent) > 1 and sent[0] <= now - span:
                    sent.popleft()
                # Spaced, a slot missed by less than CATCH_UP_S is still taken: a thread woken
                # a few ms late (the interpreter lock) does not push every later request back.
                bursting = self._burst > 1 and quiet is not None and quiet >= span
                slot = now if bursting else max(self._next, now - CATCH_UP_S)
                if quiet is not None and quiet < span:  # its last window's requests count still
                    slot = max(slot, now + span - quiet)
                if sent:  # in order: the count below relies on it
                    slot = max(slot, sent[-1])
                if self._burst and len(sent) >= self._burst:
                    # Never more than the vendor's count in a window, bursting or not (spaced
                    # requests may follow a burst, when another process has joined since).
                    slot = max(slot, sent[-self._burst] + span)
                if (held := self._held_s()) > 0:
                    slot = max(slot, now + held)
                self._next = slot + 1.0 / rate
                start = max(slot, now)
                sent.append(start)
            wait += start - now
            if start > now:
                self._sleep(start - now)
            if (remaining := self._held_s()) <= 0:
                return wait
            # A throttle window was announced while this thread slept: its turn is void (the
            # entry stays, counted to the safe side); it waits the window out and takes another.
            self._sleep(remaining)
            wait += remaining


def burst_of(limit_per_s: float, window_s: float) -> tuple[float, int]:
    """The window a pacer counts its requests in, and how many it lets go in one: the
    shortest whole number of seconds, dividing the vendor's window and within
    MAX_BURST_WINDOW_S, in which the limit allows a whole number of requests (Omnisend's
    400 a minute: 20 in 3 s). (0, 0) where there is none (a limit such as 7.3 a second):
    then requests are only spaced, as a count rounded down would send fewer than the
    limit allows.
    """
    if not math.isfinite(limit_per_s):
        return 0.0, 0
    for seconds in range(1, int(min(window_s, MAX_BURST_WINDOW_S)) + 1):
        if abs(window_s / seconds - round(window_s / seconds)) > 1e-9:
            continue  # windows that do not tile the vendor's could put a burst on each side of its edge
        count = limit_per_s * seconds
        if abs(count - round(count)) < 1e-6 and round(count) >= 1:
            return float(seconds), round(count)
    return 0.0, 0


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
# The longest window a pacer lets requests go together in: a process that stops
# bursting when another joins must have its burst out of the vendor's window before the
# newcomer sends (`shared.budgets.SETTLE_S` allows for it).
MAX_BURST_WINDOW_S = 3

_pacers: dict[str, Pacer] = {}
_pacers_lock = threading.Lock()


def pacer_for(key: str, limit_per_s: float, window_s: float = 1.0,
              budget: Callable[[], Budget] | None = None) -> Pacer:
    """The process-wide pacer of one connection: every sender to it shares its rate and holds.

    `window_s`: the vendor's rate window (`DestinationSpec.rate_window_s`). `budget` makes
    the connection's budget, the first time this process sends to it.
    """
    with _pacers_lock:
        pacer = _pacers.get(key)
        if pacer is None:
            pacer = _pacers[key] = Pacer(limit_per_s, window_s=window_s, budget=budget() if budget else None)
        elif (pacer.limit_per_s, pacer.window_s) != (limit_per_s, window_s):
            # Changed settings: the same pacer, so that one count of this process's requests holds.
            pacer.configure(limit_per_s, window_s)
        return pacer
