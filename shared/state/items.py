"""A chunk's prepared items in storage: written compressed as the plan produces them, in
the background, and read back streamed, a piece at a time."""

from __future__ import annotations

import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import zstandard
from azure.storage.blob import BlobBlock, BlobClient

from ..segments import DOWNLOAD_BYTES

__all__ = ["ITEMS_COMPRESSION", "ITEM_PIECE_BYTES", "BackgroundWrites", "BlobWriter", "compression_of",
           "decompressed"]


class BackgroundWrites:
    """Storage writes done in order by one thread of their own, while the caller computes on.

    The plan used to wait for each staged block and each chunk's files: about a quarter
    of its time. At most `pending` writes wait at once (a staged block holds up to a few
    MB), so memory stays bounded: a caller that far ahead waits. A failed write is raised
    by the next `submit` (which then does not queue its own) or at the end of the `with`
    block, so nothing fails unnoticed; writes already queued still run.
    """

    def __init__(self, pending: int = 3):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="storage-writes")
        self._slots = threading.BoundedSemaphore(pending)
        self._futures: deque[Future[Any]] = deque()

    def submit(self, write: Callable[..., Any], *args: Any) -> None:
        while self._futures and self._futures[0].done():
            self._futures.popleft().result()  # raises the failure of an earlier write
        self._slots.acquire()
        future = self._executor.submit(write, *args)
        future.add_done_callback(lambda _: self._slots.release())
        self._futures.append(future)

    def __enter__(self) -> BackgroundWrites:
        return self

    def __exit__(self, error_type: Any, *_: Any) -> None:
        # Every write submitted is done, also when the caller failed: a plan part that fails
        # keeps the chunks it closed before (they may be sending already), and their files
        # must exist; cancelled, a kept chunk had no items and no rejected rows to list.
        try:
            while self._futures:
                future = self._futures.popleft()
                if error_type is None:
                    future.result()
                else:
                    future.exception()  # waited for; the caller's error is the one to report
        finally:
            self._executor.shutdown(wait=True)


class BlobWriter:
    """Writes one zstd-compressed block blob as it is produced (read it with `decompressed`):
    blocks are staged as they fill, then committed.

    Memory holds about one block, whatever the blob's size (plus what `writes` has
    pending): text is handed over a megabyte at a time and compressed where the writes
    run, outside the GIL, so the caller computes on meanwhile; a block is staged once its
    compressed bytes fill it (each staging is a storage request: a block then holds tens
    of times its size of JSON).
    """

    def __init__(self, blob: BlobClient, block_bytes: int = 4 * 1024 * 1024, writes: BackgroundWrites | None = None):
        self._blob = blob
        self._write = writes.submit if writes else _now
        self._block_bytes = block_bytes
        self._compressor = zstandard.ZstdCompressor(compression_params=COMPRESSION).compressobj()
        self._pending: list[bytes] = []  # text not yet handed over, encoded
        self._size = 0
        self._compressed: list[bytes] = []  # compressed, not yet staged (touched by the writes only)
        self._compressed_size = 0
        self._blocks: list[BlobBlock] = []

    def write(self, parts: list[str]) -> None:
        """Append text given in parts (encoded one by one: a large part is not copied again)."""
        for part in parts:
            data = part.encode("utf-8")
            self._pending.append(data)
            self._size += len(data)
        if self._size >= COMPRESS_BYTES:
            self._hand_over(final=False)

    def close(self) -> None:
        self._hand_over(final=True)

    def _hand_over(self, final: bool) -> None:
        pending, self._pending, self._size = self._pending, [], 0
        if pending or final:
            self._write(self._put, pending, final)

    def _put(self, parts: list[bytes], final: bool) -> None:
        """Compress `parts`, stage what fills a block (and commit the blob if `final`): runs
        in order, one call at a time. A blob that ends within its first block is uploaded in
        one request instead (most chunks' items: one storage call fewer each)."""
        for part in parts:
            self._add_compressed(self._compressor.compress(part))
        if final:
            self._add_compressed(self._compressor.flush())
        if not final and self._compressed_size < self._block_bytes:
            return
        data, self._compressed, self._compressed_size = b"".join(self._compressed), [], 0
        if final and not self._blocks:
            self._blob.upload_blob(data, overwrite=True)
            return
        self._stage(data)
        if final:
            self._blob.commit_block_list(self._blocks)

    def _add_compressed(self, data: bytes) -> None:
        if data:
            self._compressed.append(data)
            self._compressed_size += len(data)

    def _stage(self, data: bytes) -> None:
        if data:
            block_id = f"{len(self._blocks):08d}"
            self._blob.stage_block(block_id, data)
            self._blocks.append(BlobBlock(block_id))


# zstd level 1, with a 128 KB window instead of its 512 KB: a reader decompressing holds
# a window's worth per stream, and a worker sending 16 chunks holds 16 streams (its peak
# in throughput_1m, alternated: 107-110 MB against 109-122). The items compress as well
# (Snapchat's lines 37% against 36.5, the JSON vendors' 2-3% either way). One compressor
# per writer: a ZstdCompressor is not safe to share between threads (shared, it crashed).
COMPRESSION = zstandard.ZstdCompressionParameters.from_level(1, window_log=17)

# Text to compress is handed to the writes a megabyte at a time: held longer, it would
# only take memory (it shrinks tens of times).
COMPRESS_BYTES = 1024 * 1024

# How a chunk's items are stored, as its entry in the plan says (`items_compression`).
# zstd at level 1 compresses this JSON ~5 times faster than zlib at its fastest level and
# reads it back ~3 times faster, and smaller (bench/HISTORY.md). zlib is what plans
# made before it say (`items_compressed: true`).
ITEMS_COMPRESSION = "zstd"
# Prepared items are read back a quarter megabyte of text at a time: every chunk activity
# sending holds a piece (16 of them in throughput_1m's worker).
ITEM_PIECE_BYTES = 256 * 1024


def compression_of(chunk: Mapping[str, Any]) -> str | None:
    """How a chunk entry's items are stored: "zstd", "zlib" (plans made before zstd) or None."""
    return chunk.get("items_compression", "zlib" if chunk.get("items_compressed") else None)


def decompressed(chunks: Iterator[bytes], compression: str, piece_bytes: int = DOWNLOAD_BYTES) -> Iterator[bytes]:
    """The bytes of a compressed stream read in `chunks`, in pieces of at most `piece_bytes`
    (a megabyte of stored batches is tens of megabytes of JSON: never all of it at once)."""
    if compression == "zstd":
        yield from zstandard.ZstdDecompressor().read_to_iter(_ChunkStream(chunks), write_size=piece_bytes)
        return
    if compression != "zlib":
        raise ValueError(f"unknown compression of prepared items: {compression!r}")
    inflater = zlib.decompressobj()
    for data in chunks:
        while data:
            yield inflater.decompress(data, piece_bytes)
            data = inflater.unconsumed_tail
    yield inflater.flush()


class _ChunkStream:
    """`read(size)` over an iterator of byte strings (what zstd's streaming reader asks for)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = iter(chunks)
        self._rest = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._rest = memoryview(chunk)
        size = len(self._rest) if size < 0 else size
        data, self._rest = self._rest[:size], self._rest[size:]
        return bytes(data)


def _now(write: Callable[..., Any], *args: Any) -> None:
    write(*args)
