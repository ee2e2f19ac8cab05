"""JSON documents in blobs, read and written whole, optionally only over a known version."""

from __future__ import annotations

import json
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from ..memory import release_frames

__all__ = ["read_json", "read_versioned", "write_json"]


def read_json(container: ContainerClient, path: str) -> Any | None:
    return read_versioned(container, path)[0]


def read_versioned(container: ContainerClient, path: str) -> tuple[Any | None, str | None]:
    """A JSON blob and its ETag (the version a conditional `write_json` names); (None, None) if absent."""
    try:
        download = container.download_blob(path)
    except ResourceNotFoundError as error:
        release_frames(error)
        return None, None
    return json.loads(download.readall()), download.properties.etag


def write_json(container: ContainerClient, path: str, document: Any, etag: str | None = None,
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
