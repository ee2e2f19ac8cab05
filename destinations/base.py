"""The shape every destination module has, and the errors they raise.

A destination module declares a `SPEC` (its settings, export target, credentials, limits:
what `shared.config` validates) and a `Destination` subclass with three parts:

- `identify_all(values)`: the rows' identifiers as the vendor keys them (by default
  normalised, checked emails, made keys by `keys_of_emails`), a block of rows at a time;
  also the keys for deduplication. None, with a reason, for an invalid one.
- `items(keys, rows)`: the vendor's JSON text for the profiles of many rows at once (the
  rows of a block, a `Rows`: columns worked out once for every export reading the block),
  written column by column: this runs for every row of every segment.
  None and a reason for a row the vendor would refuse (a field too long, an invalid
  optional email). The plan joins each batch's items once (`encode_batch`: a JSON array,
  or more of the request where that saves a copy); chunks send it as it is.
  `item(key, fields)` is the same for one row.
- `send(keys, items)`: one request's worth (a *batch*): the keys and the batch as
  `encode_batch` wrote it; returns the vendor's per-item refusals as {index: reason}. Raises a
  `DestinationError` when the batch as a whole fails. A vendor that processes batches
  later (Omnisend) returns a `Pending` instead, and `settle(pending)` later gives the
  outcomes of many batches with a few requests.

All HTTP goes through `self.http` (`shared.http.HttpClient`): retries, backoff, pacing
and throttle windows are never written in a destination. The errors are `shared.http`'s
tree (drawn there): any `DestinationError` from `send` stops the destination, and its
other rows are reported "not sent". A row refused (by the vendor or by our checks) is
no exception: `items` and `send` return it as {index: reason}, and the batch goes on;
`RowRejected` is that refusal for the one-row helpers `identify` and `item`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from itertools import compress, filterfalse, repeat
from typing import Any, ClassVar

from shared.columns import picker
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

from .rows import JSON_STRING, Rows

__all__ = [
    "JSON_STRING",
    "AuthError",
    "Destination",
    "Template",
    "Pending",
    "DestinationError",
    "FatalError",
    "RetriableError",
    "RowRejected",
]


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
    # Whether the items are the keys themselves (Snapchat's hashes): the plan then stores
    # a batch's keys once, in its items, and `keys_of_batch` reads them back.
    ITEMS_ARE_KEYS: ClassVar[bool] = False

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
        self._templates: dict[tuple[str, ...], Template] = {}
        # What preparing items noticed that is worth a warning in the report, with its count
        # ("consent value neither yes nor no"): the plan takes it into the chunk's entry.
        self.notes: Counter[str] = Counter()

    @classmethod
    def identify_all(cls, values: list[str]) -> tuple[list[str | None], dict[int, str]]:
        """The keys of a block's identifiers: None for a blank one, None and a reason for an invalid one.

        By default the identifiers are emails, normalised and checked (`keys_of_emails`
        then makes the keys); a destination keyed otherwise (Braze's customer id)
        overrides this.
        """
        return cls.keys_of_emails(values, *email_keys(values))

    @staticmethod
    def keys_of_emails(values: list[str], emails: list[str | None],
                       reasons: dict[int, str]) -> tuple[list[str | None], dict[int, str]]:
        """The keys of identifiers already normalised and checked as emails (`email_keys` of
        `values`): the emails themselves by default; Snapchat hashes them.

        Returns new objects: the plans of several exports reading one segment share the
        emails of a block (`destinations.rows`), so none may change them.
        """
        return list(emails), dict(reasons)

    @classmethod
    def identify(cls, value: str) -> str:
        """The key of one identifier; RowRejected if it is invalid."""
        keys, reasons = cls.identify_all([value])
        if keys[0] is None:
            raise RowRejected(reasons.get(0, "missing identifier"))
        return keys[0]

    @abstractmethod
    def items(self, keys: Sequence[str], rows: Rows) -> tuple[list[str | None], dict[int, str]]:
        """The items (JSON text) of many rows' profiles: None and {index: reason} where refused.

        Written a column at a time (`Rows`, `attribute_json`, `Template`), not row by row.
        """

    def item(self, key: str, fields: Sequence[str]) -> str:
        """One profile's item (see `items`); RowRejected if it would be refused."""
        items, refused = self.items([key], Rows([list(fields)]))
        if refused:
            raise RowRejected(refused[0])
        return items[0]

    def encode_batch(self, items: list[str]) -> str:
        """A batch of items as the plan stores it, once per batch: by default one JSON array."""
        return "[" + ",".join(items) + "]"

    @classmethod
    def keys_of_batch(cls, batch: bytes) -> list[str]:
        """The keys of a batch `encode_batch` wrote, in order: for a vendor whose ITEMS_ARE_KEYS."""
        raise NotImplementedError(f"{cls.__name__}'s batches do not hold their keys")

    @abstractmethod
    def send(self, keys: Sequence[str], items: bytes) -> dict[int, str] | Pending:
        """Deliver one batch; return {index: vendor's reason} for the items it refused.

        `items` is what `encode_batch` wrote, UTF-8, bytes-like (a view into the prepared line).
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

    def attribute_json(self, rows: Rows) -> dict[str, Sequence[str]]:
        """Each mapped attribute's trimmed values as JSON text; '""' where a row has none (left out of its item)."""
        return {name: rows.json(index) for name, index in self.attribute_columns.items()}

    def render(self, fixed: list[Sequence[str]], optional: dict[str, Sequence[str]],
               refused: dict[int, str] | None = None) -> tuple[list[str | None], dict[int, str]]:
        """`items`' answer, from columns of JSON text: the `fixed` ones, and the `optional`
        ones with '""' where a row has none (left out of its item), through the
        destination's `template` for each set of present fields; None for the `refused` rows."""
        count = len(fixed[0])
        items: list[str | None] = [None] * count
        for present, indices in by_presence(optional, count):
            template = self._templates.get(present)
            if template is None:
                template = self._templates[present] = self.template(present)
            template.fill(fixed + [optional[name] for name in present], indices, items)
        for index in refused or ():
            items[index] = None
        return items, refused or {}

    def template(self, present: tuple[str, ...]) -> Template:
        """The item of a row with the `present` optional fields, holes in the order `render` fills them:
        the fixed columns, then the present fields."""
        raise NotImplementedError(f"{self.SPEC.display_name} does not render items from templates")


def too_long(values: dict[str, Sequence[str]], limit: int, reason: str) -> dict[int, str]:
    """{row index: reason} for rows with a value over `limit` characters; the first column's reason wins."""
    refused: dict[int, str] = {}
    for name, column in values.items():
        if max(map(len, column), default=0) > limit:
            for index in [index for index, value in enumerate(column) if len(value) > limit]:
                refused.setdefault(index, reason.format(name=name))
    return refused


def json_column(values: Sequence[str]) -> list[str]:
    """A column of strings as JSON text."""
    return list(map(JSON_STRING, values))


class Template:
    """An item's JSON text with holes, filled for many rows at once.

    Built from literal JSON (`text`) and holes (`hole`), each filled from one column of
    already encoded values: the rows' texts are joined from the literals and the columns
    in C (`str.join` over `zip`), ~0.4 µs a row where `str.format` took 2 µs. Optional
    fields (an attribute a row has no value for) are handled by `by_presence`: one
    template per combination of present fields.
    """

    def __init__(self) -> None:
        self._literals = [""]  # the text before each hole, and after the last one

    def text(self, literal: str) -> Template:
        self._literals[-1] += literal
        return self

    def hole(self) -> Template:
        self._literals.append("")
        return self

    def fill(self, columns: list[Sequence[str]], indices: Sequence[int], out: list[str | None]) -> None:
        """Write the items of rows `indices` into `out`, from the full-length `columns`."""
        if len(columns) != len(self._literals) - 1:
            raise ValueError(f"template has {len(self._literals) - 1} holes, given {len(columns)} columns")
        if len(indices) != len(out):
            columns = list(map(picker(indices), columns))
        parts: list[Any] = [repeat(self._literals[0])]
        for column, literal in zip(columns, self._literals[1:], strict=True):
            parts += [column, repeat(literal)]
        texts = map("".join, zip(*parts))  # noqa: B905 - the repeats are endless; the columns end together
        if len(indices) == len(out):
            out[:] = texts
        else:
            for index, text in zip(indices, texts, strict=True):
                out[index] = text


def by_presence(values: dict[str, Sequence[str]], count: int) -> Iterator[tuple[tuple[str, ...], Sequence[int]]]:
    """The row indices grouped by which of `values` (columns of JSON text) they have: '""',
    an empty string, is a field the row has not, with those names.

    Items are written per group with one template, so an empty attribute is left out
    without a decision per row; most blocks are one group, or one large group and a few
    rows lacking a field (an email left out where it was invalid, a blank city).
    """
    names = list(values)
    absent = {name: values[name].count(EMPTY) for name in names}  # in C
    lacking = sum(absent.values())
    if not lacking:
        yield tuple(names), range(count)
        return
    if lacking * SPARSE_EMPTIES > count:
        yield from _by_presence_row_by_row(values, names)
        return
    # Few rows lack a field: they are found in C, a column at a time, and only they are
    # grouped one by one (~0.03 µs a row and column, where the loop below takes ~0.13).
    lacks: dict[int, set[str]] = {}
    for name in names:
        if absent[name]:
            for index in compress(range(count), map(EMPTY.__eq__, values[name])):
                lacks.setdefault(index, set()).add(name)
    yield tuple(names), list(filterfalse(lacks.__contains__, range(count)))
    groups: dict[tuple[str, ...], list[int]] = {}
    for index in sorted(lacks):
        missing = lacks[index]
        groups.setdefault(tuple(name for name in names if name not in missing), []).append(index)
    yield from groups.items()


# Rows lacking a field, as a share of the block, under which they are found column by
# column (1 in 8): above it, deciding every row at once costs less.
SPARSE_EMPTIES = 8


def _by_presence_row_by_row(values: dict[str, Sequence[str]],
                            names: list[str]) -> Iterator[tuple[tuple[str, ...], Sequence[int]]]:
    groups: dict[tuple[bool, ...], list[int]] = {}
    for index, present in enumerate(zip(*[map(EMPTY.__ne__, values[name]) for name in names], strict=True)):
        groups.setdefault(present, []).append(index)
    for present, indices in groups.items():
        yield tuple(name for name, has in zip(names, present, strict=True) if has), indices


EMPTY = JSON_STRING("")
