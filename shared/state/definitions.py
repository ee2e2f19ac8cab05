"""Connections and exports, one JSON document per object, validated on write and on read."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from azure.storage.blob import ContainerClient

from ..config import (
    Connection,
    Definitions,
    DestinationSpec,
    Export,
    parse_connection,
    parse_definitions,
    parse_export,
    record_consent,
)
from .blobs import read_json, write_json

__all__ = ["DefinitionStore"]


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
        write_json(self._container, f"connections/{connection.name}.json", document)
        return connection

    def put_export(self, document: dict[str, Any]) -> Export:
        """Validate (against the stored connections) and store an export; raises DefinitionError."""
        export = parse_export(document, self.load().connections, self._specs)
        write_json(self._container, f"exports/{export.name}.json", document)
        return export

    def documents(self, kind: str) -> Iterator[dict[str, Any]]:
        for blob in self._container.list_blobs(name_starts_with=f"{kind}/"):
            document = read_json(self._container, blob.name)
            if document is not None:
                yield document

    def load(self) -> Definitions:
        """Every stored definition, validated on read; invalid ones raise DefinitionError."""
        return parse_definitions({"connections": list(self.documents("connections")),
                                  "exports": list(self.documents("exports"))},
                                 self._specs, allow_local=self._allow_local)

    def export_document(self, name: str) -> dict[str, Any] | None:
        """The stored document of export `name`, unvalidated, or None."""
        return read_json(self._container, f"exports/{name}.json")

    def connection_document(self, name: str) -> dict[str, Any] | None:
        """The stored document of connection `name`, unvalidated, or None."""
        return read_json(self._container, f"connections/{name}.json")
