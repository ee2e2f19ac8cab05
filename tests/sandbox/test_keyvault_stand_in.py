"""The Key Vault stand-in speaks the secrets protocol well enough for the real `SecretClient`."""

from __future__ import annotations

import pytest
import requests
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.keyvault.secrets import SecretClient
from azure.keyvault.secrets._shared import http_challenge_cache

from sandbox.keyvault import DEFAULT_TENANT, KeyVaultStandIn, StaticTokenCredential

CREDENTIALS = '{"api_key": "braze-rest-key"}'


@pytest.fixture(scope="module")
def running():
    with KeyVaultStandIn(secrets={"braze-prod": CREDENTIALS}) as stand_in:
        yield stand_in


@pytest.fixture
def vault(running):
    """One server for the module (stopping one takes half a second); each test starts as a new process would."""
    # The SDK caches each host's challenge for the whole process (a private module: only tests touch it).
    http_challenge_cache.clear()
    yield running
    http_challenge_cache.clear()
    requests.post(f"{running.url}/__sandbox__/faults", json={}, verify=running.ca_path, timeout=5)
    running.reset()
    running.resource = None
    running.secrets.pop("rotated", None)


def client(vault: KeyVaultStandIn, credential: StaticTokenCredential | None = None, **options) -> SecretClient:
    return SecretClient(vault.url, credential or StaticTokenCredential(), connection_verify=vault.ca_path, **options)


def test_secret_client_reads_a_secret_with_only_the_ca_certificate_configured(vault):
    secret = client(vault).get_secret("braze-prod")
    assert secret.value == CREDENTIALS
    assert secret.id == f"{vault.url}/secrets/braze-prod/{secret.properties.version}"
    assert secret.properties.enabled is True


def test_challenge_flow_learns_tenant_and_scope_before_sending_the_token(vault):
    credential = StaticTokenCredential()
    reader = client(vault, credential)
    reader.get_secret("braze-prod")
    reader.get_secret("braze-prod")
    assert [call["had_token"] for call in vault.calls] == [False, True, True]
    assert credential.asked == [((f"{vault.resource}/.default",), DEFAULT_TENANT)]


def test_request_without_a_token_gets_the_bearer_challenge(vault):
    answer = requests.get(f"{vault.url}/secrets/braze-prod", params={"api-version": "7.5"}, verify=vault.ca_path,
                          timeout=5)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == (
        f'Bearer authorization="https://login.microsoftonline.com/{DEFAULT_TENANT}", resource="{vault.resource}"')
    assert CREDENTIALS not in answer.text


def test_wrong_token_is_refused_with_client_authentication_error(vault):
    with pytest.raises(ClientAuthenticationError):
        client(vault, StaticTokenCredential("stolen-token")).get_secret("braze-prod")
    answer = requests.get(f"{vault.url}/secrets/braze-prod", params={"api-version": "7.5"}, verify=vault.ca_path,
                          headers={"Authorization": "Bearer stolen-token"}, timeout=5)
    assert answer.status_code == 401 and "WWW-Authenticate" in answer.headers
    assert answer.json()["error"]["code"] == "Unauthorized"


def test_unknown_secret_raises_resource_not_found(vault):
    with pytest.raises(ResourceNotFoundError) as raised:
        client(vault).get_secret("no-such-secret")
    assert raised.value.error.code == "SecretNotFound"


def test_new_version_becomes_the_latest_and_old_versions_stay_readable(vault):
    vault.set_secret("rotated", "v1")
    reader = client(vault)
    first = reader.get_secret("rotated").properties.version
    vault.secrets["rotated"] = "v2"  # written straight into the dict: served as a new version
    assert reader.get_secret("rotated").value == "v2"
    assert reader.get_secret("rotated", first).value == "v1"
    with pytest.raises(ResourceNotFoundError):
        reader.get_secret("rotated", "0" * 32)


def test_certificate_is_not_trusted_without_the_stand_in_ca(vault):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{vault.url}/secrets/braze-prod", timeout=5)


def test_real_vault_resource_needs_challenge_verification_off(vault):
    vault.resource = "https://vault.azure.net"
    with pytest.raises(ValueError, match="verify_challenge_resource"):
        client(vault).get_secret("braze-prod")
    assert client(vault, verify_challenge_resource=False).get_secret("braze-prod").value == CREDENTIALS


def test_injected_server_error_reaches_the_client_as_an_http_response_error(vault):
    requests.post(f"{vault.url}/__sandbox__/faults", json={"server_error": 1.0}, verify=vault.ca_path, timeout=5)
    with pytest.raises(HttpResponseError) as raised:
        client(vault, retry_total=0).get_secret("braze-prod")
    assert raised.value.status_code in (500, 503)
