"""State kept in Blob Storage: definitions, run plans, chunk checkpoints, rejected rows, reports.

Layout of the one storage account (Azurite locally)::

    segments/        input files, as upstream writes them
    exports/         connections/<name>.json, exports/<name>.json (validated on write and read)
    export-runs/     <export>/<run id>/plan.json, report.json, rejected.csv,
                     chunks/<n>.items + .invalid.csv (the plan's work; its counts are in plan.json),
                     chunks/<n>.progress (confirmed batches), chunks/<n>.json (checkpoint),
                     chunks/<n>.rejected.csv (refused by the vendor or not sent)
    export-state/    state across runs: rate-budgets/<connection>.json (who sends to a
                     connection now: shared/budgets.py)

Everything here is JSON or CSV a person can open. Writes of a chunk's files happen before
its checkpoint, so a checkpoint always describes files that exist.
"""

from __future__ import annotations

import json
import os
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import requests
import zstandard
from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobBlock, BlobClient, BlobServiceClient, ContainerClient
from requests.adapters import HTTPAdapter

from .budgets import RateBudget, rate_budget
from .config import (
    Connection,
    Definitions,
    DestinationSpec,
    Export,
    parse_connection,
    parse_definitions,
    parse_export,
    record_consent,
)
from .memory import release_frames
from .segments import DOWNLOAD_BYTES, SegmentReader
from .settings import AppSettings

__all__ = ["CONTAINERS", "RUNS_CONTAINER", "BackgroundWrites", "DefinitionStore", "RunStore", "Storage"]

RUNS_CONTAINER = "export-runs"  # the runs' files (`RunStore`): what reports and messages point into
CONTAINERS = ("segments", "exports", RUNS_CONTAINER, "export-state")


_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def _client_options() -> dict[str, Any]:
    # Every chunk activity of a process shares one client: a pool larger than the default
    # 10 connections keeps parallel activities from opening and discarding connections.
    # Blobs are read in blocks of DOWNLOAD_BYTES per request, so reading a chunk stays bounded.
    session = requests.Session()
    # requests looks the proxy variables (and NO_PROXY, netrc, CA bundle) up again for every
    # request: a tenth of a small blob call's CPU. With no proxy set, that is skipped, and a
    # CA bundle from the environment (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) is read once here.
    session.trust_env = any(os.environ.get(name) for name in _PROXY_VARIABLES)
    ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    verify = {"connection_verify": ca_bundle} if ca_bundle and not session.trust_env else {}
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=64)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # Reads in blocks of 1 MB: with azure-core's default of 4 KB for a transport built here,
    # reading a segment cost more CPU than parsing it.
    transport = RequestsTransport(session=session, session_owner=False, connection_data_block_size=DOWNLOAD_BYTES,
                                  **verify)
    return {"transport": transport,
            "max_single_get_size": DOWNLOAD_BYTES, "max_chunk_get_size": DOWNLOAD_BYTES}


class Storage:
    """The storage account, with one client per process (clients are thread-safe)."""

    def __init__(self, service: BlobServiceClient):
        self.service = service

    @classmethod
    def from_settings(cls, settings: AppSettings, credential: Any = None) -> Storage:
        return _storage_for(settings, credential)

    @classmethod
    def from_connection_string(cls, connection_string: str) -> Storage:
        return cls(BlobServiceClient.from_connection_string(connection_string, **_client_options()))

    def container(self, name: str) -> ContainerClient:
        return self.service.get_container_client(name)

    def ensure_containers(self) -> None:
        """Create the product's containers where missing (local runs; Bicep creates them in Azure)."""
        for name in CONTAINERS:
            try:
                self.container(name).create_container()
            except ResourceExistsError:
                pass

    @property
    def segments(self) -> SegmentReader:
        return SegmentReader(self.container("segments"))

    def definitions(self, specs: Mapping[str, DestinationSpec], allow_local: bool = False) -> DefinitionStore:
        return DefinitionStore(self.container("exports"), specs, allow_local)

    @property
    def runs(self) -> RunStore:
        return RunStore(self.container(RUNS_CONTAINER))

    def rate_budget(self, connection: str) -> RateBudget:
        """This process's share of the connection's rate limit, agreed with every process sending to it."""
        return rate_budget(self.container("export-state").get_blob_client(f"rate-budgets/{connection}.json"))


@lru_cache(maxsize=4)
def _storage_for(settings: AppSettings, credential: Any) -> Storage:
    if settings.storage_connection_string:
        return Storage.from_connection_string(settings.storage_connection_string)
    if settings.blob_service_uri:
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential(managed_identity_client_id=settings.managed_identity_client_id)
        return Storage(BlobServiceClient(settings.blob_service_uri, credential=credential, **_client_options()))
    raise RuntimeError("no storage configured: set AzureWebJobsStorage (connection string) "
                       "or AzureWebJobsStorage__blobServiceUri (managed identity)")


def _read_json(container: ContainerClient, path: str) -> Any | None:
    return _read_versioned(container, path)[0]


def _read_versioned(container: ContainerClient, path: str) -> tuple[Any | None, str | None]:
    """A JSON blob and its ETag (the version a conditional `_write_json` names); (None, None) if absent."""
    try:
        download = container.download_blob(path)
    except ResourceNotFoundError as error:
        release_frames(error)
        return None, None
    return json.loads(download.readall()), download.properties.etag


def _write_json(container: ContainerClient, path: str, document: Any, etag: str | None = None,
                new: bool = False) -> bool:
    """Store `document`; with `etag`, only over that version, with `new` only where none is
    stored yet: False, nothing written, when that condition no longer holds."""
    if etag:
        condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
    else:
        condition = {"match_condition": MatchConditions.IfMissing} if new else {}
    try:
        container.upload_blob(path, json.dumps(document, indent=2, sort_keys=False).encode("utf-8"), overwrite=True,
                              **condition)
    except (ResourceModifiedError, ResourceExistsError) as error:
        release_frames(error)
        return False
    return True


class DefinitionStore:
    """Connections and exports in the `exports` container, one JSON document per object."""

    def __init__(self, container: ContainerClient, specs: Mapping[str, DestinationSpec], allow_local: bool):
        self._container = container
        self._specs = specs
        self._allow_local = allow_local

    def put_connection(self, document: dict[str, Any], recorded_by: str | None = None) -> Connection:
        """Validate and store a connection; raises DefinitionError. With `recorded_by` (who
        stores it), its consent is stamped first (`record_consent`: unchanged acceptance,
        unchanged stamp)."""
        if recorded_by is not None:
            record_consent(document, self.connection_document(str(document.get("name"))), recorded_by)
        connection = parse_connection(document, self._specs, allow_local=self._allow_local)
        _write_json(self._container, f"connections/{connection.name}.json", document)
        return connection

    def put_export(self, document: dict[str, Any]) -> Export:
        """Validate (against the stored connections) and store an export; raises DefinitionError."""
        export = parse_export(document, self.load().connections, self._specs)
        _write_json(self._container, f"exports/{export.name}.json", document)
        return export

    def documents(self, kind: str) -> Iterator[dict[str, Any]]:
        for blob in self._container.list_blobs(name_starts_with=f"{kind}/"):
            document = _read_json(self._container, blob.name)
            if document is not None:
                yield document

    def load(self) -> Definitions:
        """Every stored definition, validated on read; invalid ones raise DefinitionError."""
        return parse_definitions({"connections": list(self.documents("connections")),
                                  "exports": list(self.documents("exports"))},
                                 self._specs, allow_local=self._allow_local)

    def export_document(self, name: str) -> dict[str, Any] | None:
        """The stored document of export `name`, unvalidated, or None."""
        return _read_json(self._container, f"exports/{name}.json")

    def connection_document(self, name: str) -> dict[str, Any] | None:
        """The stored document of connection `name`, unvalidated, or None."""
        return _read_json(self._container, f"connections/{name}.json")


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


class RunStore:
    """The files of runs in `export-runs/<export>/<run id>/`."""

    def __init__(self, container: ContainerClient):
        self._container = container
        self._plans: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def prefix(export: str, run_id: str) -> str:
        return f"{export}/{run_id}"

    @classmethod
    def report_path(cls, export: str, run_id: str) -> str:
        return f"{cls.prefix(export, run_id)}/report.json"

    @staticmethod
    def hold_path(export: str) -> str:
        """The blob a local run of the export holds a lease on (`runner.holds`); `run_ids`
        skips it, as every file of a run is one folder deeper."""
        return f"{export}/local-run.lock"

    def held_by_local_run(self, export: str) -> bool:
        """Whether a local run (`cli.py run` against this storage) holds the export now."""
        try:
            properties = self._container.get_blob_client(self.hold_path(export)).get_blob_properties()
        except ResourceNotFoundError:
            return False
        return properties.lease.state == "leased"

    def write_plan(self, plan: dict[str, Any], *, etag: str | None = None, new: bool = False) -> bool:
        """Store the run's plan; with `etag` (as `plan_and_etag` read it) only if it is still
        that version, with `new` only if the run has none yet: False, and nothing written,
        when another execution wrote it since."""
        return _write_json(self._container, f"{self.prefix(plan['export']['name'], plan['run_id'])}/plan.json",
                           plan, etag, new)

    def plan_and_etag(self, export: str, run_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """The run's plan as stored, and the version it is (for `write_plan`)."""
        return _read_versioned(self._container, f"{self.prefix(export, run_id)}/plan.json")

    def plan(self, export: str, run_id: str, *, chunk: int | None = None) -> dict[str, Any] | None:
        """The run's plan as stored. Every chunk activity reads it, passing its `chunk`: a copy
        holding that chunk is kept for them (the plan grows while its later parts are read;
        a planned chunk never changes)."""
        key = (export, run_id)
        if chunk is not None:
            with self._lock:
                cached = self._plans.get(key)
            if cached is not None and chunk < len(cached["chunks"]):
                return cached
        plan = _read_json(self._container, f"{self.prefix(export, run_id)}/plan.json")
        if plan is not None and chunk is not None:
            with self._lock:
                self._plans[key] = plan
        return plan

    def items_writer(self, export: str, run_id: str, chunk: int, writes: BackgroundWrites | None = None) -> BlobWriter:
        """Where the plan writes a chunk's encoded batches, as it produces them, compressed
        (ITEMS_COMPRESSION, which the chunk's entry in the plan records): every vendor's
        items shrink, JSON tens of times, Snapchat's hex digests and emails to ~37%, and
        storage spends ~8 ms of its CPU a MB each way."""
        blob = self._container.get_blob_client(self.chunk_file(export, run_id, chunk, "items"))
        return BlobWriter(blob, writes=writes)

    def items(self, export: str, run_id: str, chunk: int, compression: str | None) -> Iterator[bytes]:
        """A chunk's prepared batch lines (bytes, without newline), streamed; `compression` as
        `compression_of` its entry says."""
        items = self.chunk_file(export, run_id, chunk, "items")

        def lines() -> Iterator[bytes]:
            parts: list[bytes] = []  # a line longer than a block (a Snapchat batch) arrives in parts
            blocks = self._container.download_blob(items).chunks()
            for block in decompressed(blocks, compression, ITEM_PIECE_BYTES) if compression else blocks:
                start = 0
                while (end := block.find(b"\n", start)) >= 0:
                    parts.append(block[start:end])
                    line = parts[0] if len(parts) == 1 else b"".join(parts)
                    parts, start = [], end + 1  # not held while the line is sent: a Snapchat line is megabytes
                    yield line
                parts.append(block[start:])
            if any(parts):
                yield b"".join(parts)

        return lines()

    def write_rejected(self, export: str, run_id: str, chunk: int, csv_text: str, kind: str = "rejected") -> str | None:
        """Rejected rows of a chunk (`invalid`: refused by the plan's checks); None when there are none."""
        if not csv_text:
            return None
        path = self.rejected_path(export, run_id, chunk, kind)
        self._container.upload_blob(path, csv_text.encode("utf-8"), overwrite=True)
        return path

    def rejected_path(self, export: str, run_id: str, chunk: int, kind: str = "rejected") -> str:
        return self.chunk_file(export, run_id, chunk, f"{kind}.csv")

    def chunk_file(self, export: str, run_id: str, chunk: int, suffix: str) -> str:
        """`<export>/<run id>/chunks/<n>.<suffix>`: where a chunk's files live."""
        return f"{self.prefix(export, run_id)}/chunks/{chunk:06d}.{suffix}"

    def append_progress(self, export: str, run_id: str, chunk: int, record: dict[str, Any]) -> None:
        """Append one progress record (a confirmed batch) to the chunk's append blob."""
        blob = self._container.get_blob_client(self.chunk_file(export, run_id, chunk, "progress"))
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        try:
            blob.append_block(line)
        except ResourceNotFoundError as error:
            release_frames(error)
            blob.create_append_blob()
            blob.append_block(line)

    def progress(self, export: str, run_id: str, chunk: int) -> list[dict[str, Any]]:
        """The chunk's progress records, oldest first; [] when it has none."""
        try:
            text = self._container.download_blob(
                self.chunk_file(export, run_id, chunk, "progress")).readall().decode("utf-8")
        except ResourceNotFoundError as error:
            release_frames(error)
            return []
        return [json.loads(line) for line in text.splitlines() if line]

    def chunk_state(self, export: str, run_id: str, chunk: int) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """What earlier executions of a chunk activity left: its final checkpoint (then no
        records), else its progress records ([]: none).

        One listing of the chunk's files, then a read of what it found: on a first execution,
        the usual case, a read of each that found nothing cost two storage calls (and two
        errors) where the listing is one, ~40% less CPU for each chunk that starts."""
        states = self._chunk_states(export, run_id, self.chunk_file(export, run_id, chunk, ""))
        return states.get(chunk, (None, []))

    def write_checkpoint(self, export: str, run_id: str, chunk: int, result: dict[str, Any]) -> None:
        _write_json(self._container, self.chunk_file(export, run_id, chunk, "json"), result)

    def checkpoint(self, export: str, run_id: str, chunk: int) -> dict[str, Any] | None:
        return _read_json(self._container, self.chunk_file(export, run_id, chunk, "json"))

    def checkpoints(self, export: str, run_id: str) -> list[dict[str, Any]]:
        """The results of the run's chunks that finished (`chunks/<n>.json`)."""
        return self.chunks_so_far(export, run_id, with_progress=False)[0]

    def chunks_so_far(self, export: str, run_id: str,
                      with_progress: bool = True) -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]]]:
        """What the run's chunks have done, from one listing of their files: the results of
        those that finished (`chunks/<n>.json`), and the progress records (confirmed
        batches) of those still sending (`chunks/<n>.progress`, no result yet)."""
        states = self._chunk_states(export, run_id, f"{self.prefix(export, run_id)}/chunks/", with_progress)
        return ([checkpoint for checkpoint, _ in states.values() if checkpoint is not None],
                {chunk: records for chunk, (checkpoint, records) in states.items() if checkpoint is None and records})

    def _chunk_states(self, export: str, run_id: str, prefix: str, with_progress: bool = True
                      ) -> dict[int, tuple[dict[str, Any] | None, list[dict[str, Any]]]]:
        """{chunk: (final checkpoint, else progress records)} of the chunks whose files one
        listing under `prefix` finds, in chunk order; only what exists is read."""
        files: dict[int, set[str]] = {}
        for blob in self._container.list_blobs(name_starts_with=prefix):
            number, _, suffix = blob.name.rsplit("/", 1)[1].partition(".")
            if number.isdigit():
                files.setdefault(int(number), set()).add(suffix)
        states = {}
        for chunk, suffixes in sorted(files.items()):
            checkpoint = self.checkpoint(export, run_id, chunk) if "json" in suffixes else None
            records = (self.progress(export, run_id, chunk)
                       if checkpoint is None and with_progress and "progress" in suffixes else [])
            states[chunk] = (checkpoint, records)
        return states

    def merge_rejected(self, export: str, run_id: str, header: str, parts: list[str]) -> str | None:
        """Concatenate the chunks' rejected-row files into one `rejected.csv`; None if none."""
        if not parts:
            return None
        path = f"{self.prefix(export, run_id)}/rejected.csv"

        def content() -> Iterator[bytes]:
            yield (header + "\r\n").encode("utf-8")
            for part in parts:
                yield from self._container.download_blob(part).chunks()

        self._container.upload_blob(path, content(), overwrite=True)
        return path

    def write_report(self, report: dict[str, Any]) -> None:
        _write_json(self._container, self.report_path(report["export"], report["run_id"]), report)

    def report(self, export: str, run_id: str) -> dict[str, Any] | None:
        return _read_json(self._container, self.report_path(export, run_id))

    def run_ids(self, export: str) -> list[str]:
        """Run ids of an export, newest first (run ids start with their UTC start time)."""
        names = {blob.name.split("/")[1] for blob in self._container.list_blobs(name_starts_with=f"{export}/")
                 if blob.name.count("/") >= 2}
        return sorted(names, reverse=True)
