"""Connections and exports: the JSON documents users write, their validation and models.

A *connection* is one destination account (type, credentials' Key Vault secret, consent);
an *export* sends one or more segments through one connection. Both are plain JSON so
they can live in the `exports` container, in a local file for the CLI, or in an HTTP body.

Validation never stops at the first problem: `DefinitionError` carries every problem
found, each naming the object, the field and what is wrong, so one round of edits fixes
a document. What each destination type adds (its settings, target fields, credentials)
comes from the `DestinationSpec` its module declares; this module knows no vendor.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "Connection",
    "Consent",
    "DefinitionError",
    "Definitions",
    "DestinationSpec",
    "Export",
    "Matching",
    "Problem",
    "Setting",
    "ROLES",
    "parse_connection",
    "parse_definitions",
    "parse_export",
    "export_enabled",
    "record_consent",
    "segment_path_problem",
    "valid_name",
    "with_stored_connections",
]

ROLES = ("admin", "contributor")
MODES = ("upsert",)
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_SECRET_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")  # Key Vault's own rule for secret names
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# A chunk activity sends about this many requests a second to a vendor over the internet
# (its `requests_in_flight`, 2 by default, at ~200 ms a round trip). A connection's rate
# limit divided by it is how many chunk activities it takes to use the limit: the
# default of `parallel_chunks`, at most MAX_WIDTH (the setting itself allows up to 64).
SENDER_RATE = 10.0
MAX_WIDTH = 32


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one field of one document."""

    object: str  # e.g. 'connection "braze-eu"'
    field: str  # dotted path, e.g. "settings.rest_endpoint"
    message: str

    def __str__(self) -> str:
        return f"{self.object}: {self.field}: {self.message}"


class DefinitionError(ValueError):
    """A connection or export document is invalid; `problems` lists every problem found."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Setting:
    """One field of a connection's `settings` or an export's `target`, as a destination declares it.

    `default` may be a callable taking the whole document, for defaults derived from it
    (an Omnisend tag derived from the export name). `hosts` marks a URL setting: it must
    point at one of the vendor's own hosts (regular expressions), so a connection can't
    be aimed at an arbitrary host; loopback is accepted only when local endpoints are
    explicitly allowed (the sandbox stand-ins).
    """

    name: str
    description: str
    kind: type | tuple[type, ...] = str
    required: bool = False
    default: Any = None
    choices: tuple[Any, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    hosts: tuple[str, ...] = ()
    check: Callable[[Any], str | None] | None = None

    def resolve(self, document: Mapping[str, Any], section: Mapping[str, Any],
                allow_local: bool) -> tuple[Any, str | None]:
        """Return (value, problem) for this setting within `section` of `document`."""
        if self.name not in section or section[self.name] is None:
            if self.required:
                return None, "is required"
            value = self.default(document) if callable(self.default) else self.default
            return value, None
        value = section[self.name]
        # bool is an int subclass: keep them apart so `true` is not a batch size.
        if not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value, bool)):
            return value, f"must be {_KIND_NAMES.get(self.kind, str(self.kind))}, got {_shown(value)}"
        if self.kind is str and not value.strip():
            return value, "must not be empty"
        if self.choices and value not in self.choices:
            return value, f"must be one of {', '.join(map(str, self.choices))}, got {_shown(value)}"
        if self.minimum is not None and value < self.minimum:
            return value, f"must be at least {self.minimum}, got {value}"
        if self.maximum is not None and value > self.maximum:
            return value, f"must be at most {self.maximum}, got {value}"
        if self.hosts:
            problem = _endpoint_problem(value, self.hosts, allow_local)
            if problem:
                return value, problem
        if self.check:
            problem = self.check(value)
            if problem:
                return value, problem
        return value, None


_KIND_NAMES = {str: "a string", int: "a whole number", bool: "true or false", list: "a list",
               (int, float): "a number"}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _endpoint_problem(url: str, hosts: tuple[str, ...], allow_local: bool) -> str | None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host in _LOCAL_HOSTS and parts.scheme in ("http", "https"):
        return None if allow_local else (
            "a loopback endpoint (the local sandbox) is accepted only when the app setting "
            "ALLOW_LOCAL_ENDPOINTS is true")
    if parts.scheme != "https":
        return f"must be an https:// URL of the vendor, got {_shown(url)}"
    if not any(re.fullmatch(pattern, host) for pattern in hosts):
        return (
            f"host {host!r} is not one of the vendor's hosts; another host (such as the local "
            "sandbox) is accepted only when the app setting ALLOW_LOCAL_ENDPOINTS is true"
        )
    return None


@dataclass(frozen=True)
class DestinationSpec:
    """What a destination type adds to the generic connection and export documents."""

    type: str
    display_name: str
    identifier: str  # "email" or "customer_id": the column every row must have; also the dedupe key
    secret_fields: tuple[str, ...]  # fields of the credentials JSON stored in Key Vault
    settings: tuple[Setting, ...] = ()
    target: tuple[Setting, ...] = ()
    requires_customer_id: bool = False
    accepts_attributes: bool = True
    accepts_consent: bool = False
    # Target settings that, when true, act only on people whose consent cell says yes, and
    # so need a consent column (Campaign Monitor's `resubscribe`).
    need_consent: tuple[str, ...] = ()
    check_attribute: Callable[[str], str | None] | None = None
    # Limits: the defaults of every connection's generic settings (see `limit_settings`).
    batch_size: int = 100
    max_batch_size: int = 100
    requests_per_second: float = 10.0
    # The window the vendor counts requests in: its limit is requests_per_second times this
    # many requests in any such window (Braze's 3,000 per 3 s, not 1,000 in every second).
    # The pacer lets a connection's requests go together up to that count (`shared.http.pacing`).
    rate_window_s: float = 1.0

    def default_width(self, document: Mapping[str, Any]) -> int:
        """Chunk activities at once, from the connection's rate limit: one sender per SENDER_RATE."""
        rate = (document.get("settings") or {}).get("requests_per_second", self.requests_per_second)
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or rate <= 0:
            rate = self.requests_per_second
        return max(1, min(MAX_WIDTH, math.ceil(rate / SENDER_RATE)))

    def limit_settings(self) -> tuple[Setting, ...]:
        """Settings every connection has, with this destination's documented defaults."""
        return (
            Setting("batch_size", f"profiles per request (at most {self.max_batch_size:,})", kind=int,
                    default=self.batch_size, minimum=1, maximum=self.max_batch_size),
            Setting("requests_per_second", "the vendor's rate limit this connection stays under", kind=(int, float),
                    default=self.requests_per_second, minimum=0.01),
            Setting("parallel_chunks", "chunk activities running at once for this connection", kind=int,
                    default=self.default_width, minimum=1, maximum=64),
            Setting("timeout_s", "seconds to wait for the vendor's answer before retrying", kind=(int, float),
                    default=60, minimum=1, maximum=600),
            Setting("requests_in_flight", "requests each chunk activity has in flight at once", kind=int,
                    default=2, minimum=1, maximum=8),
        )


@dataclass(frozen=True)
class Consent:
    """The data privacy notice accepted for a connection: who agreed, and when."""

    accepted_by: str
    accepted_at: str


@dataclass(frozen=True)
class Connection:
    name: str
    type: str
    display_name: str
    usable_by: tuple[str, ...]
    secret_name: str
    consent: Consent | None
    settings: Mapping[str, Any]
    document: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)


@dataclass(frozen=True)
class Matching:
    """Which segment column feeds which destination field (column names, case-insensitive)."""

    email: str
    customer_id: str | None
    attributes: Mapping[str, str]
    consent: str | None

    def columns(self) -> dict[str, str]:
        """Every mapped column by role: 'email', 'customer_id', 'consent', 'attribute:<key>'."""
        columns = {"email": self.email}
        if self.customer_id:
            columns["customer_id"] = self.customer_id
        if self.consent:
            columns["consent"] = self.consent
        columns.update({f"attribute:{key}": column for key, column in self.attributes.items()})
        return columns


@dataclass(frozen=True)
class Export:
    name: str
    display_name: str
    connection: str
    segments: tuple[str, ...]
    target: Mapping[str, Any]
    matching: Matching
    mode: str
    enabled: bool
    document: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)


@dataclass(frozen=True)
class Definitions:
    """A validated, self-consistent set of connections and exports."""

    connections: Mapping[str, Connection]
    exports: Mapping[str, Export]

    def export(self, name: str) -> Export:
        """Return the export called `name`; raises KeyError naming the known exports."""
        try:
            return self.exports[name]
        except KeyError:
            known = ", ".join(sorted(self.exports)) or "none"
            raise KeyError(f'unknown export "{name}" (defined: {known})') from None


class _Checker:
    """Collects problems for one document."""

    def __init__(self, kind: str, document: Any):
        name = document.get("name") if isinstance(document, dict) else None
        self.object = f'{kind} "{name}"' if isinstance(name, str) and name else f"{kind} (unnamed)"
        self.problems: list[Problem] = []

    @classmethod
    def of(cls, kind: str, document: Any, known_keys: Iterable[str]) -> _Checker:
        """A checker for a document that must be a JSON object with only `known_keys`."""
        check = cls(kind, document)
        if not isinstance(document, dict):
            check.add("(document)", f"must be a JSON object, got {_shown(document)}")
            check.raise_if_any()
        check.unknown_keys(document, known_keys)
        return check

    def add(self, field_name: str, message: str) -> None:
        self.problems.append(Problem(self.object, field_name, message))

    def string(self, document: Mapping[str, Any], key: str, *, required: bool = True, pattern: re.Pattern | None = None,
               rule: str = "", prefix: str = "") -> str | None:
        value = document.get(key)
        if value is None:
            if required:
                self.add(prefix + key, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.add(prefix + key, f"must be a non-empty string, got {_shown(value)}")
            return None
        if pattern and not pattern.fullmatch(value):
            self.add(prefix + key, f"{rule}, got {_shown(value)}")
            return None
        return value

    def unknown_keys(self, section: Mapping[str, Any], known: Iterable[str], prefix: str = "") -> None:
        for key in sorted(set(section) - set(known)):
            self.add(prefix + key, "is not a known field")

    def section(self, document: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = document.get(key, {})
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(key, f"must be an object, got {_shown(value)}")
            return {}
        return value

    def settings(self, document: Mapping[str, Any], key: str, declared: tuple[Setting, ...],
                 allow_local: bool) -> dict[str, Any]:
        section = self.section(document, key)
        self.unknown_keys(section, [s.name for s in declared], prefix=f"{key}.")
        resolved = {}
        for setting in declared:
            value, problem = setting.resolve(document, section, allow_local)
            if problem:
                self.add(f"{key}.{setting.name}", problem)
            resolved[setting.name] = value
        return resolved

    def raise_if_any(self) -> None:
        if self.problems:
            raise DefinitionError(self.problems)


_NAME_RULE = "must be 1-63 lowercase letters, digits or hyphens, starting and ending with a letter or digit"
_CONNECTION_KEYS = ("name", "type", "display_name", "usable_by", "secret_name", "consent", "settings")
_EXPORT_KEYS = ("name", "display_name", "connection", "segments", "target", "matching", "mode", "enabled")


def parse_connection(document: Any, specs: Mapping[str, DestinationSpec], *, allow_local: bool = False) -> Connection:
    """Validate a connection document and return its model; raises DefinitionError."""
    check = _Checker.of("connection", document, _CONNECTION_KEYS)
    name = check.string(document, "name", pattern=_NAME, rule=_NAME_RULE)
    kind = check.string(document, "type")
    spec = specs.get(kind) if kind else None
    if kind and spec is None:
        check.add("type", f"must be one of {', '.join(sorted(specs))}, got {_shown(kind)}")
    display_name = check.string(document, "display_name")
    secret_name = check.string(
        document, "secret_name", pattern=_SECRET_NAME,
        rule="must be a Key Vault secret name (1-127 letters, digits or hyphens)")
    usable_by = document.get("usable_by", ["admin"])
    if not isinstance(usable_by, list) or not usable_by or any(role not in ROLES for role in usable_by):
        check.add("usable_by", f"must be a non-empty list of roles from {', '.join(ROLES)}, got {_shown(usable_by)}")
        usable_by = ["admin"]
    elif "admin" not in usable_by:
        check.add("usable_by", "must include admin: administrators can always use a connection")
    consent = None
    if document.get("consent") is not None:
        section = check.section(document, "consent")
        # recorded_by/recorded_at: who stored the record and when, set by the HTTP API itself.
        check.unknown_keys(section, ("accepted_by", "accepted_at", "recorded_by", "recorded_at"), prefix="consent.")
        by = check.string(section, "accepted_by", prefix="consent.")
        at = check.string(section, "accepted_at", prefix="consent.")
        moment = _timestamp(at) if at is not None else None
        if at is not None and moment is None:
            check.add("consent.accepted_at", f"must be an ISO 8601 date and time, got {_shown(at)}")
        elif moment is not None and moment > datetime.now(UTC) + timedelta(minutes=5):  # more than a clock's drift
            check.add("consent.accepted_at", f"is in the future ({at}): record when the notice was accepted")
        if by and at:
            consent = Consent(by, at)
    settings = check.settings(document, "settings", spec.settings + spec.limit_settings(), allow_local) if spec else {}
    check.raise_if_any()
    return Connection(name, kind, display_name, tuple(usable_by), secret_name, consent, settings, document)


def parse_export(document: Any, connections: Mapping[str, Connection], specs: Mapping[str, DestinationSpec],
                 invalid_connections: Mapping[str, str | None] | None = None) -> Export:
    """Validate an export document against the known connections; raises DefinitionError.

    `invalid_connections`: {name: type} of connections defined beside it that are invalid
    themselves (reported on their own): an export on one is still checked against its
    vendor, so that one pass lists every problem.
    """
    check = _Checker.of("export", document, _EXPORT_KEYS)
    name = check.string(document, "name", pattern=_NAME, rule=_NAME_RULE)
    display_name = check.string(document, "display_name")
    connection_name = check.string(document, "connection")
    connection = connections.get(connection_name) if connection_name else None
    invalid = invalid_connections or {}
    if connection_name and connection is None and connection_name not in invalid:
        known = ", ".join(sorted(connections)) or "none defined"
        check.add("connection", f'names an unknown connection "{connection_name}" (known: {known})')
    vendor = connection.type if connection else invalid.get(connection_name or "")
    spec = specs.get(vendor) if vendor else None

    segments = document.get("segments")
    if not isinstance(segments, list) or not segments:
        check.add("segments", "must be a non-empty list of blob paths in the segments container")
        segments = []
    for index, path in enumerate(segments):
        problem = segment_path_problem(path)
        if problem:
            check.add(f"segments[{index}]", problem)

    target = check.settings(document, "target", spec.target, False) if spec else {}
    matching = _parse_matching(check, document, spec)
    for setting in spec.need_consent if spec else ():
        if target.get(setting) is True and not (matching and matching.consent):
            check.add(f"target.{setting}", "acts only on people whose consent column says yes: map matching.consent")

    mode = document.get("mode", "upsert")
    if mode == "mirror":
        check.add("mode", "mirror mode (also removing people who left the segment) is not available yet; use upsert")
    elif mode not in MODES:
        check.add("mode", f"must be one of {', '.join(MODES)}, got {_shown(mode)}")
    enabled = document.get("enabled", True)
    if not isinstance(enabled, bool):
        check.add("enabled", f"must be true or false, got {_shown(enabled)}")
    check.raise_if_any()
    return Export(name, display_name, connection_name, tuple(segments), target, matching, mode, enabled, document)


def _parse_matching(check: _Checker, document: Mapping[str, Any], spec: DestinationSpec | None) -> Matching | None:
    section = check.section(document, "matching")
    check.unknown_keys(section, ("email", "customer_id", "attributes", "consent"), prefix="matching.")
    email = check.string(section, "email", required=False, prefix="matching.")
    if "email" not in section:
        check.add("matching.email", "is required: name the segment column that holds the email address")
    customer_id = check.string(section, "customer_id", required=False, prefix="matching.")
    if spec and spec.requires_customer_id and "customer_id" not in section:
        check.add("matching.customer_id", f"is required for {spec.display_name}: name the customer id column")
    consent = check.string(section, "consent", required=False, prefix="matching.")
    if consent and spec and not spec.accepts_consent:
        check.add("matching.consent", f"{spec.display_name} takes no consent column")
    attributes = section.get("attributes", {})
    if not isinstance(attributes, dict):
        check.add("matching.attributes", f"must be an object of destination field -> column, got {_shown(attributes)}")
        attributes = {}
    if attributes and spec and not spec.accepts_attributes:
        check.add("matching.attributes", f"{spec.display_name} takes no attributes, only the identifier")
    for key, column in attributes.items():
        if not isinstance(column, str) or not column.strip():
            check.add(f"matching.attributes.{key}", f"must name a segment column, got {_shown(column)}")
        elif spec and spec.check_attribute and (problem := spec.check_attribute(key)):
            check.add(f"matching.attributes.{key}", problem)
    if email is None:
        return None
    return Matching(email, customer_id, dict(attributes), consent)


def segment_path_problem(path: Any) -> str | None:
    """Why `path` cannot name a segment (a blob in the segments container), or None."""
    if not isinstance(path, str) or not path.strip():
        return f"must be a blob path, got {_shown(path)}"
    if path.startswith("/") or "\\" in path or any(part in ("", ".", "..") for part in path.split("/")):
        return f"must be a relative path in the segments container, like 'vip/customers.csv', got {_shown(path)}"
    return None


def valid_name(value: Any) -> bool:
    """Whether `value` can name a connection or an export (the rule `_NAME_RULE` states)."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def export_enabled(document: Mapping[str, Any]) -> bool:
    """Whether a stored export document is enabled, as the timer and the API read it: unless
    it says otherwise (`enabled` left out is true; anything but true or false is invalid,
    and not enabled)."""
    return document.get("enabled", True) is True


def record_consent(document: dict[str, Any], stored: Mapping[str, Any] | None, recorded_by: str) -> None:
    """Stamp a connection document's consent with who stored it and when (`recorded_by`,
    `recorded_at`), whatever the document says of them; an acceptance unchanged from the
    `stored` document keeps the stamp it had (a later edit of a setting is not a new record)."""
    consent = document.get("consent")
    if not isinstance(consent, dict):
        return
    before = stored.get("consent") if isinstance(stored, Mapping) else None
    if (isinstance(before, dict) and before.get("recorded_by")
            and all(before.get(key) == consent.get(key) for key in ("accepted_by", "accepted_at"))):
        consent.update(recorded_by=before["recorded_by"], recorded_at=before.get("recorded_at"))
    else:
        consent.update(recorded_by=recorded_by, recorded_at=datetime.now(UTC).isoformat(timespec="seconds"))


def _timestamp(value: str) -> datetime | None:
    """An ISO 8601 date and time (a "Z" or no zone taken as UTC), or None."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def with_stored_connections(document: Any, stored: Callable[[str], dict[str, Any] | None]) -> Any:
    """A definitions document with the stored connections its exports name and it does not
    define (`stored`: a connection's stored document by name), to validate a file of
    exports alone against what is stored; the document itself is left as it is."""
    if not isinstance(document, dict) or not isinstance(document.get("connections", []), list):
        return document
    named = {c.get("name") for c in document.get("connections", []) if isinstance(c, dict)}
    exports = document.get("exports") if isinstance(document.get("exports"), list) else []
    wanted = sorted({e.get("connection") for e in exports if isinstance(e, dict)} - named, key=str)
    found = [found for name in wanted if valid_name(name) and (found := stored(name)) is not None]
    return {**document, "connections": document.get("connections", []) + found}


def parse_definitions(document: Any, specs: Mapping[str, DestinationSpec], *, allow_local: bool = False) -> Definitions:
    """Validate a whole definitions file: {"connections": [...], "exports": [...]}.

    Every problem of every document is collected before raising one DefinitionError.
    """
    if not isinstance(document, dict):
        raise DefinitionError([Problem("definitions", "(document)",
                                       "must be a JSON object with connections and exports")])
    problems = [Problem("definitions", key, "is not a known field (expected connections, exports)")
                for key in sorted(set(document) - {"connections", "exports", "$schema", "description"})]
    lists = {}
    for key in ("connections", "exports"):
        lists[key] = document.get(key, [])
        if not isinstance(lists[key], list):
            problems.append(Problem("definitions", key, f"must be a list of {key[:-1]} documents"))
            lists[key] = []
    connections: dict[str, Connection] = {}
    for item in lists["connections"]:
        try:
            connection = parse_connection(item, specs, allow_local=allow_local)
        except DefinitionError as error:
            problems.extend(error.problems)
            continue
        if connection.name in connections:
            problems.append(Problem(f'connection "{connection.name}"', "name", "is defined twice"))
        connections[connection.name] = connection
    # An export on a connection that is itself invalid is not reported again for that, but
    # is checked against the connection's vendor all the same.
    invalid = {item["name"]: item.get("type") if isinstance(item.get("type"), str) else None
               for item in lists["connections"]
               if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"] not in connections}
    exports: dict[str, Export] = {}
    for item in lists["exports"]:
        try:
            export = parse_export(item, connections, specs, invalid)
        except DefinitionError as error:
            problems.extend(error.problems)
            continue
        if export.name in exports:
            problems.append(Problem(f'export "{export.name}"', "name", "is defined twice"))
        exports[export.name] = export
    if problems:
        raise DefinitionError(problems)
    return Definitions(connections, exports)
