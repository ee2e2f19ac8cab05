"""Cutting a segment's bytes into blocks of whole rows, and parsing them.

Where a block ends depends only on where it starts and on the file's bytes: the last
row boundary (a newline with an even number of quotes before it) within BLOCK_BYTES of
its start, or within more when no row ends there. Two plans reading the same file from
the same block start therefore cut the same blocks whatever the sizes of their
downloads, which is what lets plans share them (`sharing.py`). Each block is parsed
whole by the csv module, in C, so a row costs little Python; or split, when nothing is
quoted or every field is (as Customer Insights writes), which is faster still. The next
megabyte downloads while one is parsed. A block whose rows all have the same width (the
usual one) holds them as one list of fields (`FlatRows`).
"""

from __future__ import annotations

import csv
import io
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, overload

__all__ = ["BLOCK_BYTES", "Block", "FlatRows", "SegmentError", "cut_blocks", "offset_after"]

# Rows are parsed in blocks of about BLOCK_BYTES: big enough that parsing happens in C,
# small enough that a dozen plans reading at once stay within memory (a block's rows take
# ~8 times its bytes held flat, 9 as a list per row).
BLOCK_BYTES = 512 * 1024
# A row longer than this (a quote never closed, most likely) makes the file unreadable.
MAX_ROW_BYTES = 64 * 1024 * 1024
# A field may be as long as a row: csv's own limit (128 KB) refused whole files holding
# one longer field (a notes column), where they were quoted.
csv.field_size_limit(MAX_ROW_BYTES)


class SegmentError(Exception):
    """A segment file cannot be read as the export expects. The message names file and place."""


class FlatRows(Sequence[list[str]]):
    """Rows that all have `width` fields, held as one list of their fields, row after row.

    What most blocks are: a column is then a slice of the list (`column`), made in C,
    and a row's own list is made only when one is asked for (a rejected row's fields);
    splitting each line into a list of its own, and picking a column from the lists,
    was over a quarter of a Snapchat plan's time. Read-only, like the block it belongs to.
    """

    __slots__ = ("fields", "width")

    def __init__(self, fields: list[str], width: int):
        self.fields, self.width = fields, width

    def __len__(self) -> int:
        return len(self.fields) // self.width

    @overload
    def __getitem__(self, index: int) -> list[str]: ...
    @overload
    def __getitem__(self, index: slice) -> list[list[str]]: ...
    def __getitem__(self, index: int | slice) -> list[str] | list[list[str]]:
        if isinstance(index, slice):
            return [self[at] for at in range(*index.indices(len(self)))]
        count = len(self)
        if not -count <= index < count:
            raise IndexError("row index out of range")
        start = (index % count) * self.width
        return self.fields[start:start + self.width]

    def __iter__(self) -> Iterator[list[str]]:
        fields, width = self.fields, self.width
        return (fields[start:start + width] for start in range(0, len(fields), width))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable-looking like the list it stands for

    def column(self, index: int) -> list[str]:
        """Field `index` of every row."""
        return self.fields[index::self.width]


@dataclass
class Block:
    """Consecutive rows of a segment, parsed together: the unit of reading and of planning.

    Read-only once made: plans reading the same segment at once share it.
    """

    first_row: int  # the number of its first row (1-based data row number in the file)
    rows: list[list[str]] | FlatRows  # its non-blank rows
    start: int  # byte offset of its first byte
    end: int  # byte offset just past its last row
    data: bytes = field(repr=False)  # its bytes, kept to find a row boundary inside it
    bad: frozenset[int] = frozenset()  # indices of rows holding bytes that are not UTF-8
    # What is worked out from its rows once for every plan reading it (`destinations.rows.Rows`).
    derived: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    derived_lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    lines_are_rows: bool = False  # each row is one line, ended by LF or CRLF, and no line is blank


def cut_blocks(path: str, chunks: Iterator[bytes], start: int, first_row: int) -> Iterator[Block]:
    """The blocks of the bytes `chunks` yields, which start at row boundary `start` (row
    number `first_row`); the last block ends where the bytes do."""
    buffer = bytearray()
    offset, number, limit = start, first_row, BLOCK_BYTES
    for data in _read_ahead(chunks):
        view = memoryview(data)
        for piece in range(0, len(view), BLOCK_BYTES):
            buffer += view[piece:piece + BLOCK_BYTES]
            while len(buffer) >= limit:
                cut = _last_row_end(buffer, limit)
                block = _parse(path, bytes(buffer[:cut]), offset, number, final=False) if cut > 0 else None
                if block is None:  # no row end found by counting quotes, or the cut was inside a quoted field
                    cut = _last_row_end_read(buffer, limit)
                    block = _parse(path, bytes(buffer[:cut]), offset, number, final=False) if cut > 0 else None
                if block is None:  # no row ends within the limit
                    _check_growth(path, offset, buffer)
                    # Doubled, so that a long row (or a quote never closed) is looked through
                    # a few times, not once per BLOCK_BYTES more of it.
                    limit *= 2
                    continue
                del buffer[:cut]
                offset, number, limit = block.end, number + len(block.rows), BLOCK_BYTES
                yield block
                # Not held while the next block is parsed: two blocks of rows were a plan's largest memory.
                del block
    # The bytes end: their whole rows first (a range that ends inside a row, like the
    # header's first 64 KB, still gives the rows before), then the rest, which must parse.
    cut = _last_row_end(buffer, len(buffer))
    if 0 < cut < len(buffer):
        block = _parse(path, bytes(buffer[:cut]), offset, number, final=False)
        if block is not None:
            del buffer[:cut]
            offset, number = block.end, number + len(block.rows)
            yield block
            del block
    if buffer:
        yield _parse(path, bytes(buffer), offset, number, final=True)


def offset_after(block: Block, count: int) -> int:
    """The byte offset just past the first `count` rows of `block` (a chunk boundary)."""
    if count >= len(block.rows):
        return block.end
    data = block.data
    if block.lines_are_rows:
        # Each row is one line (as it was split): the row ends at its LF. What follows the
        # `count`-th one is the split's last piece (in C: a chunk boundary 0.15 ms, where
        # reading the rows one by one took 3-20 ms a block).
        return block.start + len(data) - len(data.split(b"\n", count)[-1])
    for seen, (_, end, _) in enumerate(_rows_with_ends(block.data, block.start, ""), start=1):
        if seen == count:
            return end
    return block.end


def _last_row_end(buffer: bytearray, limit: int) -> int:
    """Index just past the last line end within `buffer[:limit]` that ends a row (an even
    number of quotes before it), or -1.

    A line end is an LF (also closing a CRLF); in bytes holding none that ends a row, a
    lone CR, as csv reads it (a file saved with old Mac line ends: without this, its rows
    were only ever cut where the file ended, and one over MAX_ROW_BYTES was refused). A
    guess when quotes also appear inside unquoted fields (`5'11"`); `_parse` then finds
    out and the caller looks further.
    """
    limit = min(limit, len(buffer))
    end = _last_end(buffer, limit, limit, b"\n")
    if end < 0:
        # A CR followed by no LF (else it opens a CRLF, ended by its LF): so that the next
        # byte is known whatever has been downloaded, one before the limit at the latest.
        end = _last_end(buffer, limit - 1, limit, b"\r")
    return end


def _last_end(buffer: bytearray, position: int, limit: int, newline: bytes) -> int:
    """`_last_row_end` for one kind of line end: the last `newline` before `position`."""
    quoted = buffer.find(b'"', 0, limit) >= 0  # (find stops at the first quote at memchr's speed)
    quotes = buffer.count(b'"', 0, limit) if quoted else 0  # before the line end looked at, counted down
    counted_to = limit
    while True:
        found = buffer.rfind(newline, 0, position)
        if found < 0:
            return -1
        if quoted:  # each byte counted once, however many line ends are tried
            quotes -= buffer.count(b'"', found + 1, counted_to)
            counted_to = found + 1
        ends_row = newline == b"\n" or buffer[found + 1] != 10  # 10: LF
        if ends_row and quotes % 2 == 0:
            return found + 1
        position = found


def _last_row_end_read(buffer: bytearray, limit: int) -> int:
    """`_last_row_end` found by reading the rows as csv does, or -1: for bytes where counting
    quotes misleads, a quote inside an unquoted field (`5'11"`, `12" pizza`) being the
    usual cause. Counting, every newline after such a quote looked inside a quoted field,
    so the block grew to the end of the file, each newline counted again at each growth:
    a 2 MB file took 74 s to read. This reads the block's lines once, in Python (about
    20 ms for 512 KB), only when counting failed.
    """
    ends = []
    try:
        for _, end, _ in _rows_with_ends(bytes(buffer[:limit]), 0, ""):
            ends.append(end)
    except SegmentError:  # the bytes end inside a quoted field: the rows before it are whole
        return ends[-1] if ends else -1
    # The last row read may be cut short by the limit: the one before it surely ended.
    return ends[-2] if len(ends) > 1 else -1


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
    if '"' not in text and (split := _split_unquoted(text)) is not None:
        rows, lines_are_rows = split
        return Block(first_row, rows, start, start + len(data), data, lines_are_rows=lines_are_rows)
    if (rows := _split_quoted(text)) is not None:
        return Block(first_row, rows, start, start + len(data), data, lines_are_rows=True)
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline=""), strict=True) if row]
    except csv.Error as error:
        if not final:
            return None
        row = first_row + _rows_before_error(text)
        hint = " (a quote opened there is never closed)" if "unexpected end of data" in str(error) else ""
        raise SegmentError(f"segment {path}: malformed CSV at row {row} (in bytes {start} to {start + len(data)}): "
                           f"{error}{hint}") from None
    return Block(first_row, rows, start, start + len(data), data)


def _rows_before_error(text: str) -> int:
    """How many rows of `text` csv reads before it fails (for the message naming the row)."""
    count = 0
    try:
        for row in csv.reader(io.StringIO(text, newline=""), strict=True):
            count += bool(row)
    except csv.Error:
        pass
    return count


def _lines(text: str) -> tuple[str, list[str]] | None:
    """The line end of `text` (CRLF wherever a CR is, else LF) and its lines (without a last
    empty one); None when CRLF is mixed with a lone CR or LF (csv decides what those are)."""
    newline = "\r\n" if "\r" in text else "\n"
    lines = text.split(newline)
    if newline == "\r\n" and not text.count("\r") == text.count("\n") == len(lines) - 1:
        return None
    if not lines[-1]:
        lines.pop()
    return newline, lines


def _split_unquoted(text: str) -> tuple[list[list[str]] | FlatRows, bool] | None:
    """The rows of text without quotes: splitting is what csv would do, at a fraction of the
    cost. As `FlatRows` when every line has as many fields and none is blank (the usual
    block), else a list per row; and whether each line is a row (none blank). None when
    CRLF line ends are mixed with a lone CR or LF."""
    if (split := _lines(text)) is None:
        return None
    newline, lines = split
    if "" in lines:
        return [line.split(",") for line in lines if line], False
    commas = set(map(str.count, lines, repeat(",")))
    if len(commas) == 1:
        fields = text.replace(newline, ",").split(",")
        if text.endswith(newline):
            fields.pop()  # the empty piece after the last line end
        return FlatRows(fields, commas.pop() + 1), True
    return [line.split(",") for line in lines], True


def _split_quoted(text: str) -> FlatRows | None:
    """The rows of text in which every field is quoted and none holds a quote or a line
    break, as csv reads them, or None for any other text (csv reads it).

    What Customer Insights writes (CsvStyle.QuoteAlways: `"C1","ana@example.com","Ana"`):
    csv took 1.5-2.5 µs a row of it, into a list per row, where splitting takes 0.9-1.1.
    Each line must be `"` + `","`.join(fields) + `"` exactly: starting and ending with a
    quote, as many separators as every other line, and no quote in any field (an empty
    field, `""` between separators, is one too); else None.
    """
    if (split := _lines(text)) is None:
        return None
    newline, lines = split
    if not lines or min(map(len, lines)) < 2 or not (all(map(str.startswith, lines, repeat('"')))
                                                     and all(map(str.endswith, lines, repeat('"')))):
        return None
    separators = set(map(str.count, lines, repeat('","')))
    if len(separators) != 1:
        return None
    width = separators.pop() + 1
    fields = newline.join(lines)[1:-1].replace('"' + newline + '"', '","').split('","')
    if len(fields) != width * len(lines) or '"' in "".join(fields):
        return None
    return FlatRows(fields, width)


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
        # Lines end where csv ends them: LF, CRLF or a lone CR (bytes split on those three only).
        for line in data.splitlines(keepends=True):
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
