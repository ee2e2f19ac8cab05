"""Segments: reading segment files from the `segments` container, in blocks of whole rows.

A segment is a CSV file with a header row: UTF-8 with or without BOM, LF or CRLF line
ends, RFC 4180 quoting (fields may hold commas, quotes and newlines). Reading is
streamed: about a megabyte at a time is cut at the last row boundary (a newline with an
even number of quotes before it) and parsed whole by the csv module, in C, so a row
costs little Python, and the next megabyte downloads while one is parsed. The plan reads
each file once (`blocks`) and cuts it into chunks at row boundaries (`offset_after`).

Column names are matched case-insensitively and without surrounding spaces; a mapped
column that is missing is an error naming it and listing the columns that exist.
"""

from __future__ import annotations

import codecs
import csv
import io
import queue
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

__all__ = ["Block", "SegmentError", "SegmentInfo", "SegmentReader", "resolve_columns"]

_BOM = codecs.BOM_UTF8
HEADER_BYTES = 64 * 1024


class SegmentError(Exception):
    """A segment file cannot be read as the export expects. The message names file and place."""


@dataclass
class Block:
    """Consecutive rows of a segment, parsed together: the unit of reading and of planning."""

    first_row: int  # the number of its first row (1-based data row number in the file)
    rows: list[list[str]]  # its non-blank rows
    start: int  # byte offset of its first byte
    end: int  # byte offset just past its last row
    data: bytes = field(repr=False)  # its bytes, kept to find a row boundary inside it
    bad: frozenset[int] = frozenset()  # indices of rows holding bytes that are not UTF-8


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
            block = next(self.blocks(path, start, limit), None)
            if block is None or not block.rows:
                break
            end = self.offset_after(block, 1)
            if end == limit < size:
                continue  # the header row did not end within this range
            if not any(name.strip() for name in block.rows[0]):
                raise SegmentError(f"segment {path}: the header row is blank")
            return SegmentInfo(path, size, properties.etag, block.rows[0], end)
        raise SegmentError(f"segment {path} has no header row")

    def blocks(self, path: str, start: int, end: int, *, first_row: int = 1,
               etag: str | None = None) -> Iterator[Block]:
        """The rows in bytes [start, end), in blocks of about BLOCK_BYTES of whole rows.

        `start` must be a row boundary (a plan's chunk start). Blank lines are not rows. A
        row with bytes that are not UTF-8 is still yielded (bad bytes replaced) and listed
        in `Block.bad`, so one bad row is reported without losing the others. Raises
        SegmentError for CSV that cannot be parsed (a quote never closed) and for a segment
        changed or removed while it is read, or since it had `etag` (a plan read in parts).
        """
        if end <= start:
            return
        condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        try:
            stream = self._container.get_blob_client(path).download_blob(
                offset=start, length=end - start, max_concurrency=1, **condition)
            yield from self._blocks(path, stream.chunks(), start, first_row)
        except (ResourceModifiedError, ResourceNotFoundError) as error:
            raise SegmentError(f"segment {path} changed or was removed while it was read; run again once "
                               "upstream has finished writing it") from error

    @staticmethod
    def _blocks(path: str, chunks: Iterator[bytes], start: int, first_row: int) -> Iterator[Block]:
        buffer = bytearray()
        offset, number = start, first_row
        for data in _read_ahead(chunks):
            view = memoryview(data)
            for piece in range(0, len(view), BLOCK_BYTES):
                buffer += view[piece:piece + BLOCK_BYTES]
                cut = _last_row_end(buffer)
                if cut <= 0:
                    _check_growth(path, offset, buffer)
                    continue
                block = _parse(path, bytes(buffer[:cut]), offset, number, final=False)
                if block is None:  # the cut was inside a quoted field after all: read on
                    _check_growth(path, offset, buffer)
                    continue
                del buffer[:cut]
                offset, number = block.end, number + len(block.rows)
                yield block
                # Not held while the next block is parsed: two blocks of rows were a plan's largest memory.
                del block
        if buffer:
            yield _parse(path, bytes(buffer), offset, number, final=True)

    def offset_after(self, block: Block, count: int) -> int:
        """The byte offset just past the first `count` rows of `block` (a chunk boundary)."""
        if count >= len(block.rows):
            return block.end
        data = block.data
        if b'"' not in data and b"\n\n" not in data and b"\n\r\n" not in data and not data.startswith((b"\n", b"\r")):
            # No quoting and no blank lines: the row ends at its newline.
            position = -1
            for _ in range(count):
                position = data.index(b"\n", position + 1)
            return block.start + position + 1
        for seen, (_, end, _) in enumerate(_rows_with_ends(block.data, block.start, ""), start=1):
            if seen == count:
                return end
        return block.end


# A segment is downloaded a megabyte at a time (fewer requests: each costs ~4 ms of CPU in
# the SDK) and its rows parsed in blocks of about BLOCK_BYTES: big enough that parsing
# happens in C, small enough that a dozen plans reading at once stay within memory (a
# block's rows take ~7 times its bytes).
DOWNLOAD_BYTES = 1024 * 1024
BLOCK_BYTES = 512 * 1024
# A row longer than this (a quote never closed, most likely) makes the file unreadable.
MAX_ROW_BYTES = 64 * 1024 * 1024


def _last_row_end(buffer: bytearray) -> int:
    """Index just past the last newline that ends a row (an even number of quotes before it), or -1.

    A guess when quotes also appear inside unquoted fields (`5'11"`); `_parse` then finds
    out and the caller reads on.
    """
    quotes = buffer.count(b'"')
    position = len(buffer)
    while True:
        newline = buffer.rfind(b"\n", 0, position)
        if newline < 0:
            return -1
        if (quotes - buffer.count(b'"', newline + 1)) % 2 == 0:
            return newline + 1
        position = newline


def _check_growth(path: str, offset: int, buffer: bytearray) -> None:
    if len(buffer) > MAX_ROW_BYTES:
        raise SegmentError(f"segment {path}: no row ends within {MAX_ROW_BYTES // 2**20} MB after byte {offset}: "
                           "a quote is probably never closed")


def _parse(path: str, data: bytes, start: int, first_row: int, final: bool) -> Block | None:
    """Parse whole rows; None when `data` ends inside a quoted field and more data follows."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _parse_lines(path, data, start, first_row, final)
    lines = text.replace("\r\n", "\n")
    if '"' not in lines and "\r" not in lines:
        # No quoting, no lone CR: splitting is what csv would do, at half the cost.
        return Block(first_row, [line.split(",") for line in lines.split("\n") if line], start,
                     start + len(data), data)
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline=""), strict=True) if row]
    except csv.Error as error:
        if not final:
            return None
        raise SegmentError(f"segment {path}: malformed CSV between bytes {start} and {start + len(data)}: "
                           f"{error}") from None
    return Block(first_row, rows, start, start + len(data), data)


def _parse_lines(path: str, data: bytes, start: int, first_row: int, final: bool) -> Block | None:
    """The slow way, line by line, for a block with bytes that are not UTF-8: which rows hold them."""
    rows, bad = [], set()
    try:
        for fields, _, utf8 in _rows_with_ends(data, start, path):
            if not utf8:
                bad.add(len(rows))
            rows.append(fields)
    except SegmentError:
        if not final:
            return None
        raise
    return Block(first_row, rows, start, start + len(data), data, frozenset(bad))


def _rows_with_ends(data: bytes, start: int, path: str) -> Iterator[tuple[list[str], int, bool]]:
    """Non-blank rows of `data` with the byte offset each ends at and whether it was valid UTF-8."""
    position = [start, True]  # end offset of the lines read so far; no bad bytes since the last row

    def lines() -> Iterator[str]:
        offset = start
        for line in data.splitlines(keepends=True) if b"\r" not in data else _split_lf(data):
            offset += len(line)
            position[0] = offset
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError:
                position[1] = False
                yield line.decode("utf-8", errors="replace")

    try:
        for fields in csv.reader(lines(), strict=True):
            # csv pulls lines only as far as the row it returns, so `position` is this row's end.
            utf8, position[1] = position[1], True
            if fields:
                yield fields, position[0], utf8
    except csv.Error as error:
        raise SegmentError(f"segment {path}: malformed CSV near byte {position[0]}: {error}") from None


def _split_lf(data: bytes) -> list[bytes]:
    """Lines ending in LF (a CR stays part of its line, as csv expects for CRLF)."""
    pieces = data.split(b"\n")
    last = pieces.pop()
    return [piece + b"\n" for piece in pieces] + ([last] if last else [])


_END = object()


def _read_ahead(chunks: Iterator[bytes], depth: int = 1) -> Iterator[bytes]:
    """`chunks`, downloaded by a thread of their own up to `depth` ahead of the reader (plus
    the one it holds until there is room).

    The next megabyte of a segment arrives while this one is parsed: waiting for each
    download in turn was a fifth of a plan's time. One ahead is enough (a download takes
    a few milliseconds, the plan's work on a megabyte a few hundred); each one more is a
    megabyte per plan. A download failure is raised here.
    """
    ready: queue.Queue[Any] = queue.Queue(depth)
    stop = threading.Event()

    def offer(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the reader went away

    def download() -> None:
        try:
            for data in chunks:
                if not offer(data):
                    return
            offer(_END)
        except BaseException as error:  # noqa: BLE001 - handed to the reader, who raises it
            offer(error)

    threading.Thread(target=download, name="segment-read-ahead", daemon=True).start()
    try:
        while (item := ready.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
