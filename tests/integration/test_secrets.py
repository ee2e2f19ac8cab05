"""Credentials: read through the real SecretClient from a Key Vault stand-in, or from the local file."""

from __future__ import annotations

import json

import pytest

from sandbox.keyvault import KeyVaultStandIn, StaticTokenCredential
from shared.secrets import SecretError, SecretStore
from shared.settings import AppSettings

BRAZE = {"api_key": "kv-braze-key-0001"}


@pytest.fixture(scope="module")
def vault():
    with KeyVaultStandIn(secrets={"braze-prod": json.dumps(BRAZE), "not-json": "plain text",
                                  "pasted": json.dumps({"api_key": " kv-pasted-key-0002\r\n"}),
                                  "broken": json.dumps({"api_key": "kv-broken\n-key-0003"})}) as running:
        yield running


@pytest.fixture
def store(vault):
    return SecretStore.key_vault(vault.url, credential=StaticTokenCredential(), connection_verify=vault.ca_path)


def test_a_secret_is_read_through_the_key_vault_protocol_with_a_bearer_challenge(vault, store):
    vault.calls.clear()
    assert store.get("braze-prod") == BRAZE
    assert [call["had_token"] for call in vault.calls][-1] is True


def test_the_managed_identity_path_of_default_azure_credential_reaches_the_vault(vault, monkeypatch):
    # As in a Function App: the platform's identity endpoint, no credential in the app's settings.
    monkeypatch.setenv("IDENTITY_ENDPOINT", vault.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", vault.identity_header)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", vault.ca_path)
    for name in ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    settings = AppSettings.from_env({"KEY_VAULT_URL": vault.url})
    store = SecretStore.from_settings(settings)
    assert store.get("braze-prod") == BRAZE
    assert any(call["path"] == "/msi/token" for call in vault.calls)


def test_values_are_cached_per_process(vault, store):
    store.get("braze-prod")
    reads = len(vault.calls)
    for _ in range(5):
        store.get("braze-prod")
    assert len(vault.calls) == reads


def test_a_rotated_key_is_read_again_once_the_cached_value_is_older_than_its_ttl(vault, monkeypatch):
    """The cache saves a vault call per chunk; it must not keep a rotated key for ever."""
    now = [1000.0]
    store = SecretStore.key_vault(vault.url, credential=StaticTokenCredential(), connection_verify=vault.ca_path)
    store._clock, store._ttl_s = (lambda: now[0]), 300.0  # a pinned clock
    assert store.get("braze-prod") == BRAZE
    monkeypatch.setitem(vault.secrets, "braze-prod", json.dumps({"api_key": "kv-braze-key-0002"}))
    now[0] += 299
    assert store.get("braze-prod") == BRAZE  # still the cached value within its TTL
    now[0] += 2
    assert store.get("braze-prod") == {"api_key": "kv-braze-key-0002"}


def test_a_missing_secret_names_the_secret_and_the_vault(vault, store):
    with pytest.raises(SecretError, match=f"secret 'nope' was not found in {vault.url}"):
        store.get("nope")


def test_a_secret_that_is_not_a_json_object_is_refused_without_showing_its_value(store):
    with pytest.raises(SecretError) as caught:
        store.get("not-json")
    assert "plain text" not in str(caught.value) and "is not a JSON object" in str(caught.value)


def test_a_wrong_token_is_a_clear_error(vault):
    store = SecretStore.key_vault(vault.url, credential=StaticTokenCredential("wrong"), connection_verify=vault.ca_path)
    with pytest.raises(SecretError, match=f"Key Vault {vault.url} refused this app's identity") as caught:
        store.get("braze-prod")
    assert "kv-braze-key" not in str(caught.value)


def test_the_local_file_serves_objects_and_says_when_it_is_missing(tmp_path):
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"omnisend": {"api_key": "local-key"}, "as-string": json.dumps(BRAZE)}))
    store = SecretStore.local_file(str(path))
    assert store.get("omnisend") == {"api_key": "local-key"}
    assert store.get("as-string") == BRAZE
    with pytest.raises(SecretError, match="does not exist"):
        SecretStore.local_file(str(tmp_path / "missing.json")).get("x")


def test_no_configured_source_is_an_error_naming_both_settings():
    with pytest.raises(SecretError, match="KEY_VAULT_URL .* LOCAL_SECRETS_FILE"):
        SecretStore.from_settings(AppSettings.from_env({}))


def test_credentials_never_show_their_values_in_repr(store):
    credentials = store.get("braze-prod")
    assert "kv-braze-key" not in repr(credentials) and "kv-braze-key" not in str(credentials)


def test_a_value_pasted_with_its_line_end_is_read_without_it(store):
    assert store.get("pasted") == {"api_key": "kv-pasted-key-0002"}


def test_a_control_character_inside_a_value_is_refused_by_field_name_not_value(store):
    """Sent, it would be refused by HTTP with an error quoting the whole header, key and all."""
    with pytest.raises(SecretError, match="secret 'broken': field 'api_key' holds a control character") as caught:
        store.get("broken")
    assert "kv-broken" not in str(caught.value) and "-key-0003" not in str(caught.value)
