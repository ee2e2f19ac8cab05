"""The HTTP client of one destination's sender: paced, retried, classified (see `shared.http`)."""

from __future__ import annotations

import base64
import binascii
import json as _json
import math
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

from .auth import TokenSource
from .errors import AuthError, FatalError, RetriableError
from .pacing import Pacer
from .signals import announced_wait, vendor_message
from .transport import ConnectionProblem, Response, StaleConnection, Transport, UnsendableHeader

__all__ = ["HttpClient", "RequestStats", "RetryPolicy", "transport_for"]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8  # per request, the first one included
    base_delay: float = 0.5  # seconds; doubles per attempt, with jitter
    max_delay: float = 60.0  # longest single wait, announced or not
    budget: float = 600.0  # seconds one request may spend across all its attempts


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


_transports: dict[str, Transport] = {}
_transports_lock = threading.Lock()


def transport_for(key: str) -> Transport:
    """One pool of keep-alive connections per destination connection and process."""
    with _transports_lock:
        transport = _transports.get(key)
        if transport is None:
            transport = _transports[key] = Transport()
        return transport


@dataclass
class HttpClient:
    """Sends one destination's requests: paced, retried, classified.

    `describe(response)` extracts the vendor's error message for a FatalError;
    `accept(response)` lets a destination take a non-2xx answer it understands itself
    (Campaign Monitor's partial import is a 400 with Code 210).
    """

    vendor: str
    pacer: Pacer
    transport: Transport
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 60.0
    describe: Callable[[Response], str] = lambda response: vendor_message(response, "message")
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    stats: RequestStats = field(default_factory=RequestStats)

    def request(self, method: str, url: str, *, auth: TokenSource | None = None, headers: dict[str, str] | None = None,
                accept: Callable[[Response], bool] | None = None, json: Any = None,
                data: bytes | dict[str, str] | None = None) -> Response:
        """Send until the vendor answers 2xx (or an answer `accept` takes); raise DestinationError otherwise.

        The body is `json` (encoded here), form fields (`data` as a dict) or raw bytes.
        Raises RetriableError when attempts or the time budget are used up, AuthError on
        a 401 that a refresh did not cure, FatalError on any other refusal.
        """
        body, content_type = _encode(json, data)
        form = data if isinstance(data, dict) else {}
        base_headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
        if content_type:
            base_headers.setdefault("Content-Type", content_type)
        deadline = self.clock() + self.policy.budget
        refreshed = fresh = False

        def said(response: Response) -> str:
            """The vendor's message, without the credentials this request sent, should it quote
            them; then cut short (cut first, a credential's beginning could have stayed)."""
            text = redacted(self.describe(response), sent_headers, form)
            return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT - 3] + "..."

        # Whether an attempt was written whole and got no answer: should the request fail
        # for good, the vendor may have applied it, and the error says so.
        maybe_applied = False

        def unknown() -> str:
            return MAYBE_APPLIED if maybe_applied else ""

        attempt = 0
        while True:
            attempt += 1
            sent_headers = {**base_headers, **(auth.headers() if auth is not None else {})}
            # The body was encoded once, above: the pacer's turn comes just before the bytes go
            # out, so a throttle window announced meanwhile is still seen.
            self.stats.waited_s += self.pacer.acquire()
            self.stats.requests += 1
            use_fresh, fresh = fresh, False
            try:
                response = self.transport.send(method, url, sent_headers, body, self.timeout, fresh=use_fresh)
            except UnsendableHeader:
                raise FatalError(f"{self.vendor}: the request could not be sent: a header holds a character "
                                 "HTTP does not allow (a credential with a line break or a non-Latin-1 "
                                 "character?)") from None
            except StaleConnection as stale:  # (a new connection never is) again at once, on a new one: not a retry
                # A kept-alive connection closed while idle, or dropped once the vendor had the
                # request: the two look the same from here, so it may have been applied.
                maybe_applied = maybe_applied or stale.sent
                fresh, attempt = True, attempt - 1
                continue
            except ConnectionProblem as problem:
                self.stats.network_errors += 1
                maybe_applied = maybe_applied or problem.sent
                self._back_off(attempt, deadline, None, f"{self.vendor}: {problem}" + unknown())
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
                raise AuthError(f"{self.vendor} refused the credentials (401): {said(response)}{unknown()}")
            if status == 429 or status >= 500:
                wait = announced_wait(response)
                if status == 429:
                    self.stats.throttled += 1
                    if wait is not None:
                        self.pacer.hold(wait)
                else:
                    self.stats.server_errors += 1
                problem = f"{self.vendor} answered {status}: {said(response)}"
                self._back_off(attempt, deadline, wait, problem + unknown())
                continue
            raise FatalError(f"{self.vendor} refused the request ({status}): {said(response)}{unknown()}")

    def unpaced(self) -> HttpClient:
        """This client without the rate limit's pacer (its retries, transport and counts kept):
        for a vendor's token endpoint, a service of its own that the API's limit does not cover."""
        return replace(self, pacer=Pacer(math.inf))

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

    def _note_remaining(self, response: Response) -> None:
        # Braze tells on every answer how many requests its window has left; when none are
        # left, wait for the reset instead of collecting a 429.
        if response.headers.get("X-RateLimit-Remaining") == "0" and response.status_code != 429:
            wait = announced_wait(response)
            if wait:
                self.pacer.hold(min(wait, self.policy.max_delay))


USER_AGENT = "segment-export/1 (+Azure Functions)"
MESSAGE_LIMIT = 300  # characters of a vendor's message kept in an error (and so in reports)
# Said of a request that failed for good after one of its attempts was written whole and
# not answered: whether the vendor applied it is unknown (`without_maybe_applied`).
MAYBE_APPLIED = "; an attempt was sent and not answered: the vendor may have applied it"


def without_maybe_applied(message: str) -> str:
    """An error's message without MAYBE_APPLIED: the reason of rows that were not sent after it."""
    return message.replace(MAYBE_APPLIED, "")


def redacted(message: str, headers: dict[str, str], form: dict[str, str]) -> str:
    """`message` with every credential a request carried replaced by "[redacted]": the
    Authorization header's value, its token and, for Basic, the decoded user and password;
    and the values of a form but its grant type (a token grant's client secret and
    refresh token). A vendor
    that echoes what it refused would otherwise put them in reports and logs."""
    secrets = {value for name, value in form.items() if name != "grant_type"}  # its value names the grant
    for name, value in headers.items():
        if name.lower() == "authorization":
            scheme, _, token = value.partition(" ")
            secrets.update((value, token))
            if scheme.lower() == "basic":
                try:
                    secrets.update(base64.b64decode(token, validate=True).decode("utf-8").split(":", 1))
                except (binascii.Error, UnicodeDecodeError):
                    pass
    # Short values (a grant type, Campaign Monitor's "x" password) are no secret and would
    # garble the text. Each also as a vendor may echo it: the form body as sent is
    # URL-encoded (a base64 token's "+/=" as %2B, %2F, %3D), a JSON answer may escape it.
    forms = {form for secret in secrets if len(secret) >= 8 for form in _written_forms(secret)}
    # Longest first, so that a token inside a whole header value goes with it.
    for form in sorted(forms, key=len, reverse=True):
        message = message.replace(form, "[redacted]")
    return message


def _written_forms(secret: str) -> set[str]:
    """`secret` as it is, URL-encoded (form and path styles, hex in either case) and JSON-escaped."""
    encoded = {quote_plus(secret), quote(secret, safe="")}
    encoded |= {re.sub(r"%[0-9A-F]{2}", lambda hex_: hex_.group().lower(), form) for form in encoded}
    return {secret, *encoded, _json.dumps(secret)[1:-1], secret.replace("/", "\\/")}


def _encode(json_value: Any, data: bytes | dict[str, str] | None) -> tuple[bytes | None, str | None]:
    if json_value is not None:
        return _json.dumps(json_value, separators=(",", ":")).encode("utf-8"), "application/json"
    if isinstance(data, dict):
        return urlencode(data).encode("ascii"), "application/x-www-form-urlencoded"
    return data, None
