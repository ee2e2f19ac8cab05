"""Segment files in Blob Storage: their header and columns, and their rows in blocks.

Column names are matched case-insensitively and without surrounding spaces; a mapped
column that is missing is an error naming it and listing the columns that exist.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient

from .cdm import Partition, read_table
from .parsing import Block, SegmentError, cut_blocks, offset_after
from .sharing import shared_blocks

__all__ = ["DOWNLOAD_BYTES", "SegmentFiles", "SegmentInfo", "SegmentReader", "resolve_columns"]

_BOM = codecs.BOM_UTF8
HEADER_BYTES = 64 * 1024
# A segment is downloaded a megabyte at a time: fewer requests (each costs ~3 ms of CPU
# in the SDK), and a dozen plans reading at once still hold little.
DOWNLOAD_BYTES = 1024 * 1024


@dataclass(frozen=True)
class SegmentInfo:
    path: str
    size: int
    etag: str
    header: list[str]
    data_start: int  # byte offset of the first data row (after BOM and header)
    header_row: bool = True  # the file's first row is its header (else `header` comes from a CDM model.json)


@dataclass(frozen=True)
class SegmentFiles:
    """The files an export's segment entry names: the file itself, or the partitions of a
    Customer Insights table (`cdm`), with what was noticed finding them."""

    files: list[SegmentInfo]
    model: str | None = None  # the model.json the partitions were found in
    warnings: tuple[str, ...] = ()


def resolve_columns(path: str, header: list[str], mapping: Mapping[str, str]) -> dict[str, int]:
    """Map each role's column name to its index in `header`; SegmentError lists what is
    missing, and a mapped name the header holds more than once (which one is meant?)."""
    index: dict[str, list[int]] = {}
    for position, name in enumerate(header):
        index.setdefault(name.strip().lower(), []).append(position)
    resolved, missing, ambiguous = {}, [], []
    for role, column in mapping.items():
        positions = index.get(column.strip().lower())
        if positions is None:
            missing.append(column)
        elif len(positions) > 1:
            ambiguous.append(f'"{column}" (columns {", ".join(str(p + 1) for p in positions)})')
        else:
            resolved[role] = positions[0]
    if missing:
        names = ", ".join(f'"{m}"' for m in missing)
        existing = ", ".join(f'"{h}"' for h in header)
        raise SegmentError(f"segment {path}: mapped column(s) {names} not found; the file has {existing}")
    if ambiguous:
        raise SegmentError(f"segment {path}: the header names mapped column(s) {', '.join(ambiguous)} more than "
                           "once (names match ignoring case and spaces): rename the copies or map another column")
    return resolved


class _NotFound(SegmentError):
    """No blob of that name (it may name a CDM table folder)."""


class SegmentReader:
    """Reads segment files from one container (`segments`)."""

    def __init__(self, container: ContainerClient):
        self._container = container

    def files(self, path: str) -> SegmentFiles:
        """What an export's segment entry names: a CSV file with a header row, or else the
        table folder of a Customer Insights CDM export (`cdm`: its newest complete
        snapshot's partitions). SegmentError when it is neither, or cannot be read."""
        try:
            return SegmentFiles([self.info(path)])
        except _NotFound as not_found:
            if path.lower().endswith(".csv"):  # a file's name: no table folder is named so
                raise
            table = read_table(self._container, path)
            if table is None:
                raise SegmentError(f"{not_found} (nor is it the table folder of a Customer Insights export: "
                                   "no model.json beside it)") from None
        files = [self.info(p.path) if p.header_row else self._headerless(p, table.columns)
                 for p in table.partitions]
        return SegmentFiles(files, table.model, tuple(table.warnings))

    def etag(self, path: str) -> str | None:
        """The file's current ETag, None when it is gone."""
        try:
            return self._container.get_blob_client(path).get_blob_properties().etag
        except ResourceNotFoundError:
            return None

    def info(self, path: str) -> SegmentInfo:
        """Size and header of a segment; SegmentError when it is missing, empty or has no header."""
        blob = self._container.get_blob_client(path)
        try:
            properties = blob.get_blob_properties()
        except ResourceNotFoundError:
            raise _NotFound(f"segment {path} was not found in container {self._container.container_name}") from None
        size = properties.size
        if size == 0:
            raise SegmentError(f"segment {path} is empty: expected a header row and data rows")
        start = self._data_start(blob, path, size)
        # The header is read from a small range first; only an absurdly long one needs more.
        for limit in (min(size, HEADER_BYTES), size):
            block = next(self.blocks(path, start, limit), None)
            if block is None or not block.rows:
                break
            end = offset_after(block, 1)
            if end == limit < size:
                continue  # the header row did not end within this range
            if not any(name.strip() for name in block.rows[0]):
                raise SegmentError(f"segment {path}: the header row is blank")
            if any("\x00" in name for name in block.rows[0]):
                raise SegmentError(f"segment {path}: the header row holds NUL bytes, as a file encoded in UTF-16 "
                                   "without a byte order mark would: save it as UTF-8")
            return SegmentInfo(path, size, properties.etag, block.rows[0], end)
        raise SegmentError(f"segment {path} has no header row")

    def _headerless(self, partition: Partition, columns: list[str]) -> SegmentInfo:
        """A partition whose columns model.json names: every row is data (an empty one holds none)."""
        blob = self._container.get_blob_client(partition.path)
        start = self._data_start(blob, partition.path, partition.size) if partition.size else 0
        return SegmentInfo(partition.path, partition.size, partition.etag, list(columns), start, header_row=False)

    @staticmethod
    def _data_start(blob: BlobClient, path: str, size: int) -> int:
        """Where the text starts: after a UTF-8 byte order mark; SegmentError for UTF-16 and UTF-32."""
        try:
            head = blob.download_blob(offset=0, length=min(size, 3)).readall()
        except ResourceNotFoundError:
            raise _changed(path) from None
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # UTF-32's marks start so too
            raise SegmentError(f"segment {path} is UTF-16 or UTF-32 encoded (its byte order mark says so): "
                               "save it as UTF-8 (with or without BOM)")
        return len(_BOM) if head.startswith(_BOM) else 0

    def blocks(self, path: str, start: int, end: int, *, first_row: int = 1, etag: str | None = None,
               shared_by: str | None = None) -> Iterator[Block]:
        """The rows in bytes [start, end), in blocks of about BLOCK_BYTES of whole rows.

        `start` must be a row boundary (a plan's chunk start). Blank lines are not rows. A
        row with bytes that are not UTF-8 is still yielded (bad bytes replaced) and listed
        in `Block.bad`, so one bad row is reported without losing the others. Raises
        SegmentError for CSV that cannot be parsed (a quote never closed) and for a segment
        changed or removed while it is read, or since it had `etag` (a plan read in parts).

        `shared_by` (a plan's name; with `etag`, and `start` a block start: the data start
        or the start of a block read before) shares the blocks with the other plans of
        this process reading this version of the file at the same time (`sharing`).
        """
        if end <= start:
            return
        if shared_by is None or etag is None:
            yield from self._blocks(path, start, end, first_row, etag)
            return
        yield from shared_blocks().read((self._container.url, path, etag, end), shared_by, start, first_row, end,
                                        lambda at, row: self._blocks(path, at, end, row, etag))

    def _blocks(self, path: str, start: int, end: int, first_row: int, etag: str | None) -> Iterator[Block]:
        condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        try:
            stream = self._container.get_blob_client(path).download_blob(
                offset=start, length=end - start, max_concurrency=1, **condition)
            yield from cut_blocks(path, stream.chunks(), start, first_row)
        except (ResourceModifiedError, ResourceNotFoundError) as error:
            raise _changed(path) from error


def _changed(path: str) -> SegmentError:
    return SegmentError(f"segment {path} changed or was removed while it was read; run again once "
                        "upstream has finished writing it")
