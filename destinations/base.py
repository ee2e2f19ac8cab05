"""The shape every destination module has, and the errors they raise.

A destination module declares a `SPEC` (its settings, export target, credentials, limits:
what `shared.config` validates) and a `Destination` subclass with three parts:

- `identify_all(values)`: the rows' identifiers as the vendor keys them (by default
  normalised, checked emails), a block of rows at a time; also the keys for
  deduplication. None, with a reason, for an invalid one.
- `item(key, fields)`: the vendor's JSON for one profile. Raises `RowRejected` for a row
  the vendor would refuse (a field too long, an invalid optional email). The plan
  encodes each batch of items once, as a JSON array; chunks send it as it is.
- `send(keys, items)`: one request's worth (a *batch*): the keys and the JSON array of
  the items; returns the vendor's per-item refusals as {index: reason}. Raises a
  `DestinationError` when the batch as a whole fails. A vendor that processes batches
  later (Omnisend) returns a `Pending` instead, and `settle(pending)` later gives the
  outcomes of many batches with a few requests.

All HTTP goes through `self.http` (`shared.http.HttpClient`): retries, backoff, pacing
and throttle windows are never written in a destination. The error tree::

    DestinationError          the destination stops; its other rows are reported "not sent"
    ├── RetriableError        still failing after the retry policy (429, 5xx, network)
    ├── AuthError             401 after one refresh of the credentials, where possible
    └── FatalError            400/403/404 for a whole batch, an unusable answer

    RowRejected               one row refused (by the vendor or by our checks): recorded, batch goes on
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from shared.config import Connection, DestinationSpec, Export
from shared.http import (
    AuthError,
    Credentials,
    DestinationError,
    FatalError,
    HttpClient,
    Response,
    RetriableError,
    vendor_message,
)
from shared.profiles import email_keys

__all__ = [
    "JSON_STRING",
    "AuthError",
    "Destination",
    "Pending",
    "DestinationError",
    "FatalError",
    "RetriableError",
    "RowRejected",
]


_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
# A string as JSON text, in C: for destinations that write their items' JSON themselves,
# because the general encoder is slow on nested structures (7 µs an Omnisend contact).
JSON_STRING = json.encoder.encode_basestring_ascii


class RowRejected(Exception):
    """One row is refused; `reason` is short and fixed-form so reports can group by it."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Pending:
    """A batch the vendor accepted and will process later; `ticket` is the vendor's id for it."""

    def __init__(self, ticket: Any, keys: list[str]):
        self.ticket = ticket
        self.keys = keys


class Destination(ABC):
    """One export's destination for one chunk: built per activity, used by one thread."""

    SPEC: ClassVar[DestinationSpec]
    # For vendors that answer `send` with a Pending: how many batches may wait to be settled.
    MAX_UNSETTLED: ClassVar[int] = 0
    # Whether the plan stores this vendor's prepared batches compressed (zlib, level 1).
    # JSON items shrink ~14x at ~250 MB/s, sparing storage most of their bytes both ways.
    COMPRESS_PREPARED: ClassVar[bool] = True

    def __init__(self, connection: Connection, export: Export, columns: Mapping[str, int],
                 credentials: Credentials | None = None, http: HttpClient | None = None):
        """Without credentials and client, a destination can prepare items but not send them."""
        self.connection = connection
        self.export = export
        self.settings = connection.settings
        self.target = export.target
        self.credentials = credentials
        self.http = http
        self.columns = columns  # role ("email", "customer_id", "attribute:<key>") -> field index
        self.attribute_columns = {role.partition(":")[2]: index for role, index in columns.items()
                                  if role.startswith("attribute:")}

    @staticmethod
    def identify_all(values: list[str]) -> tuple[list[str | None], dict[int, str]]:
        """The keys of a block's identifiers: None for a blank one, None and a reason for an invalid one.

        By default the identifiers are emails, normalised and checked; destinations keyed
        otherwise (Braze's customer id, Snapchat's hash) override this.
        """
        return email_keys(values)

    @classmethod
    def identify(cls, value: str) -> str:
        """The key of one identifier; RowRejected if it is invalid."""
        keys, reasons = cls.identify_all([value])
        if keys[0] is None:
            raise RowRejected(reasons.get(0, "missing identifier"))
        return keys[0]

    @abstractmethod
    def item(self, key: str, fields: Sequence[str]) -> Any:
        """The vendor's representation of one profile; RowRejected if it would be refused."""

    def encode_batch(self, items: list[Any]) -> str:
        """A batch of items as one JSON array, encoded in one call (the plan does this once)."""
        return _ENCODE(items)

    @abstractmethod
    def send(self, keys: Sequence[str], items: bytes) -> dict[int, str] | Pending:
        """Deliver one batch; return {index: vendor's reason} for the items it refused.

        `items` is the batch's JSON array, UTF-8, bytes-like (a view into the prepared line).
        """

    def settle(self, pending: list[Pending]) -> list[dict[int, str] | None]:
        """The outcome of each pending batch, or None for one the vendor has not finished yet."""
        raise NotImplementedError(f"{self.SPEC.display_name} answers batches at once")

    @classmethod
    def credentials_problem(cls, credentials: Mapping[str, Any]) -> str | None:
        """What the credentials secret lacks, or None. Names fields, never values."""
        missing = [name for name in cls.SPEC.secret_fields if not credentials.get(name)]
        return f"lacks the field(s) {', '.join(missing)}" if missing else None

    @staticmethod
    def describe(response: Response) -> str:
        """The vendor's own error message in a refusal (for the report; never a credential)."""
        return vendor_message(response, "message")

    @classmethod
    def warnings(cls, delivered: int) -> list[str]:
        """Advice for the run report once the destination is done (e.g. audience too small)."""
        return []

    def attributes(self, fields: Sequence[str]) -> dict[str, str]:
        """The mapped attributes of a row that have a value (empty cells are left out)."""
        values = {}
        for key, index in self.attribute_columns.items():
            value = fields[index].strip()
            if value:
                values[key] = value
        return values
