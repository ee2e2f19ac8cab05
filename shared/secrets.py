"""Destination credentials: read from Key Vault, or from a local file for the demo and local runs.

Each connection names one secret whose value is a JSON object of its credentials (the
fields per destination are in the README). In Azure, `KEY_VAULT_URL` is set and the
secret is read through `SecretClient` with the app's managed identity
(`DefaultAzureCredential`). Without it, `LOCAL_SECRETS_FILE` names a JSON file
`{"<secret name>": {<credentials>}, ...}`; that file is for local use only.

Values are cached per process for `ttl_s`, so a rotated key is picked up within minutes
without reading Key Vault once per chunk. Values never appear in messages: errors name
the secret and the missing fields, never their content.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from .http import Credentials
from .settings import AppSettings

__all__ = ["SecretError", "SecretStore"]


class SecretError(Exception):
    """A connection's credentials are missing, unreadable or incomplete. Safe to show."""


class SecretStore:
    """Reads connections' credentials; one per process (see `from_settings`)."""

    def __init__(self, read: Callable[[str], str | None], source: str, *, ttl_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic):
        self._read = read
        self.source = source  # where secrets come from, for messages: a vault URL or a file path
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, Credentials]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: AppSettings, *, credential: Any = None, **client_options: Any) -> SecretStore:
        """Key Vault when KEY_VAULT_URL is set, else the local secrets file; SecretError if neither is."""
        if settings.key_vault_url:
            return cls.key_vault(settings.key_vault_url, credential=credential,
                                 managed_identity_client_id=settings.managed_identity_client_id, **client_options)
        if settings.local_secrets_file:
            return cls.local_file(settings.local_secrets_file)
        raise SecretError("no secret source: set KEY_VAULT_URL (Azure) or LOCAL_SECRETS_FILE (local runs)")

    @classmethod
    def key_vault(cls, vault_url: str, *, credential: Any = None, managed_identity_client_id: str | None = None,
                  **client_options: Any) -> SecretStore:
        from azure.keyvault.secrets import SecretClient

        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential(managed_identity_client_id=managed_identity_client_id)
        client = SecretClient(vault_url, credential, **client_options)

        def read(name: str) -> str | None:
            try:
                return client.get_secret(name).value
            except ResourceNotFoundError:
                return None
            except ClientAuthenticationError as error:
                raise SecretError(f"Key Vault {vault_url} refused this app's identity: {_first_line(error)}") from None
            except HttpResponseError as error:
                raise SecretError(f"Key Vault {vault_url} could not return secret {name!r}: "
                                  f"{error.status_code} {error.reason}") from None

        return cls(read, vault_url)

    @classmethod
    def local_file(cls, path: str) -> SecretStore:
        def read(name: str) -> str | None:
            try:
                with open(path, encoding="utf-8") as file:
                    secrets = json.load(file)
            except FileNotFoundError:
                raise SecretError(f"local secrets file {path} does not exist") from None
            except ValueError:
                raise SecretError(f"local secrets file {path} is not valid JSON") from None
            value = secrets.get(name) if isinstance(secrets, dict) else None
            # Key Vault holds strings; the local file may hold the object itself.
            return json.dumps(value) if isinstance(value, dict) else value

        return cls(read, path)

    def get(self, name: str) -> Credentials:
        """The credentials stored in secret `name` (which fields a destination needs, it
        checks itself: `Destination.credentials_problem`).

        Raises SecretError when the secret is missing or not a JSON object.
        """
        now = self._clock()
        with self._lock:
            cached = self._cache.get(name)
        if cached is None or now - cached[0] > self._ttl_s:
            value = self._read(name)
            if value is None:
                raise SecretError(f"secret {name!r} was not found in {self.source}")
            cached = (now, _parse(name, value))
            with self._lock:
                self._cache[name] = cached
        return cached[1]


def _parse(name: str, value: str) -> Credentials:
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, Mapping):
        raise SecretError(f"secret {name!r} is not a JSON object of credentials (see the README's secrets format)")
    # A value pasted with its line end is the usual accident: surrounding blanks are no part
    # of any key or token. A control character left inside would be refused by HTTP with
    # an error quoting the whole header, credential and all; it is refused here, by name.
    cleaned = {field: value.strip() if isinstance(value, str) else value for field, value in parsed.items()}
    for field, value in cleaned.items():
        if isinstance(value, str) and any(ord(character) < 32 or ord(character) == 127 for character in value):
            raise SecretError(f"secret {name!r}: field {field!r} holds a control character (a line break or a tab "
                              "inside the value?); store it without one")
    return Credentials(cleaned)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
