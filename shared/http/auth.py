"""How a destination authenticates: its credentials, fixed API keys, refreshed OAuth tokens."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .errors import AuthError, FatalError
from .signals import json_body

if TYPE_CHECKING:
    from .client import HttpClient

__all__ = ["Credentials", "RefreshingBearer", "StaticKey", "TokenSource"]


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
