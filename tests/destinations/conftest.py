"""Building one destination against its stand-in, as a chunk activity does."""

from __future__ import annotations

from typing import Any

import pytest

from destinations import SPECS, destination_class
from shared.config import parse_connection, parse_export
from shared.http import Credentials, HttpClient, Pacer, RetryPolicy, Transport
from tests.support import connection_of


@pytest.fixture
def build(stand_ins):
    """build(type, target, matching, header, credentials=None) -> Destination wired to the stand-in."""

    def make(type_: str, target: dict[str, Any], matching: dict[str, Any], header: list[str],
             credentials: dict[str, str] | None = None, settings: dict[str, Any] | None = None,
             name: str | None = None):
        document = connection_of(stand_ins, type_)
        document["name"] = name or document["name"]  # a connection of its own: its own cached token
        document["settings"].update(settings or {})
        connection = parse_connection(document, SPECS, allow_local=True)
        export = parse_export({"name": f"test-{type_.replace('_', '-')}", "display_name": "test",
                               "connection": connection.name, "segments": ["test.csv"], "target": target,
                               "matching": matching}, {connection.name: connection}, SPECS)
        cls = destination_class(type_)
        columns = {role: [h.lower() for h in header].index(column.lower())
                   for role, column in export.matching.columns().items()}
        http = HttpClient(cls.SPEC.display_name, Pacer(1000), Transport(),
                          policy=RetryPolicy(attempts=2, base_delay=0.01), describe=cls.describe)
        secret = credentials if credentials is not None else stand_ins.credentials[document["secret_name"]]
        return cls(connection, export, columns, Credentials(secret), http)

    return make
