"""Who may do what through the HTTP API, from the App Service authentication principal.

Every route needs a function key. When App Service authentication (Easy Auth) is on, the
platform adds `X-MS-CLIENT-PRINCIPAL` (base64 JSON with the caller's claims); the app
roles `admin` and `contributor` in it decide: connections are managed by admins;
exports by admins, or contributors on connections that allow contributors; a run may be
started by anyone who may use the export's connection. A caller with a function key and
no principal (an automation) may start and read runs but not change definitions.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Caller", "may_manage_connection", "may_manage_export", "may_use_connection"]

_ROLE_CLAIMS = {"roles", "role", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}


@dataclass(frozen=True)
class Caller:
    name: str | None
    roles: frozenset[str]
    signed_in: bool

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Caller:
        """The caller described by Easy Auth's headers; an anonymous key holder without them."""
        encoded = headers.get("x-ms-client-principal")
        if not encoded:
            return cls(None, frozenset(), False)
        try:
            principal = json.loads(base64.b64decode(encoded))
            claims = principal.get("claims") or []
        except (ValueError, AttributeError):
            return cls(None, frozenset(), False)
        roles = frozenset(c.get("val") for c in claims if isinstance(c, dict) and c.get("typ") in _ROLE_CLAIMS)
        name = headers.get("x-ms-client-principal-name") or next(
            (c.get("val") for c in claims if isinstance(c, dict) and c.get("typ") in ("name", "preferred_username")),
            None)
        return cls(name, roles, True)

    @property
    def label(self) -> str:
        return self.name or ("signed-in caller" if self.signed_in else "function key")


def may_use_connection(caller: Caller, connection: Mapping[str, Any] | None) -> str | None:
    """Why `caller` may not start a run through `connection`, or None."""
    if not caller.signed_in or connection is None:
        return None
    allowed = set(connection.get("usable_by") or ["admin"])
    if caller.roles & allowed:
        return None
    return f'connection "{connection.get("name")}" may be used by {", ".join(sorted(allowed))}; you have no such role'


def may_manage_connection(caller: Caller) -> str | None:
    if "admin" in caller.roles:
        return None
    return "managing connections needs the admin role (App Service authentication)"


def may_manage_export(caller: Caller, connection: Mapping[str, Any] | None) -> str | None:
    if "admin" in caller.roles:
        return None
    if "contributor" in caller.roles:
        return may_use_connection(caller, connection)
    return "managing exports needs the admin or contributor role (App Service authentication)"
