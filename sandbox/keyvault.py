"""Stand-in of Azure Key Vault's secrets REST protocol, over HTTPS, for the real `SecretClient`.

Follows the Key Vault protocol as azure-keyvault-secrets 4.x speaks it: `GET
/secrets/{name}/{version}?api-version=...` (an empty version is the latest); a request
without a bearer token gets 401 and the challenge `WWW-Authenticate: Bearer
authorization="https://login.microsoftonline.com/<tenant>", resource="<resource>"`, from
which the client's `ChallengeAuthPolicy` learns the tenant and scope, asks its credential
for a token and sends the request again; a wrong token is 401 with the same challenge;
a secret is `{"value", "id", "attributes", "tags"}`; an unknown one 404 `SecretNotFound`
(the client raises `ResourceNotFoundError`). Errors are `{"error": {"code", "message"}}`.

The client checks the challenge (`verify_challenge_resource`, on by default): the vault's
host must end with "." + the host of the challenge's resource, as
`myvault.vault.azure.net` ends with `.vault.azure.net`. A loopback address has no such
parent domain, so by default this stand-in announces the parent of its own authority,
`https://0.0.1:<port>` for `https://127.0.0.1:<port>` (its host without the first label,
the same relation a real vault has). The check then passes untouched and a test needs
only the certificate:

    with KeyVaultStandIn(secrets={"braze-prod": "{...}"}) as vault:
        client = SecretClient(vault.url, StaticTokenCredential(), connection_verify=vault.ca_path)

With `resource="https://vault.azure.net"` (the real resource) the client needs
`verify_challenge_resource=False` as well. The TLS certificate is issued for 127.0.0.1
and localhost by a throw-away CA generated at `start()`; its files are removed at
`stop()`. Secrets are configuration, not audience: `reset()` keeps them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from azure.core.credentials import AccessToken

from .server import Faults, Request, Response, StandIn

__all__ = ["KeyVaultStandIn", "StaticTokenCredential"]

DEFAULT_TOKEN = "local-test-token"
DEFAULT_TENANT = "00000000-0000-4000-8000-00000000c0de"  # any GUID: the client passes it to the credential


class StaticTokenCredential:
    """An azure-core `TokenCredential` that always returns `token`; records what it was asked for."""

    def __init__(self, token: str = DEFAULT_TOKEN, lifetime_s: int = 3600):
        self.token, self.lifetime_s = token, lifetime_s
        self.asked: list[tuple[tuple[str, ...], str | None]] = []  # (scopes, tenant_id) per call

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        self.asked.append((scopes, tenant_id))
        return AccessToken(self.token, int(time.time()) + self.lifetime_s)


class KeyVaultStandIn(StandIn):
    vendor = "keyvault"

    def __init__(self, *, secrets: Mapping[str, str] | None = None, token: str = DEFAULT_TOKEN,
                 tenant_id: str = DEFAULT_TENANT, resource: str | None = None, faults: Faults | None = None,
                 latency_s: float = 0.0):
        super().__init__(faults=faults, latency_s=latency_s, tls=True)
        self.token, self.tenant_id, self._resource = token, tenant_id, resource
        self.identity_header = "local-identity-header"
        self.secrets: dict[str, str] = {}
        self.versions: dict[str, dict[str, tuple[str, int]]] = {}  # name -> version -> (value, created)
        self.calls: list[dict[str, Any]] = []  # method, path, had_token: what the client sent
        for name, value in (secrets or {}).items():
            self.set_secret(name, value)

    def routes(self):
        return [("GET", r"/secrets/(?P<name>[0-9A-Za-z-]+)(?:/(?P<version>[0-9a-f]*))?", self.get_secret),
                ("GET", r"/msi/token", self.issue_identity_token)]

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {"secrets": {name: list(versions) for name, versions in self.versions.items()}}

    def reset(self) -> None:
        self.calls.clear()

    def set_secret(self, name: str, value: str) -> str:
        """Store a new version of secret `name` as its current value; returns the version id."""
        version = uuid.uuid4().hex
        with self.lock:
            self.secrets[name] = value
            self.versions.setdefault(name, {})[version] = (value, int(time.time()))
        return version

    def _latest_version(self, name: str) -> str:
        """The version holding `secrets[name]`; a value written straight into `secrets` becomes a new one."""
        versions = self.versions.get(name, {})
        latest = next(reversed(versions), None)
        if latest is None or versions[latest][0] != self.secrets[name]:
            latest = self.set_secret(name, self.secrets[name])
        return latest

    @property
    def resource(self) -> str:
        """The resource announced in the challenge (see the module docstring); settable, None for the default."""
        return self._resource or "https://" + self.url.removeprefix("https://").partition(".")[2]

    @resource.setter
    def resource(self, value: str | None) -> None:
        self._resource = value

    # -- secrets -----------------------------------------------------------------------------

    def get_secret(self, request: Request) -> Response:
        authorization = request.headers.get("authorization", "")
        with self.lock:
            self.calls.append({"method": request.method, "path": request.path, "had_token": bool(authorization)})
        if not authorization.startswith("Bearer "):
            return self._challenge("AKV10000: Request is missing a Bearer or PoP token.")
        if authorization.removeprefix("Bearer ") != self.token:
            return self._challenge("AKV10022: Invalid audience or token for this vault.")
        if not request.query.get("api-version"):
            return _error(400, "BadParameter", "The 'api-version' query parameter is missing.")
        name, version = request.params["name"], request.params["version"]
        with self.lock:
            if not version and name in self.secrets:
                version = self._latest_version(name)
            found = self.versions.get(name, {}).get(version)
        if found is None:
            return _error(404, "SecretNotFound", f"A secret with (name/id) {name}{'/' + version if version else ''} "
                                                 f"was not found in this key vault. If you recently deleted this "
                                                 f"secret you may be able to recover it using the correct recovery "
                                                 f"command.")
        value, created = found
        return Response(200, {"value": value, "id": f"{self.url}/secrets/{name}/{version}", "tags": {},
                              "attributes": {"enabled": True, "created": created, "updated": created,
                                             "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90}})

    # -- managed identity ------------------------------------------------------------------

    def issue_identity_token(self, request: Request) -> Response:
        """App Service's managed identity endpoint (IDENTITY_ENDPOINT, protocol 2019-08-01).

        With IDENTITY_ENDPOINT=<url>/msi/token and IDENTITY_HEADER=<identity_header> set, the
        app's own `DefaultAzureCredential` gets its token here, as a Function App does in Azure.
        """
        if request.headers.get("x-identity-header") != self.identity_header:
            return Response(401, {"error": "invalid_request", "error_description": "X-IDENTITY-HEADER is wrong"})
        resource = (request.query.get("resource") or [""])[0]
        with self.lock:
            self.calls.append({"method": "GET", "path": request.path, "had_token": False, "resource": resource})
        return Response(200, {"access_token": self.token, "expires_on": str(int(time.time()) + 3600),
                              "resource": resource, "token_type": "Bearer",
                              "client_id": (request.query.get("client_id") or ["system-assigned"])[0]})

    @property
    def identity_endpoint(self) -> str:
        return f"{self.url}/msi/token"

    def _challenge(self, message: str) -> Response:
        challenge = (f'Bearer authorization="https://login.microsoftonline.com/{self.tenant_id}", '
                     f'resource="{self.resource}"')
        return Response(401, {"error": {"code": "Unauthorized", "message": message}},
                        {"WWW-Authenticate": challenge})

    def throttle_answer(self, wait_s: float, reset_epoch: float) -> Response:
        return Response(429, {"error": {"code": "Throttled", "message": "Request was not processed because too "
                                                                       "many requests were received."}},
                        {"Retry-After": str(max(1, round(wait_s)))})

    def server_error_answer(self, status: int) -> Response:
        return _error(status, "InternalServerError" if status == 500 else "ServiceUnavailable", "Try again later.")

    def bad_request(self, message: str) -> Response:
        return _error(400, "BadParameter", message)

    def not_found(self, path: str) -> Response:
        return _error(404, "NotFound", f"Not Found: {path}")


def _error(status: int, code: str, message: str) -> Response:
    return Response(status, {"error": {"code": code, "message": message}})
