"""Counting a chunk's rows: delivered, rejected and skipped with reasons, and the rejected rows."""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any

__all__ = ["REJECTED_HEADER", "Tally"]

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
        self._through = 0  # the last row the previous record covered (0: none yet)
        self._mark = self._snapshot()

    def reject(self, row: int, identifier: str, reason: str, refused_by: str) -> None:
        self.rejected[reason] += 1
        self._writer.writerow((self.segment, row, identifier, reason, refused_by))

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] += count

    @property
    def rejected_csv(self) -> str:
        return self._rejected_rows.getvalue()

    def add_prepared(self, prepared: dict[str, Any]) -> None:
        """Count what the plan already decided for this chunk (its rows not sent), from its plan entry."""
        self.rows += prepared["rows"] - prepared["items"]
        self.rejected.update(prepared["rejected"])
        self.skipped.update(prepared["skipped"])  # left out of the mark: the first record carries them

    def _snapshot(self) -> tuple[int, int, Counter, Counter, int]:
        return self.rows, self.delivered, Counter(self.rejected), Counter(self.skipped), self._rejected_rows.tell()

    def record(self, through: int, requests: dict[str, Any]) -> dict[str, Any]:
        """What was accounted since the last record, through row `through`."""
        rows, delivered, rejected, skipped, offset = self._mark
        self._mark = self._snapshot()
        after, self._through = self._through, through
        return {"after": after, "through": through, "rows": self.rows - rows, "delivered": self.delivered - delivered,
                "rejected": dict(self.rejected - rejected), "skipped": dict(self.skipped - skipped),
                "rejected_rows": self._rejected_rows.getvalue()[offset:], "requests": requests}

    def restore(self, records: list[dict[str, Any]]) -> int:
        """Add earlier records back; returns the last row they cover (0 if none).

        A record counts only where it goes on from the one counted before it (its `after`
        is that one's `through`, its last row). Another is the same append made twice
        (storage retried a write whose answer was lost), or one of a second execution of
        the chunk running at the same time (activities run at least once): its rows
        overlap those already counted, and counting it would count them twice. The chunk
        then sends again from the last row counted: upserts that change nothing.
        (Records written before they carried `after` count if they go further.)
        """
        through = 0
        for record in records:
            if record["through"] <= through or record.get("after", through) != through:
                continue
            through = record["through"]
            self.rows += record["rows"]
            self.delivered += record["delivered"]
            self.rejected.update(record["rejected"])
            self.skipped.update(record["skipped"])
            self.requests.update(record["requests"])
            self._rejected_rows.write(record["rejected_rows"])
        self._through = through
        self._mark = self._snapshot()
        return through
