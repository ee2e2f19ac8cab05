"""Segments: reading segment files from the `segments` container, row by row, in byte ranges.

A segment is a CSV file with a header row: UTF-8 with or without BOM, LF or CRLF line
ends, RFC 4180 quoting (fields may hold commas, quotes and newlines). Reading is
streamed in blocks: memory holds one block and one row, never the file. Each row comes
with the byte offset where it ends, so a plan can cut a file into chunks at row
boundaries and an activity can read exactly one chunk (`rows(path, start, end)`).

Column names are matched case-insensitively and without surrounding spaces; a mapped
column that is missing is an error naming it and listing the columns that exist.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

__all__ = ["Row", "SegmentError", "SegmentInfo", "SegmentReader", "resolve_columns"]

_BOM = codecs.BOM_UTF8
BLOCK_BYTES = 4 * 1024 * 1024
HEADER_BYTES = 64 * 1024


class SegmentError(Exception):
    """A segment file cannot be read as the export expects. The message names file and place."""


class Row(NamedTuple):
    number: int  # 1-based data row number within its segment file (the header is not counted)
    fields: list[str]
    end: int  # byte offset just past the row
    utf8: bool  # False when the row held bytes that are not UTF-8


@dataclass(frozen=True)
class SegmentInfo:
    path: str
    size: int
    etag: str
    header: list[str]
    data_start: int  # byte offset of the first data row (after BOM and header)


def resolve_columns(path: str, header: list[str], mapping: Mapping[str, str]) -> dict[str, int]:
    """Map each role's column name to its index in `header`; SegmentError lists what is missing."""
    index = {}
    for position, name in enumerate(header):
        index.setdefault(name.strip().lower(), position)
    resolved, missing = {}, []
    for role, column in mapping.items():
        position = index.get(column.strip().lower())
        if position is None:
            missing.append(column)
        else:
            resolved[role] = position
    if missing:
        names = ", ".join(f'"{m}"' for m in missing)
        existing = ", ".join(f'"{h}"' for h in header)
        raise SegmentError(f"segment {path}: mapped column(s) {names} not found; the file has {existing}")
    return resolved


class SegmentReader:
    """Reads segment files from one container (`segments`)."""

    def __init__(self, container: ContainerClient):
        self._container = container

    def info(self, path: str) -> SegmentInfo:
        """Size and header of a segment; SegmentError when it is missing, empty or has no header."""
        blob = self._container.get_blob_client(path)
        try:
            properties = blob.get_blob_properties()
        except ResourceNotFoundError:
            raise SegmentError(f"segment {path} was not found in container {self._container.container_name}") from None
        size = properties.size
        if size == 0:
            raise SegmentError(f"segment {path} is empty: expected a header row and data rows")
        head = blob.download_blob(offset=0, length=min(size, 3)).readall()
        start = len(_BOM) if head.startswith(_BOM) else 0
        # The header is read from a small range first; only an absurdly long one needs more.
        for limit in (min(size, HEADER_BYTES), size):
            for fields, end, _ in self._rows_with_ends(path, start, limit):
                if end == limit < size:
                    break  # the header row did not end within this range
                if not any(field.strip() for field in fields):
                    raise SegmentError(f"segment {path}: the header row is blank")
                return SegmentInfo(path, size, properties.etag, fields, end)
        raise SegmentError(f"segment {path} has no header row")

    def rows(self, path: str, start: int, end: int, *, first_row: int = 1) -> Iterator[Row]:
        """Yield the rows in bytes [start, end) as (number, fields, end offset, valid UTF-8).

        `start` must be a row boundary (a plan's chunk start). Blank lines are not rows.
        A row with bytes that are not UTF-8 is still yielded (its bad bytes replaced) with
        `utf8=False`, so that one bad row is reported without losing the others.
        Raises SegmentError for a quote left open at the end of the range.
        """
        number = first_row
        for fields, offset, utf8 in self._rows_with_ends(path, start, end):
            if fields:
                yield Row(number, fields, offset, utf8)
                number += 1

    def _rows_with_ends(self, path: str, start: int, end: int) -> Iterator[tuple[list[str], int, bool]]:
        position = [start, True]  # end offset of the lines read so far; no bad bytes since the last row
        lines = self._lines(path, start, end, position)
        reader = csv.reader(lines, strict=True)
        try:
            for fields in reader:
                # csv pulls lines only as far as the row it returns, so `position` is this row's end.
                utf8, position[1] = position[1], True
                yield fields, position[0], utf8
        except csv.Error as error:
            raise SegmentError(f"segment {path}: malformed CSV near byte {position[0]}: {error}") from None

    def _lines(self, path: str, start: int, end: int, position: list) -> Iterator[str]:
        """Decoded lines (with their line ends) of bytes [start, end), advancing `position`."""
        if end <= start:
            return
        stream = self._container.get_blob_client(path).download_blob(
            offset=start, length=end - start, max_concurrency=1)
        pending = b""
        offset = start
        for block in stream.chunks():
            pending += block
            pieces = pending.split(b"\n")
            pending = pieces.pop()
            for piece in pieces:
                line = piece + b"\n"
                offset += len(line)
                position[0] = offset
                try:
                    yield line.decode("utf-8")
                except UnicodeDecodeError:
                    position[1] = False
                    yield line.decode("utf-8", errors="replace")
        if pending:
            position[0] = offset + len(pending)
            try:
                yield pending.decode("utf-8")
            except UnicodeDecodeError:
                position[1] = False
                yield pending.decode("utf-8", errors="replace")
