"""The files of runs: plans, chunk items, progress and checkpoints, rejected rows, reports."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any, NamedTuple

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

from ..memory import release_frames
from .blobs import read_json, read_versioned, write_json
from .items import ITEM_PIECE_BYTES, BackgroundWrites, BlobWriter, decompressed

__all__ = ["ChunksSoFar", "RunStore"]


class ChunksSoFar(NamedTuple):
    """What a run's chunks have done (`RunStore.chunks_so_far`)."""

    done: list[dict[str, Any]]  # the results of the chunks that finished
    sending: dict[int, list[dict[str, Any]]]  # the progress records of those still sending
    # When a chunk file was last written (ISO 8601, UTC): chunks sending record their
    # progress every few seconds, so a run whose files stay as they are is not moving.
    last_written: str | None


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
        return write_json(self._container, f"{self.prefix(plan['export']['name'], plan['run_id'])}/plan.json",
                           plan, etag, new)

    def plan_and_etag(self, export: str, run_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """The run's plan as stored, and the version it is (for `write_plan`)."""
        return read_versioned(self._container, f"{self.prefix(export, run_id)}/plan.json")

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
        plan = read_json(self._container, f"{self.prefix(export, run_id)}/plan.json")
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
        states, _ = self._chunk_states(export, run_id, self.chunk_file(export, run_id, chunk, ""))
        return states.get(chunk, (None, []))

    def write_checkpoint(self, export: str, run_id: str, chunk: int, result: dict[str, Any]) -> None:
        write_json(self._container, self.chunk_file(export, run_id, chunk, "json"), result)

    def checkpoint(self, export: str, run_id: str, chunk: int) -> dict[str, Any] | None:
        return read_json(self._container, self.chunk_file(export, run_id, chunk, "json"))

    def checkpoints(self, export: str, run_id: str) -> list[dict[str, Any]]:
        """The results of the run's chunks that finished (`chunks/<n>.json`)."""
        return self.chunks_so_far(export, run_id, with_progress=False)[0]

    def chunks_so_far(self, export: str, run_id: str, with_progress: bool = True) -> ChunksSoFar:
        """What the run's chunks have done, from one listing of their files: the results of
        those that finished (`chunks/<n>.json`), the progress records (confirmed batches)
        of those still sending (`chunks/<n>.progress`, no result yet), and when the last of
        their files was written."""
        states, latest = self._chunk_states(export, run_id, f"{self.prefix(export, run_id)}/chunks/", with_progress)
        return ChunksSoFar([checkpoint for checkpoint, _ in states.values() if checkpoint is not None],
                           {chunk: records for chunk, (checkpoint, records) in states.items()
                            if checkpoint is None and records},
                           latest.isoformat(timespec="seconds") if latest is not None else None)

    def _chunk_states(self, export: str, run_id: str, prefix: str, with_progress: bool = True
                      ) -> tuple[dict[int, tuple[dict[str, Any] | None, list[dict[str, Any]]]], datetime | None]:
        """{chunk: (final checkpoint, else progress records)} of the chunks whose files one
        listing under `prefix` finds, in chunk order (only what exists is read), and the
        latest time one of those files was written."""
        files: dict[int, set[str]] = {}
        latest = None
        for blob in self._container.list_blobs(name_starts_with=prefix):
            number, _, suffix = blob.name.rsplit("/", 1)[1].partition(".")
            if number.isdigit():
                files.setdefault(int(number), set()).add(suffix)
                latest = blob.last_modified if latest is None else max(latest, blob.last_modified)
        states = {}
        for chunk, suffixes in sorted(files.items()):
            checkpoint = self.checkpoint(export, run_id, chunk) if "json" in suffixes else None
            records = (self.progress(export, run_id, chunk)
                       if checkpoint is None and with_progress and "progress" in suffixes else [])
            states[chunk] = (checkpoint, records)
        return states, latest

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
        write_json(self._container, self.report_path(report["export"], report["run_id"]), report)

    def report(self, export: str, run_id: str) -> dict[str, Any] | None:
        return read_json(self._container, self.report_path(export, run_id))

    def run_ids(self, export: str) -> list[str]:
        """Run ids of an export, newest first (run ids start with their UTC start time)."""
        names = {blob.name.split("/")[1] for blob in self._container.list_blobs(name_starts_with=f"{export}/")
                 if blob.name.count("/") >= 2}
        return sorted(names, reverse=True)
