"""Keep-alive HTTP/1.1 to the vendors, on the standard library's http.client.

Why not `requests` here: on the 2-core machine the benchmarks run on, one `requests`
call costs about 1.0-1.6 ms of CPU (session merging, netrc and proxy lookups, hooks,
cookie jars), against about 0.2 ms for http.client on a kept-alive connection. At
Braze's 75 profiles per request, a million profiles are 13,334 requests: the difference
is 10-20 CPU-seconds per million, more than all the CSV parsing. Everything else (the
Azure SDK, the tests) still uses `requests`.

What it does: one pool of idle connections per origin, shared by the threads sending to
one connection; TLS verified against certifi's bundle (as requests does, or
REQUESTS_CA_BUNDLE); an HTTPS proxy from the environment, tunnelled with CONNECT; a
reused connection that turns out closed by the server is a `StaleConnection`: sent again
at once on a new connection, but through the pacer (a stale keep-alive, not a fault).
Any other failure is a `ConnectionProblem` for the retry logic.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import threading
import urllib.request
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ConnectionProblem", "Response", "StaleConnection", "Transport", "UnsendableHeader"]


class UnsendableHeader(ValueError):
    """A header HTTP cannot carry (a line break, a character outside Latin-1): `http.client`'s
    own error quotes the whole header, credential and all, so this one names none of it."""


class ConnectionProblem(Exception):
    """No answer: the connection failed, was dropped, or the answer took longer than the timeout.

    `sent`: the whole request had been written when it happened, so the vendor may have
    applied it (an answer lost, a timeout while it worked on it)."""

    def __init__(self, timed_out: bool, sent: bool = False):
        super().__init__("no answer within the timeout" if timed_out else "connection failed or dropped")
        self.timed_out, self.sent = timed_out, sent


class StaleConnection(ConnectionProblem):
    """A kept-alive connection failed before any answer: most likely closed by the server while idle."""


class Response:
    """A vendor's answer, read whole (answers are small JSON documents)."""

    __slots__ = ("status_code", "reason", "headers", "content")

    def __init__(self, status_code: int, reason: str, headers: Any, content: bytes):
        self.status_code, self.reason, self.headers, self.content = status_code, reason, headers, content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The JSON body; ValueError when there is none."""
        if not self.content:
            raise ValueError("empty body")
        return json.loads(self.content)


def _tls_context() -> ssl.SSLContext:
    cafile = os.environ.get("REQUESTS_CA_BUNDLE")
    if not cafile:
        try:
            import certifi

            cafile = certifi.where()
        except ImportError:
            cafile = None
    return ssl.create_default_context(cafile=cafile)


class Transport:
    """Connections to the origins one destination connection talks to (API, token endpoint)."""

    def __init__(self, max_idle_per_origin: int = 32):
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._max_idle = max_idle_per_origin
        self._tls: ssl.SSLContext | None = None
        self._origins: dict[str, tuple[tuple[str, str, int], str]] = {}

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
             timeout: float, *, fresh: bool = False) -> Response:
        """One request, one answer; ConnectionProblem when there is no answer.

        StaleConnection when a pooled connection failed at once (the server had closed it
        while idle): the caller sends again with `fresh`, on a new connection, after its
        pacer's turn, since a throttle window may have been announced meanwhile.
        """
        origin, path = self._split(url)
        connection, reused = (self._connect(origin, timeout), False) if fresh else self._checkout(origin, timeout)
        sent = False
        try:
            self._write(connection, method, path, headers, body)
            sent = True
            return self._answer(connection, origin)
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            timed_out = isinstance(error, (socket.timeout, TimeoutError))
            if reused and not timed_out:
                raise StaleConnection(False, sent) from None
            raise ConnectionProblem(timed_out, sent) from None

    def close(self) -> None:
        with self._lock:
            for connections in self._idle.values():
                for connection in connections:
                    connection.close()
            self._idle.clear()

    def _split(self, url: str) -> tuple[tuple[str, str, int], str]:
        base, _, rest = url.partition("//")
        authority, slash, path = rest.partition("/")
        key = base + "//" + authority
        origin = self._origins.get(key)
        if origin is None:
            parts = urlsplit(key)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            origin = self._origins[key] = ((parts.scheme, parts.hostname or "", port), authority)
        return origin[0], slash + path if slash else "/"

    def _checkout(self, origin: tuple[str, str, int], timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get(origin)
            if idle:
                connection = idle.pop()
                connection.timeout = timeout
                if connection.sock is not None:
                    connection.sock.settimeout(timeout)
                return connection, True
        return self._connect(origin, timeout), False

    def _connect(self, origin: tuple[str, str, int], timeout: float) -> http.client.HTTPConnection:
        scheme, host, port = origin
        proxy = _proxy_for(scheme, host)
        if scheme == "https":
            if self._tls is None:
                self._tls = _tls_context()
            if proxy:
                connection = http.client.HTTPSConnection(proxy[0], proxy[1], timeout=timeout, context=self._tls)
                connection.set_tunnel(host, port)
                return connection
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    @staticmethod
    def _write(connection: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str],
               body: bytes | None) -> None:
        try:
            connection.request(method, path, body=body, headers=headers)
        except ValueError:  # refused before a byte was sent (putheader; UnicodeEncodeError among them)
            connection.close()
            raise UnsendableHeader("a header holds a character HTTP does not allow") from None

    def _answer(self, connection: http.client.HTTPConnection, origin: tuple[str, str, int]) -> Response:
        answer = connection.getresponse()
        content = answer.read()
        if answer.will_close:
            connection.close()
        else:
            with self._lock:
                idle = self._idle.setdefault(origin, [])
                if len(idle) < self._max_idle:
                    idle.append(connection)
                else:
                    connection.close()
        return Response(answer.status, answer.reason, answer.headers, content)


def _proxy_for(scheme: str, host: str) -> tuple[str, int] | None:
    """The HTTPS proxy from the environment (HTTPS_PROXY, NO_PROXY), for https origins."""
    if scheme != "https":
        return None
    proxy = urllib.request.getproxies().get("https")
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    parts = urlsplit(proxy if "//" in proxy else f"http://{proxy}")
    return parts.hostname or "", parts.port or 8080
