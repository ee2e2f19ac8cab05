"""Customer Insights CDM folders: a segment named by its table folder, read from the
partition files its `model.json` lists.

Dynamics 365 Customer Insights exports tables (segments among them) to Blob Storage as a
CDM folder: `<folder>/model.json` describes every table exported there (its attributes,
in column order, and the files holding its rows), and each export writes a table's rows
as CSV partitions under a dated snapshot folder of its own:
`<folder>/<Table>/<yyyy>/<MM>/<dd>/<HHmm>/<Table>_<n>.csv`. Those folders change with
every export, so an export definition names the table's folder, `<folder>/<Table>`, and
each run reads the partitions `model.json` lists for it then.

`model.json` is written once the partitions are (it is what makes a snapshot visible), so
the partitions it lists are a complete snapshot. When it lists several snapshots of a
table, the newest whose files all exist wins; one it names whose files are missing
(deleted, or still being copied) is passed over with a warning, never read in part.
Format: https://learn.microsoft.com/common-data-model/model-json (CsvFormatSettings:
no header row unless `columnHeaders`, comma-delimited, RFC 4180 quoting, UTF-8).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobProperties, ContainerClient

from .parsing import SegmentError

__all__ = ["MODEL_FILE", "CdmTable", "Partition", "read_table"]

MODEL_FILE = "model.json"
# A model.json describes tables, not rows: even hundreds of them with every attribute
# annotated stay far below this. Anything larger is not one.
MAX_MODEL_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Partition:
    path: str  # the blob path in the segments container
    header_row: bool  # its first row names the columns (CsvFormatSettings.columnHeaders)
    size: int = 0  # as found when the snapshot was chosen
    etag: str = ""


@dataclass
class CdmTable:
    """One table of a CDM folder, as its model.json describes it now."""

    model: str  # the model.json's blob path
    name: str  # the table (entity) name, as model.json writes it
    columns: list[str]  # its attributes' names, in the partitions' column order
    snapshot: str  # the folder of the partitions read
    partitions: list[Partition]
    warnings: list[str] = field(default_factory=list)


def read_table(container: ContainerClient, path: str) -> CdmTable | None:
    """The table `path` names (`<folder>/<Table>`, model.json in `<folder>`), or None when
    `<folder>` holds no model.json. SegmentError, naming the model and the table, when it
    cannot be read as one."""
    folder, table = posixpath.split(path.rstrip("/"))
    model_path = posixpath.join(folder, MODEL_FILE)
    model = _load_model(container, model_path)
    if model is None:
        return None
    where = f"segment {path} (table {table!r} of {model_path})"
    entity = _entity(model, table, where, model_path)
    columns = _columns(entity, where)
    snapshots: dict[str, list[Partition]] = {}  # snapshot folder -> its partitions, in model.json's order
    for index, partition in enumerate(entity.get("partitions") or []):
        if not isinstance(partition, dict):
            raise SegmentError(f"{where}: partitions[{index}] is not an object")
        if partition.get("location") is None:  # a partition without a file describes the schema only
            continue
        blob = _blob_path(container, partition["location"], folder, f"{where}: partitions[{index}]")
        _check_format(partition.get("fileFormatSettings"), f"{where}: partition {blob}")
        header_row = (partition.get("fileFormatSettings") or {}).get("columnHeaders") in (True, "true", "True")
        snapshots.setdefault(posixpath.dirname(blob), []).append(Partition(blob, header_row))
    if not snapshots:
        raise SegmentError(f"{where}: model.json lists no partition file for the table: has Customer Insights "
                           "finished its first export of it?")
    passed_over = []
    # Dated folders (yyyy/MM/dd/HHmm, zero-padded) sort as their dates do: newest first.
    for snapshot in sorted(snapshots, reverse=True):
        found = [(p, _properties(container, p.path)) for p in snapshots[snapshot]]
        missing = [p.path for p, properties in found if properties is None]
        if not missing:
            partitions = [replace(p, size=properties.size, etag=properties.etag) for p, properties in found]
            return CdmTable(model_path, entity["name"], columns, snapshot, partitions,
                            [f"{where}: {reason}" for reason in passed_over])
        passed_over.append(f"snapshot {snapshot} was passed over, {len(missing)} of its "
                           f"{len(snapshots[snapshot])} partition files missing (first: {missing[0]})")
    raise SegmentError(f"{where}: no snapshot of the table has all its partition files; " + "; ".join(passed_over))


def _load_model(container: ContainerClient, model_path: str) -> dict[str, Any] | None:
    blob = container.get_blob_client(model_path)
    try:
        size = blob.get_blob_properties().size
    except ResourceNotFoundError:
        return None
    if size > MAX_MODEL_BYTES:
        raise SegmentError(f"{model_path} is {size:,} bytes: too large for a CDM model.json")
    try:
        model = json.loads(blob.download_blob().readall())
    except ResourceNotFoundError:
        return None  # removed since: as if it had never been there
    except (UnicodeDecodeError, ValueError) as error:
        raise SegmentError(f"{model_path} is not valid JSON: {error}") from None
    if not isinstance(model, dict) or not isinstance(model.get("entities"), list):
        raise SegmentError(f"{model_path} is not a CDM model.json: it has no list of entities")
    return model


def _entity(model: dict[str, Any], table: str, where: str, model_path: str) -> dict[str, Any]:
    entities = [e for e in model["entities"] if isinstance(e, dict) and isinstance(e.get("name"), str)]
    found = ([e for e in entities if e["name"] == table]
             or [e for e in entities if e["name"].lower() == table.lower()])
    if not found:
        names = ", ".join(repr(e["name"]) for e in entities) or "none"
        raise SegmentError(f"{where}: {model_path} describes no table {table!r}; its tables: {names}")
    if len(found) > 1:
        raise SegmentError(f"{where}: {model_path} describes {len(found)} tables named {table!r}")
    entity = found[0]
    if entity.get("$type", "LocalEntity") != "LocalEntity":
        raise SegmentError(f"{where}: the table is a {entity.get('$type')} (defined in another model): "
                           "name the folder of the model that holds its files")
    return entity


def _columns(entity: dict[str, Any], where: str) -> list[str]:
    attributes = entity.get("attributes")
    if not isinstance(attributes, list) or not attributes:
        raise SegmentError(f"{where}: the table has no attributes (columns) in model.json")
    names = [a.get("name") if isinstance(a, dict) else None for a in attributes]
    if not all(isinstance(name, str) and name.strip() for name in names):
        raise SegmentError(f"{where}: an attribute of the table has no name in model.json")
    return names


def _blob_path(container: ContainerClient, location: Any, folder: str, where: str) -> str:
    """The blob path, in this container, of a partition's location (an absolute URL, as CDM
    writes them, or a path relative to the model's folder)."""
    if not isinstance(location, str) or not location.strip():
        raise SegmentError(f"{where}: its location is not a URL")
    parts = urlsplit(location)
    account, name = container.account_name, container.container_name
    pieces = unquote(parts.path).lstrip("/").split("/")
    host = (parts.hostname or "").split(".")[0]
    if not parts.scheme:
        path = posixpath.join(folder, unquote(parts.path))
    # The account is the host's first label (https://<account>.blob.core.windows.net/...)
    # or, for the emulator and IP endpoints, the path's first part.
    elif host == account and len(pieces) > 1 and pieces[0] == name:
        path = "/".join(pieces[1:])
    elif len(pieces) > 2 and pieces[:2] == [account, name]:
        path = "/".join(pieces[2:])
    else:
        raise SegmentError(f"{where}: its file {location} is not in this storage account's {name} container "
                           f"(account {account}): have Customer Insights export into it")
    # Dot segments are resolved by some servers: "segments/../exports/..." must not reach another container.
    resolved = posixpath.normpath(path)
    if resolved.startswith("../") or resolved in ("..", ".") or resolved != path.rstrip("/"):
        raise SegmentError(f"{where}: its location {location} is outside the segments container")
    return resolved


def _check_format(settings: Any, where: str) -> None:
    """Only what the segment reader reads: comma-delimited RFC 4180 CSV in UTF-8."""
    if settings is None:
        return
    if not isinstance(settings, dict):
        raise SegmentError(f"{where}: its fileFormatSettings is not an object")
    kind = settings.get("$type", "CsvFormatSettings")
    problems = []
    if kind != "CsvFormatSettings":
        problems.append(f"format {kind} (only CsvFormatSettings is read)")
    if settings.get("delimiter", ",") != ",":
        problems.append(f"delimiter {settings['delimiter']!r} (only ',' is read)")
    if settings.get("quoteStyle", "QuoteStyle.Csv") != "QuoteStyle.Csv":
        problems.append(f"quote style {settings['quoteStyle']} (only QuoteStyle.Csv is read)")
    if str(settings.get("encoding", "UTF-8")).replace("-", "").lower() != "utf8":
        problems.append(f"encoding {settings['encoding']} (only UTF-8 is read)")
    if problems:
        raise SegmentError(f"{where}: unsupported {', '.join(problems)}")


def _properties(container: ContainerClient, path: str) -> BlobProperties | None:
    try:
        return container.get_blob_client(path).get_blob_properties()
    except ResourceNotFoundError:
        return None
