"""Shared fixtures: real Azurite, the vendor stand-ins, and an app environment pointing at them.

Azurite and the stand-ins start once per test session on free ports; each test gets
its own names (segments, exports, run ids) so tests never see each other's data.
"""

from __future__ import annotations

import uuid

import pytest

from sandbox.azurite import Azurite
from sandbox.bundle import Sandbox
from shared.state import Storage


@pytest.fixture(scope="session")
def azurite():
    with Azurite() as running:
        Storage.from_connection_string(running.connection_string).ensure_containers()
        yield running


@pytest.fixture(scope="session")
def storage(azurite) -> Storage:
    return Storage.from_connection_string(azurite.connection_string)


@pytest.fixture(scope="session")
def sandbox():
    """The four stand-ins, rate limits off (tests that need them start their own), repeating
    in their refusals the credentials they refuse, as some vendors do: every test of a wrong
    key then also checks that the exporter keeps it out of what it reports."""
    with Sandbox(rate_limited=False, echo_credentials=True) as running:
        yield running


@pytest.fixture
def stand_ins(sandbox):
    """The session's stand-ins with empty audiences, no faults and an empty request log."""
    for stand_in in sandbox.stand_ins.values():
        with stand_in.lock:
            stand_in.reset()
            stand_in.log.clear()
    yield sandbox


@pytest.fixture
def app_env(monkeypatch, azurite, stand_ins, tmp_path):
    """App settings as the Function App would have them locally: Azurite, local secrets, sandbox allowed."""
    secrets_file = tmp_path / "local.secrets.json"
    stand_ins.write_secrets(str(secrets_file))
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("LOCAL_SECRETS_FILE", str(secrets_file))
    monkeypatch.setenv("ALLOW_LOCAL_ENDPOINTS", "true")
    monkeypatch.delenv("KEY_VAULT_URL", raising=False)
    monkeypatch.delenv("CHUNK_ROWS", raising=False)
    return secrets_file


@pytest.fixture
def unique() -> str:
    """A short unique name part for this test's blobs and exports."""
    return uuid.uuid4().hex[:8]
