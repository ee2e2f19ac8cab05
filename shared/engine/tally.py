"""Counting a chunk's rows: delivered, rejected and skipped with reasons, and the rejected rows.

Also the line format of prepared batches (`chunks/<n>.items`), written by the plan and
read by the chunk activity: `[[row, key, identifier], ...]<TAB>[item, ...]`.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from typing import Any

__all__ = ["REJECTED_HEADER", "Tally", "batch_line", "parse_batch_line"]

REJECTED_HEADER = "segment,row,identifier,reason,refused_by"


class Tally:
    """The counts and reasons of one chunk, and its rejected rows as CSV.

    `record(through)` returns what was accounted since the previous record; `restore`
    adds records back, so a chunk can resume where its last recorded batch ended.
    """

    def __init__(self, segment: str):
        self.segment = segment
        self.rows = self.delivered = 0
        self.rejected: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()  # request statistics of earlier attempts
        self._rejected_rows = io.StringIO()
        self._writer = csv.writer(self._rejected_rows, lineterminator="\r\n")
        self._mark = self._snapshot()

    def reject(self, row: int, identifier: str, reason: str, refused_by: str) -> None:
        self.rejected[reason] += 1
        self._writer.writerow((self.segment, row, identifier, reason, refused_by))

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    @property
    def rejected_csv(self) -> str:
        return self._rejected_rows.getvalue()

    def add_prepared(self, prepared: dict[str, Any]) -> None:
        """Count what the plan already decided for this chunk (its rows not sent)."""
        self.rows += prepared["rows"] - prepared["items"]
        self.rejected.update(prepared["rejected"])
        self.skipped.update(prepared["skipped"])  # left out of the mark: the first record carries them

    def _snapshot(self) -> tuple[int, int, Counter, Counter, int]:
        return self.rows, self.delivered, Counter(self.rejected), Counter(self.skipped), self._rejected_rows.tell()

    def record(self, through: int, requests: dict[str, Any]) -> dict[str, Any]:
        """What was accounted since the last record, through row `through`."""
        rows, delivered, rejected, skipped, offset = self._mark
        self._mark = self._snapshot()
        return {"through": through, "rows": self.rows - rows, "delivered": self.delivered - delivered,
                "rejected": dict(self.rejected - rejected), "skipped": dict(self.skipped - skipped),
                "rejected_rows": self._rejected_rows.getvalue()[offset:], "requests": requests}

    def restore(self, records: list[dict[str, Any]]) -> int:
        """Add earlier records back; returns the last row they cover (0 if none)."""
        for record in records:
            self.rows += record["rows"]
            self.delivered += record["delivered"]
            self.rejected.update(record["rejected"])
            self.skipped.update(record["skipped"])
            self.requests.update(record["requests"])
            self._rejected_rows.write(record["rejected_rows"])
        self._mark = self._snapshot()
        return records[-1]["through"] if records else 0


# Prepared batches are written with one encoder call per batch: the items' JSON is built
# in C, once, by the plan; a chunk activity sends it as it is.
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def batch_line(rows: list[list[Any]], items: str) -> str:
    """One prepared batch: [[row, key, identifier], ...] and the JSON array of its items."""
    return _ENCODE(rows) + "\t" + items + "\n"


def parse_batch_line(line: str) -> tuple[list[list[Any]], str]:
    """The batch's [[row, key, identifier], ...] and its items as JSON array text."""
    rows, items = line.rstrip("\n").split("\t", 1)
    return json.loads(rows), items
