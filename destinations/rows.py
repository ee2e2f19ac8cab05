"""The rows a destination makes items of, and the columns worked out from them once.

The plans of the exports reading one segment at once share its blocks of rows
(`shared.segments`), and most of their columns are the same: four exports of one
segment trim and JSON-encode the same first names and check the same emails. A `Rows`
is the rows of one block an export takes (`picked`, in row order), with what is worked
out from a whole column kept in the block's memo: the first export to ask works it out,
under the block's lock, and the others pick their rows' values from it.
"""

from __future__ import annotations

import json
import threading
from bisect import bisect_left
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from shared.columns import none_positions, picker
from shared.profiles import email_keys
from shared.segments import FlatRows

__all__ = ["JSON_STRING", "Rows"]

# A string as JSON text, in C (ASCII, as json.dumps writes it): destinations write their
# items' JSON themselves, column by column; the general encoder takes ~7 µs a contact.
JSON_STRING = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


class Rows:
    """Rows of a block for `Destination.items`: their columns as raw, trimmed, JSON or checked emails.

    `rows` are the block's rows; `picked` the indices of those to make items of (in row
    order; all by default); `width` the header's field count (a row of another width has
    no values); `memo` and `lock` where columns are kept for every export reading the
    block (a private memo by default). Columns come as sequences that may be shared: read
    them, never change them.
    """

    def __init__(self, rows: Sequence[list[str]], picked: list[int] | None = None, width: int | None = None,
                 memo: dict[Any, Any] | None = None, lock: threading.RLock | None = None):
        self._rows, self._picked, self._width = rows, picked, width
        self._memo = {} if memo is None else memo
        self._lock = threading.RLock() if lock is None else lock
        self._getter: Callable[[Sequence[Any]], Sequence[Any]] | None = None

    def __len__(self) -> int:
        return len(self._rows) if self._picked is None else len(self._picked)

    def values(self, index: int) -> Sequence[str]:
        """The field `index` of each row, as written ("" in a row of the wrong width)."""
        return self.pick(self._whole("values", index))

    def trimmed(self, index: int) -> Sequence[str]:
        """The field without surrounding blanks."""
        return self.pick(self._whole("trimmed", index))

    def json(self, index: int) -> Sequence[str]:
        """The trimmed field as JSON text: '""' where it is empty (an attribute the row has not)."""
        return self.pick(self._whole("json", index))

    def checked_emails(self, index: int) -> tuple[Sequence[str | None], dict[int, str]]:
        """The field as emails (`email_keys`): normalised, None where blank or invalid, and
        {position: reason} for the invalid ones."""
        emails, reasons = self._whole("emails", index)
        if self._picked is None:
            return emails, reasons
        picked = self._picked  # in row order: a reason's row is found by bisection
        return self.pick(emails), {position: reasons[at] for at in reasons
                                    if (position := bisect_left(picked, at)) < len(picked) and picked[position] == at}

    def emails_json(self, index: int) -> Sequence[str]:
        """The checked emails as JSON text: '""' where there is none."""
        return self.pick(self._whole("emails_json", index))

    def _whole(self, kind: str, index: int) -> Any:
        """Column `kind` of every row of the block, worked out once for all who ask."""
        key = (kind, self._width, index)
        with self._lock:  # one export works a column out, the others wait (re-entrant: columns build on columns)
            found = self._memo.get(key)
            if found is None:
                found = self._memo[key] = getattr(self, "_work_out_" + kind)(index)
        return found

    # Each in C where it can be (map over a method or an encoder, ~40 ns a value where a
    # list comprehension with a test took 90-150 ns here): this runs for every column of
    # every row an export maps.
    def _work_out_full(self, _: int) -> bool:  # every row of the header's width (asked for as column 0)
        if isinstance(self._rows, FlatRows):  # rows of one width, known when parsed
            return self._width in (None, self._rows.width)
        return self._width is None or set(map(len, self._rows)) <= {self._width}

    def _work_out_values(self, index: int) -> list[str]:
        if self._whole("full", 0):
            if isinstance(self._rows, FlatRows):
                return self._rows.column(index)
            return list(map(itemgetter(index), self._rows))
        width = self._width
        return [row[index] if len(row) == width else "" for row in self._rows]

    def _work_out_trimmed(self, index: int) -> list[str]:
        return list(map(str.strip, self._whole("values", index)))

    def _work_out_json(self, index: int) -> list[str]:
        return list(map(JSON_STRING, self._whole("trimmed", index)))

    def _work_out_emails(self, index: int) -> tuple[list[str | None], dict[int, str]]:
        return email_keys(self._whole("values", index))

    def _work_out_emails_json(self, index: int) -> list[str]:
        emails = self._whole("emails", index)[0]
        missing = none_positions(emails)  # blank or invalid
        if missing:
            emails = list(emails)
            for at in missing:
                emails[at] = ""
        return list(map(JSON_STRING, emails))

    def pick(self, column: Sequence[Any]) -> Sequence[Any]:
        """The picked rows' values of a column of every row (a tuple, taken in C by one
        `itemgetter` for all columns)."""
        if self._picked is None:
            return column
        if self._getter is None:
            self._getter = picker(self._picked)
        return self._getter(column)
