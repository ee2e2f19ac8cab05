"""The common machinery of the vendor stand-ins: an HTTP server, routing, faults, rate limits.

A stand-in (`sandbox/<vendor>.py`) subclasses `StandIn`, declares its routes and keeps the
resulting audience in memory. This module gives every stand-in the same:

- a threaded HTTP/1.1 keep-alive server on a free loopback port, with TCP_NODELAY (without
  it, Python's server adds about 40 ms to every keep-alive request);
- `Faults`: injected 429s (with the vendor's throttling signal), 500/503s, slow answers,
  connections dropped before or after the request is processed, and access tokens
  expiring mid-run, at given rates;
- `Window`: the vendor's documented rate limit, enforced with the vendor's own signal; and
  a count of requests that arrived inside a throttle window the stand-in had announced
  (a well-behaved client sends none);
- a log of every request, and control endpoints under `/__sandbox__/` (state, faults,
  reset) for the demo and tests that run a stand-in in another process.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import re
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson  # a dev dependency: the stand-ins' JSON, twice as fast as json's on 1,000-subscriber bodies

from .tls import issue_certificates

__all__ = ["Faults", "Request", "Response", "StandIn", "Window"]


class _Headers(dict):
    """Request headers by lowercase name; `get` takes any case, as `email.message.Message` does."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


class _Server(ThreadingHTTPServer):
    # A vendor's servers take bursts of new connections. With socketserver's backlog of 5,
    # a burst (a fan-out of 32 chunks with requests in flight) overflowed the accept queue:
    # the kernel dropped the SYN and the client's kernel sent it again a second later, so
    # a request that had left before a throttle window arrived inside it.
    request_queue_size = 256
    daemon_threads = True


def _parse_request(handler: BaseHTTPRequestHandler) -> bool:
    """`BaseHTTPRequestHandler.parse_request` with the headers read directly.

    The standard one reads headers through the email package's parser: a fifth of a
    stand-in's time per request. Request line and headers are taken as clients send them
    (HTTP/1.1, one header per line); anything else is answered 400.
    """
    handler.arrived_at = time.time()  # when the request line was read: the request's arrival, before its body
    handler.command, handler.close_connection = None, True
    handler.request_version = handler.default_request_version
    handler.requestline = str(handler.raw_requestline, "iso-8859-1").rstrip("\r\n")
    words = handler.requestline.split()
    if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
        handler.send_error(400, f"Bad request line {handler.requestline!r}")
        return False
    handler.command, handler.path, handler.request_version = words
    headers = _Headers()
    while (line := handler.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
        name, colon, value = line.decode("iso-8859-1").partition(":")
        if not colon or len(headers) >= 100:
            handler.send_error(400, "Bad header line")
            return False
        headers[name.strip().lower()] = value.strip()
    handler.headers = headers
    connection = headers.get("connection", "").lower()
    handler.close_connection = connection == "close" or (handler.request_version == "HTTP/1.0"
                                                         and connection != "keep-alive")
    return True


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lowercase names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # from the route's named groups

    def json(self) -> Any:
        return orjson.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {key: values[0] for key, values in parse_qs(self.body.decode("utf-8")).items()}


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-serialisable, or bytes
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return orjson.dumps(self.body, option=orjson.OPT_NON_STR_KEYS)


# An access token granted this recently is not expired by the `expire_token` fault: a
# vendor's token lives for its `expires_in`, so a fresh one refused means bad credentials.
FRESH_TOKEN_S = 1.0


@dataclass
class Faults:
    """Rates (0..1) of injected failures per request, drawn from a seeded generator."""

    throttle: float = 0.0  # answer 429 with the vendor's throttling signal
    server_error: float = 0.0  # answer 500 or 503
    slow: float = 0.0  # answer after `slow_s` (past the client's timeout)
    drop_before: float = 0.0  # close the connection without processing the request
    drop_after: float = 0.0  # process the request, then close without answering
    expire_token: float = 0.0  # the access tokens expire just before this request (OAuth vendors; not one
    # granted within FRESH_TOKEN_S)
    slow_s: float = 2.0
    throttle_wait_s: float = 1.0  # the wait announced with an injected 429 (vendors announce whole seconds)
    seed: int = 7

    def any(self) -> bool:
        return any((self.throttle, self.server_error, self.slow, self.drop_before, self.drop_after, self.expire_token))

    @classmethod
    def of(cls, settings: Any) -> Faults:
        """Faults from a JSON object's settings (`sandbox --faults`, `/__sandbox__/faults`);
        ValueError saying what is wrong with them."""
        if not isinstance(settings, dict):
            raise ValueError('faults must be a JSON object, e.g. {"throttle": 0.1, "server_error": 0.05}')
        known = dict(cls.__annotations__)  # name -> type, as text
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ValueError(f"unknown fault setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
        for name, value in settings.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, not {value!r}")
            if name == "seed" and not isinstance(value, int):
                raise ValueError(f"seed must be a whole number, not {value!r}")
            if known[name] == "float" and name not in ("slow_s", "throttle_wait_s") and not 0 <= value <= 1:
                raise ValueError(f"{name} is a rate per request, from 0 to 1, not {value!r}")
            if value < 0:
                raise ValueError(f"{name} must not be negative, not {value!r}")
        return cls(**settings)


class Window:
    """A vendor's rate limit: at most `limit` requests per `seconds`, fixed or sliding window."""

    def __init__(self, limit: int, seconds: float, sliding: bool = False, clock: Callable[[], float] = time.time):
        self.limit = limit
        self.seconds = seconds
        self.sliding = sliding
        self._clock = clock
        self._lock = threading.Lock()
        self._stamps: list[float] = []
        self._window_start = 0.0
        self._count = 0

    def admit(self) -> tuple[bool, float, int, float]:
        """Count one request: (admitted, seconds until a slot frees, remaining, reset epoch)."""
        now = self._clock()
        with self._lock:
            if self.sliding:
                horizon = now - self.seconds
                while self._stamps and self._stamps[0] <= horizon:
                    self._stamps.pop(0)
                if len(self._stamps) >= self.limit:
                    wait = self._stamps[0] + self.seconds - now
                    return False, wait, 0, now + wait
                self._stamps.append(now)
                return True, 0.0, self.limit - len(self._stamps), now + self.seconds
            if now >= self._window_start + self.seconds:
                self._window_start = now - (now % self.seconds) if self.seconds >= 1 else now
                self._count = 0
            reset = self._window_start + self.seconds
            if self._count >= self.limit:
                return False, reset - now, 0, reset
            self._count += 1
            return True, 0.0, self.limit - self._count, reset


Route = tuple[str, re.Pattern, Callable[[Request], Response]]


class StandIn:
    """Base of a vendor stand-in. Subclasses set `vendor`, `routes()` and the throttle answer."""

    vendor = "vendor"
    # Paths the rate limit does not count (regexes): a token endpoint on a service of its own.
    unmetered: tuple[str, ...] = ()

    def __init__(self, *, faults: Faults | None = None, window: Window | None = None, latency_s: float = 0.0,
                 tls: bool = False, echo_credentials: bool = False):
        self.faults = faults or Faults()
        # Some vendors repeat the credential they refuse in their message; the stand-ins do
        # when told to, so that tests see the exporter keep it out of reports and logs.
        self.echo_credentials = echo_credentials
        self.window = window
        self.latency_s = latency_s  # added to every answer (a far-away vendor)
        self.lock = threading.RLock()
        self.log: list[dict[str, Any]] = []
        self.throttled_until = 0.0  # end of the last throttle window this stand-in announced
        self.announced_at = 0.0
        # Requests arriving within grace_s of an announcement were already on their way when
        # the client read the 429: sent, or past the client's pacer in another thread, which
        # a garbage collection or the interpreter lock can hold for a couple of hundred ms.
        # Later ones inside the window (announced in whole seconds) disregarded it.
        self.grace_s = 0.25
        self.requests_in_throttle_window = 0
        self.throttle_window_arrivals: list[tuple[float, float]] = []
        self.in_progress = self.peak_in_progress = 0  # vendor requests being answered at once
        self._random = random.Random(self.faults.seed)
        self._routes: list[Route] = [
            (method, re.compile(pattern), handler) for method, pattern, handler in self.routes()]
        self._server: ThreadingHTTPServer | None = None
        self.tls = tls
        self._certificates: tempfile.TemporaryDirectory | None = None

    # -- what subclasses provide -------------------------------------------------------

    def routes(self) -> list[tuple[str, str, Callable[[Request], Response]]]:
        """(method, path regex with named groups, handler) of the vendor API."""
        raise NotImplementedError

    def presented(self, request: Request, form: bool = False) -> str:
        """With `echo_credentials`, what the request presented (its Authorization header; with
        `form`, its form body too: a token grant's secrets), for a refusal's message."""
        if not self.echo_credentials:
            return ""
        shown = request.headers.get("authorization", "")
        if form and request.body:
            shown += " " + request.body.decode("utf-8", "replace")
        return f" (received: {shown.strip()})"

    def throttle_answer(self, wait_s: float, reset_epoch: float) -> Response:
        """The vendor's 429; the default is a bare one."""
        return Response(429, b"")

    def rate_headers(self, remaining: int, reset_epoch: float) -> dict[str, str]:
        """Headers the vendor puts on every answer about its rate limit (Braze); none by default."""
        return {}

    def window_end(self, announced_at: float, wait_s: float, reset_epoch: float) -> float:
        """When the throttle window a 429 announced ends, as its reader is told: `wait_s` after it by default.

        A vendor announcing a clock time (Braze's reset epoch second) overrides this: the
        window it told the client is that time, not the stand-in's own `wait_s` after answering.
        """
        return announced_at + wait_s

    def expire_tokens(self, granted_before: float | None = None) -> None:
        """Make the access tokens issued so far expired, or those granted before the epoch
        second `granted_before` (vendors with OAuth override this)."""

    def state(self) -> dict[str, Any]:
        """The audiences this stand-in holds, JSON-ready, for the demo and tests."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the audiences (between tests)."""
        raise NotImplementedError

    # -- serving -----------------------------------------------------------------------

    def start(self, port: int = 0) -> StandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # TCP_NODELAY

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def parse_request(self) -> bool:
                return _parse_request(self)

            def _serve(self) -> None:
                stand_in._dispatch(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        self._server = _Server(("127.0.0.1", port), Handler)
        if self.tls:
            self._serve_tls(self._server)
        # A short poll interval lets stop() return at once instead of after half a second.
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         name=f"{self.vendor}-stand-in", daemon=True).start()
        return self

    def _serve_tls(self, server: ThreadingHTTPServer) -> None:
        self._certificates = tempfile.TemporaryDirectory(prefix=f"{self.vendor}-stand-in-")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*issue_certificates(self._certificates.name))
        # The handshake runs in each connection's thread on its first read, so a client stuck
        # in it never blocks the accepting thread.
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        report = server.handle_error

        def handle_error(request: Any, client_address: Any) -> None:
            # A client that does not trust the certificate is the client's failure, not a server traceback.
            if not isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
                report(request, client_address)

        server.handle_error = handle_error

    @property
    def ca_path(self) -> str:
        """The CA certificate (PEM) clients must trust when the stand-in serves TLS; valid until `stop()`."""
        assert self._certificates, "stand-in not started with tls=True"
        return os.path.join(self._certificates.name, "ca.pem")

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._certificates:
            self._certificates.cleanup()
            self._certificates = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server, "stand-in not started"
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._server.server_address[1]}"

    def requests(self, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        """The logged requests, optionally filtered by method and path regex."""
        with self.lock:
            return [entry for entry in self.log
                    if (method is None or entry["method"] == method)
                    and (path is None or re.fullmatch(path, entry["path"]))]

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = Request(handler.command, parts.path, parse_qs(parts.query), dict(handler.headers), body)
        if request.path.startswith("/__sandbox__/"):
            self._write(handler, self._control(request))
            return
        with self.lock:
            self.in_progress += 1
            self.peak_in_progress = max(self.peak_in_progress, self.in_progress)
        try:
            response, drop = self._answer(request, handler.arrived_at)
            if self.latency_s:
                time.sleep(self.latency_s)
        finally:
            with self.lock:
                self.in_progress -= 1
        if drop:
            handler.close_connection = True
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._write(handler, response)

    def _answer(self, request: Request, now: float) -> tuple[Response | None, bool]:
        """The response, and whether to drop the connection instead of answering (arrived at `now`)."""
        with self.lock:
            if self.announced_at + self.grace_s <= now < self.throttled_until:
                self.requests_in_throttle_window += 1
                # When in the window it came, and how long the window was: for diagnosis.
                self.throttle_window_arrivals.append(
                    (round(now - self.announced_at, 3), round(self.throttled_until - self.announced_at, 3)))
            draw = self._random.random
            fault = None
            if self.faults.any():
                for name in ("drop_before", "throttle", "server_error", "slow", "drop_after", "expire_token"):
                    if draw() < getattr(self.faults, name):
                        fault = name
                        break
        # The digest identifies a batch, so a test can tell a batch sent twice from two batches.
        entry = {"method": request.method, "path": request.path, "at": now, "fault": fault, "bytes": len(request.body),
                 "digest": hashlib.sha1(request.body).hexdigest() if request.body else None}
        if fault == "expire_token":
            self.expire_tokens(granted_before=time.time() - FRESH_TOKEN_S)
        if fault == "drop_before":
            self._record(entry, None)
            return None, True
        if fault == "throttle":
            wait = self.faults.throttle_wait_s
            return self._throttled(entry, wait, now + wait), False
        if fault == "server_error":
            status = 503 if self._random.random() < 0.5 else 500
            return self._record(entry, self.server_error_answer(status)), False
        if self.window is not None and not any(re.fullmatch(path, request.path) for path in self.unmetered):
            admitted, wait, remaining, reset = self.window.admit()
            if not admitted:
                return self._throttled(entry, wait, reset), False
            rate_headers = self.rate_headers(remaining, reset)
        else:
            rate_headers = {}
        if fault == "slow":
            time.sleep(self.faults.slow_s)
        response = self._route(request)
        response.headers.update(rate_headers)
        self._record(entry, response)
        return response, fault == "drop_after"

    def _throttled(self, entry: dict[str, Any], wait: float, reset_epoch: float) -> Response:
        response = self.throttle_answer(wait, reset_epoch)
        if response.headers or (isinstance(response.body, dict) and "retryAfter" in response.body):
            with self.lock:  # the vendor announced when to come back: count who doesn't wait
                now = time.time()
                end = self.window_end(now, wait, reset_epoch)
                if end > self.throttled_until:
                    self.announced_at, self.throttled_until = now, end
        return self._record(entry, response)

    def server_error_answer(self, status: int) -> Response:
        return Response(status, {"message": "Internal Server Error" if status == 500 else "Service Unavailable"})

    def _record(self, entry: dict[str, Any], response: Response | None) -> Response | None:
        entry["status"] = response.status if response else None
        with self.lock:
            self.log.append(entry)
        return response

    def _route(self, request: Request) -> Response:
        allowed = []
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match:
                if method == request.method:
                    request.params = match.groupdict()
                    try:
                        return handler(request)
                    except (ValueError, KeyError, TypeError) as error:
                        return self.bad_request(f"malformed request: {error}")
                allowed.append(method)
        if allowed:
            return Response(405, {"message": "Method Not Allowed"}, {"Allow": ", ".join(allowed)})
        return self.not_found(request.path)

    def bad_request(self, message: str) -> Response:
        return Response(400, {"message": message})

    def not_found(self, path: str) -> Response:
        return Response(404, {"message": f"Not Found: {path}"})

    def _control(self, request: Request) -> Response:
        action = request.path[len("/__sandbox__/"):]
        if action == "state" and request.method == "GET":
            with self.lock:
                injected = Counter(entry["fault"] for entry in self.log if entry["fault"])
                return Response(200, {"state": self.state(), "requests": len(self.log),
                                      "requests_in_throttle_window": self.requests_in_throttle_window,
                                      "throttle_window_arrivals": self.throttle_window_arrivals,
                                      "faults": asdict(self.faults), "faults_injected": dict(injected)})
        if action == "faults" and request.method == "POST":
            try:
                faults = Faults.of(request.json())
            except ValueError as error:  # orjson's decode error is a ValueError too
                return self.bad_request(str(error))
            with self.lock:
                self.faults = faults
                self._random = random.Random(self.faults.seed)
            return Response(204)
        if action == "reset" and request.method == "POST":
            with self.lock:
                self.reset()
                self.log.clear()
                self.requests_in_throttle_window = 0
                self.throttle_window_arrivals.clear()
                self.throttled_until = self.announced_at = 0.0
                self.peak_in_progress = 0
            return Response(204)
        return Response(404, {"message": "unknown sandbox control"})

    @staticmethod
    def _write(handler: BaseHTTPRequestHandler, response: Response) -> None:
        payload = response.encoded()
        head = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Status')}"]
        headers = {"Content-Length": str(len(payload))}
        if response.body is not None and not isinstance(response.body, bytes):
            headers["Content-Type"] = "application/json"
        headers.update(response.headers)
        head += [f"{name}: {value}" for name, value in headers.items()]
        # One send for head and body: no small-packet delays, whatever the socket options.
        handler.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
        handler.wfile.flush()


_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request",
            401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            410: "Gone", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
