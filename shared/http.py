"""HTTP to the vendors: the one retry, backoff and pacing mechanism every destination uses.

Error taxonomy (re-exported by `destinations.base`, where destinations meet it)::

    DestinationError          a destination cannot go on; the message is safe to show
    ├── RetriableError        429, 5xx, timeouts, dropped connections: retried here;
    │                         raised only when attempts or the time budget run out
    ├── AuthError             401 (after one credential refresh, where refresh exists)
    └── FatalError            any other 4xx for the whole request, or an unusable answer

What is retried and how long to wait:

- 429 and 5xx: wait what the vendor announced, in whichever form it uses (`Retry-After`
  in seconds or as a date; `X-RateLimit-Reset` / `X-Rate-Limit-Reset` as epoch seconds
  (Braze) or as seconds to wait; a problem body's `retryAfter` (Omnisend)), otherwise
  exponential backoff with jitter (a bare 429: Snapchat).
- An announced wait holds the shared `Pacer`, so no request of any thread goes out to
  that vendor during the throttle window it announced.
- Timeouts and connection errors: backoff and retry. The vendor may have applied the
  request already; every destination's writes are idempotent upserts, so resending is safe.

Messages never contain credentials: headers are never echoed, and vendor messages are
cut short (`vendor_message`).
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter

__all__ = [
    "AuthError",
    "Credentials",
    "DestinationError",
    "FatalError",
    "HttpClient",
    "Pacer",
    "RefreshingBearer",
    "RequestStats",
    "RetriableError",
    "RetryPolicy",
    "StaticKey",
    "TokenSource",
    "announced_wait",
    "json_body",
    "pacer_for",
    "session_for",
    "vendor_message",
]


class DestinationError(Exception):
    """A destination cannot go on. `str(error)` is safe for logs and reports."""


class RetriableError(DestinationError):
    """The vendor was unavailable or throttling longer than the retry policy allows."""


class AuthError(DestinationError):
    """The vendor refused the credentials (after one refresh, where refreshing is possible)."""


class FatalError(DestinationError):
    """The vendor refused the request as a whole (4xx other than 401/429) or answered nonsense."""


class Credentials(dict):
    """A destination's credentials from Key Vault: a dict whose repr never shows the values."""

    def __repr__(self) -> str:
        return f"Credentials(fields={sorted(self)})"

    __str__ = __repr__


class TokenSource(Protocol):
    """How a destination authenticates: headers for each request, and a refresh after a 401."""

    def headers(self) -> dict[str, str]: ...

    def refresh(self, refused: dict[str, str]) -> bool:
        """Renew the credentials after the vendor refused the `refused` headers.

        False when this kind of credential cannot be refreshed (an API key).
        """
        ...


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8  # per request, the first one included
    base_delay: float = 0.5  # seconds; doubles per attempt, with jitter
    max_delay: float = 60.0  # longest single wait, announced or not
    budget: float = 600.0  # seconds one request may spend across all its attempts


class Pacer:
    """Keeps requests to one vendor under its rate limit, and honours its throttle windows.

    A token bucket shared by every thread sending to the same connection in this process.
    The rate is the connection's limit times this process's share of the run's senders
    (`join`/`leave`), so that chunk activities spread over several hosts stay under the
    vendor's limit together, and the activities of one process get all of it.
    """

    def __init__(self, limit_per_s: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.limit_per_s = limit_per_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0  # earliest moment the next request may leave
        self._hold_until = 0.0
        self._share = 0.0

    def join(self, share: float) -> None:
        with self._lock:
            self._share += share

    def leave(self, share: float) -> None:
        with self._lock:
            self._share = max(0.0, self._share - share)

    @property
    def rate(self) -> float:
        # 1% under the limit: evenly spaced requests at exactly the limit can still put one
        # request too many into a vendor's window, depending on where the window starts.
        return 0.99 * self.limit_per_s * min(1.0, self._share or 1.0)

    def hold(self, seconds: float) -> None:
        """No request leaves before `seconds` from now (a throttle window the vendor announced)."""
        with self._lock:
            self._hold_until = max(self._hold_until, self._clock() + seconds)

    def acquire(self) -> float:
        """Wait for this request's turn; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next, self._hold_until)
            self._next = start + 1.0 / self.rate
        wait = start - now
        if wait > 0:
            self._sleep(wait)
        # A throttle window may have been announced while this thread slept.
        while (remaining := self._hold_until - self._clock()) > 0:
            self._sleep(remaining)
            wait += remaining
        return wait


@dataclass
class RequestStats:
    """What one sender did, for the run report."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    network_errors: int = 0
    waited_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "retries": self.retries, "throttled": self.throttled,
                "server_errors": self.server_errors, "network_errors": self.network_errors,
                "waited_s": round(self.waited_s, 3)}


_sessions: dict[str, requests.Session] = {}
_pacers: dict[str, Pacer] = {}
_sessions_lock = threading.Lock()


def pacer_for(key: str, limit_per_s: float) -> Pacer:
    """The process-wide pacer of one connection: every sender to it shares its rate and holds."""
    with _sessions_lock:
        pacer = _pacers.get(key)
        if pacer is None or pacer.limit_per_s != limit_per_s:
            pacer = _pacers[key] = Pacer(limit_per_s)
        return pacer


def session_for(key: str) -> requests.Session:
    """One pooled keep-alive session per connection and process, shared by its activities."""
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=64, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            _sessions[key] = session
        return session


def vendor_message(response: requests.Response, *keys: str, limit: int = 300) -> str:
    """The vendor's own error message from a JSON body (first of `keys` present), cut short."""
    try:
        body = response.json()
    except ValueError:
        body = None
    text = ""
    if isinstance(body, dict):
        for key in keys:
            if body.get(key):
                text = str(body[key])
                break
    if not text:
        text = response.reason or ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def announced_wait(response: requests.Response, now: Callable[[], float] = time.time) -> float | None:
    """Seconds the vendor asked us to wait, from any of the throttling signals in use, or None."""
    headers = response.headers
    value = headers.get("Retry-After")
    if value:
        value = value.strip()
        if value.replace(".", "", 1).isdigit():
            return float(value)
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now())
        except (TypeError, ValueError):
            pass
    for name in ("X-RateLimit-Reset", "X-Rate-Limit-Reset"):
        value = headers.get(name)
        if value:
            try:
                number = float(value)
            except ValueError:
                continue
            # Braze sends the epoch second the window resets; others send seconds to wait.
            return max(0.0, number - now()) if number > 1_000_000_000 else number
    if "json" in headers.get("Content-Type", ""):
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("retryAfter"), (int, float)):
            return float(body["retryAfter"])
    return None


@dataclass
class HttpClient:
    """Sends one destination's requests: paced, retried, classified.

    `describe(response)` extracts the vendor's error message for a FatalError;
    `accept(response)` lets a destination take a non-2xx answer it understands itself
    (Campaign Monitor's partial import is a 400 with Code 210).
    """

    vendor: str
    pacer: Pacer
    session: requests.Session
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: tuple[float, float] = (5.0, 60.0)
    describe: Callable[[requests.Response], str] = lambda response: vendor_message(response, "message")
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    stats: RequestStats = field(default_factory=RequestStats)

    def request(self, method: str, url: str, *, auth: TokenSource | None = None, headers: dict[str, str] | None = None,
                accept: Callable[[requests.Response], bool] | None = None, **kwargs: Any) -> requests.Response:
        """Send until the vendor answers 2xx (or an answer `accept` takes); raise DestinationError otherwise.

        Raises RetriableError when attempts or the time budget are used up, AuthError on
        a 401 that a refresh did not cure, FatalError on any other refusal.
        """
        deadline = self.clock() + self.policy.budget
        refreshed = False
        attempt = 0
        environment = self.session.merge_environment_settings(url, {}, None, None, None)
        while True:
            attempt += 1
            sent_headers = {**(headers or {}), **(auth.headers() if auth is not None else {})}
            # Everything that takes time (encoding the body) happens before the pacer's turn,
            # so a throttle window announced meanwhile is still seen before the bytes go out.
            prepared = self.session.prepare_request(requests.Request(method, url, headers=sent_headers, **kwargs))
            self.stats.waited_s += self.pacer.acquire()
            self.stats.requests += 1
            try:
                response = self.session.send(prepared, timeout=self.timeout, **environment)
            except (requests.ConnectionError, requests.Timeout) as error:
                self.stats.network_errors += 1
                self._back_off(attempt, deadline, None, f"{self.vendor}: {_network_problem(error)}")
                continue
            self._note_remaining(response)
            status = response.status_code
            if 200 <= status < 300 or (accept is not None and accept(response)):
                return response
            if status == 401:
                if auth is not None and not refreshed and auth.refresh(sent_headers):
                    refreshed = True
                    self.stats.retries += 1
                    continue
                raise AuthError(f"{self.vendor} refused the credentials (401): {self.describe(response)}")
            if status == 429 or status >= 500:
                wait = announced_wait(response)
                if status == 429:
                    self.stats.throttled += 1
                    if wait is not None:
                        self.pacer.hold(wait)
                else:
                    self.stats.server_errors += 1
                problem = f"{self.vendor} answered {status}: {self.describe(response)}"
                self._back_off(attempt, deadline, wait, problem)
                continue
            raise FatalError(f"{self.vendor} refused the request ({status}): {self.describe(response)}")

    def _back_off(self, attempt: int, deadline: float, announced: float | None, problem: str) -> None:
        if attempt >= self.policy.attempts:
            raise RetriableError(f"{problem} (gave up after {attempt} attempts)")
        if announced is not None:
            delay = min(announced, self.policy.max_delay)
        else:
            ceiling = min(self.policy.max_delay, self.policy.base_delay * 2 ** (attempt - 1))
            delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if self.clock() + delay > deadline:
            raise RetriableError(f"{problem} (gave up: retry budget of {self.policy.budget:.0f}s used)")
        self.stats.retries += 1
        self.stats.waited_s += delay
        self.sleep(delay)

    def _note_remaining(self, response: requests.Response) -> None:
        # Braze tells on every answer how many requests its window has left; when none are
        # left, wait for the reset instead of collecting a 429.
        if response.headers.get("X-RateLimit-Remaining") == "0" and response.status_code != 429:
            wait = announced_wait(response)
            if wait:
                self.pacer.hold(min(wait, self.policy.max_delay))


def _network_problem(error: Exception) -> str:
    if isinstance(error, requests.Timeout):
        return "no answer within the timeout"
    return "connection failed or dropped"


def json_body(response: requests.Response, vendor: str) -> Any:
    """The JSON body of a 2xx answer; FatalError when the vendor answered something else."""
    try:
        return response.json()
    except ValueError:
        raise FatalError(f"{vendor} answered {response.status_code} without a JSON body") from None




class StaticKey:
    """Credentials sent as fixed headers (an API key): a 401 cannot be cured by refreshing."""

    def __init__(self, headers: dict[str, str]):
        self._headers = headers

    def headers(self) -> dict[str, str]:
        return self._headers

    def refresh(self, refused: dict[str, str]) -> bool:
        return False

    def __repr__(self) -> str:
        return f"StaticKey(headers={sorted(self._headers)})"


class RefreshingBearer:
    """An OAuth2 access token obtained with a refresh token, shared by a process's activities.

    Refreshed before it expires (`expires_in` minus a margin) and once after a 401; when
    several threads meet the same 401, one refresh serves them all. A refused refresh is an
    AuthError naming the vendor, never the token.
    """

    _tokens: dict[tuple[str, str], RefreshingBearer] = {}
    _tokens_lock = threading.Lock()

    def __init__(self, vendor: str, token_url: str, form: dict[str, str], client: HttpClient,
                 clock: Callable[[], float] = time.monotonic, margin_s: float = 120.0):
        self.vendor = vendor
        self.token_url = token_url
        self._form = self._initial_form = form
        self._client = client
        self._clock = clock
        self._margin_s = margin_s
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.refreshes = 0

    @classmethod
    def shared(cls, key: str, vendor: str, token_url: str, form: dict[str, str],
               client: HttpClient) -> RefreshingBearer:
        """The process-wide token for one connection (keyed by connection name and token URL)."""
        with cls._tokens_lock:
            token = cls._tokens.get((key, token_url))
            if token is None or token._initial_form != form:
                token = cls(vendor, token_url, form, client)
                cls._tokens[(key, token_url)] = token
            return token

    def headers(self) -> dict[str, str]:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                self._fetch()
            return {"Authorization": f"Bearer {self._token}"}

    def refresh(self, refused: dict[str, str]) -> bool:
        with self._lock:
            # Threads that met a 401 with the same token queue here; the first one refreshes,
            # the others find a newer token already in place.
            if refused.get("Authorization") == f"Bearer {self._token}":
                self._fetch()
        return True

    def _fetch(self) -> None:
        try:
            response = self._client.request("POST", self.token_url, data=self._form)
        except AuthError:
            raise AuthError(f"{self.vendor} refused to refresh the access token (401): "
                            "the refresh token or client credentials are wrong or revoked") from None
        except FatalError as error:
            raise AuthError(f"{self.vendor} refused to refresh the access token: {error}") from None
        body = json_body(response, self.vendor)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise AuthError(f"{self.vendor} answered the token refresh without an access_token")
        self._token = token
        if body.get("refresh_token"):  # a vendor that rotates refresh tokens: keep the newest
            self._form = {**self._form, "refresh_token": body["refresh_token"]}
        lifetime = float(body.get("expires_in") or 1800)
        self._expires_at = self._clock() + max(lifetime - self._margin_s, lifetime / 2)
        self.refreshes += 1

