"""Helpers the tests share: uploading segments, sandbox connections, the accounting invariant,
watching which parsed blocks are alive."""

from __future__ import annotations

import json
import weakref
from typing import Any

from bench.segments import cdm_model
from destinations.base import Pending
from sandbox.bundle import Sandbox
from shared.state import Storage


def upload_segment(storage: Storage, path: str, text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    storage.container("segments").upload_blob(path, data, overwrite=True)
    return path


def upload_cdm_table(storage: Storage, folder: str, table: str, columns: list[str],
                     snapshots: dict[str, list[str | bytes | None]], *, format_settings: dict | None = None,
                     other_tables: tuple[str, ...] = ()) -> str:
    """A Customer Insights export of `table` into `folder`, as a CDM folder: each snapshot's
    headerless partitions, written under `<folder>/<table>/<snapshot>/` (None: listed in
    model.json but never written), and `<folder>/model.json` listing them by URL, in the
    snapshots' order. Returns the export's segment entry naming the table."""
    segments = storage.container("segments")
    locations = []
    for snapshot, texts in snapshots.items():
        for number, text in enumerate(texts, start=1):
            path = f"{folder}/{table}/{snapshot}/{table}_{number}.csv"
            if text is not None:
                upload_segment(storage, path, text)
            locations.append(f"{segments.url}/{path}")
    tables = {**{name: ["Id"] for name in other_tables}, table: columns}
    segments.upload_blob(f"{folder}/model.json", cdm_model(folder, tables, {table: locations}, format_settings),
                         overwrite=True)
    return f"{folder}/{table}"


def connection_of(sandbox: Sandbox, type_: str) -> dict[str, Any]:
    return next(json.loads(json.dumps(c)) for c in sandbox.connections() if c["type"] == type_)


def assert_accounted(report: dict[str, Any]) -> None:
    """The run accounting invariant: every input row delivered, rejected or skipped."""
    destination = report["destination"]
    assert destination["input_rows"] == destination["delivered"] + destination["rejected"] + destination["skipped"]
    assert destination["accounting_ok"] is True
    assert sum(destination["reasons"]["rejected"].values()) == destination["rejected"]
    assert sum(destination["reasons"]["skipped"].values()) == destination["skipped"]


def send_rows(destination, rows: list[tuple[str, list[str]]]) -> dict[int, str]:
    """Prepare (key, fields) rows as the plan does, and send them as one batch."""
    keys = [key for key, _ in rows]
    items = destination.encode_batch([destination.item(key, fields) for key, fields in rows]).encode("utf-8")
    outcome = destination.send(keys, items)
    while isinstance(outcome, Pending):  # a vendor that finishes batches later: ask until it has
        settled = destination.settle([outcome])[0]
        if settled is not None:
            outcome = settled
    return outcome


def watch_parsed_blocks(monkeypatch) -> list[int]:
    """For each block parsed from now on: how many blocks parsed before it were still alive."""
    from shared.segments import parsing as segments

    parsed, alive = [], []
    parse = segments._parse

    def watched(*args, **kwargs):
        alive.append(sum(ref() is not None for ref in parsed))
        block = parse(*args, **kwargs)
        if block is not None:
            parsed.append(weakref.ref(block))
        return block

    monkeypatch.setattr(segments, "_parse", watched)
    return alive

