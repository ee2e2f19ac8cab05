"""App settings: the environment the Function App (or the CLI) runs with, read in one place.

Read when a function runs, never at import, so tests and the local runner can set them.
Storage follows the Functions host's own `AzureWebJobsStorage` conventions: a connection
string locally (Azurite), identity-based `AzureWebJobsStorage__blobServiceUri` (plus
`__clientId` for a user-assigned identity) in Azure.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["AppSettings", "DEVELOPMENT_STORAGE"]

# Azurite's documented well-known development account: not a secret.
DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class AppSettings:
    storage_connection_string: str | None = field(repr=False)  # may hold an account key: never printed
    blob_service_uri: str | None
    managed_identity_client_id: str | None
    key_vault_url: str | None
    local_secrets_file: str | None
    allow_local_endpoints: bool
    chunk_rows: int | None = None  # None: sized from the segment and the fan-out width
    progress_interval_s: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AppSettings:
        env = os.environ if env is None else env
        connection_string = env.get("AzureWebJobsStorage") or None
        if connection_string == "UseDevelopmentStorage=true":
            connection_string = DEVELOPMENT_STORAGE
        blob_uri = env.get("AzureWebJobsStorage__blobServiceUri") or None
        account = env.get("AzureWebJobsStorage__accountName")
        if not blob_uri and account:
            blob_uri = f"https://{account}.blob.core.windows.net"
        return cls(
            storage_connection_string=connection_string,
            blob_service_uri=blob_uri,
            managed_identity_client_id=env.get("AzureWebJobsStorage__clientId") or env.get("AZURE_CLIENT_ID") or None,
            key_vault_url=env.get("KEY_VAULT_URL") or None,
            local_secrets_file=env.get("LOCAL_SECRETS_FILE") or None,
            allow_local_endpoints=env.get("ALLOW_LOCAL_ENDPOINTS", "").strip().lower() in _TRUE,
            chunk_rows=int(env["CHUNK_ROWS"]) if env.get("CHUNK_ROWS") else None,
            progress_interval_s=float(env.get("PROGRESS_INTERVAL_S") or 5.0),
        )
