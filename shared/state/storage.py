"""The storage account: one client per process, tuned for reading segments and writing runs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import requests
from azure.core.exceptions import ResourceExistsError
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient, ContainerClient
from requests.adapters import HTTPAdapter

from ..budgets import RateBudget, rate_budget
from ..config import DestinationSpec
from ..segments import DOWNLOAD_BYTES, SegmentReader
from ..settings import AppSettings
from .definitions import DefinitionStore
from .runs import RunStore

__all__ = ["CONTAINERS", "RUNS_CONTAINER", "Storage"]

RUNS_CONTAINER = "export-runs"  # the runs' files (`RunStore`): what reports and messages point into
CONTAINERS = ("segments", "exports", RUNS_CONTAINER, "export-state")


_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def _client_options() -> dict[str, Any]:
    # Every chunk activity of a process shares one client: a pool larger than the default
    # 10 connections keeps parallel activities from opening and discarding connections.
    # Blobs are read in blocks of DOWNLOAD_BYTES per request, so reading a chunk stays bounded.
    session = requests.Session()
    # requests looks the proxy variables (and NO_PROXY, netrc, CA bundle) up again for every
    # request: a tenth of a small blob call's CPU. With no proxy set, that is skipped, and a
    # CA bundle from the environment (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) is read once here.
    session.trust_env = any(os.environ.get(name) for name in _PROXY_VARIABLES)
    ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    verify = {"connection_verify": ca_bundle} if ca_bundle and not session.trust_env else {}
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=64)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # Reads in blocks of 1 MB: with azure-core's default of 4 KB for a transport built here,
    # reading a segment cost more CPU than parsing it.
    transport = RequestsTransport(session=session, session_owner=False, connection_data_block_size=DOWNLOAD_BYTES,
                                  **verify)
    return {"transport": transport,
            "max_single_get_size": DOWNLOAD_BYTES, "max_chunk_get_size": DOWNLOAD_BYTES}


class Storage:
    """The storage account, with one client per process (clients are thread-safe)."""

    def __init__(self, service: BlobServiceClient):
        self.service = service

    @classmethod
    def from_settings(cls, settings: AppSettings, credential: Any = None) -> Storage:
        return _storage_for(settings, credential)

    @classmethod
    def from_connection_string(cls, connection_string: str) -> Storage:
        return cls(BlobServiceClient.from_connection_string(connection_string, **_client_options()))

    def container(self, name: str) -> ContainerClient:
        return self.service.get_container_client(name)

    def ensure_containers(self) -> None:
        """Create the product's containers where missing (local runs; Bicep creates them in Azure)."""
        for name in CONTAINERS:
            try:
                self.container(name).create_container()
            except ResourceExistsError:
                pass

    @property
    def segments(self) -> SegmentReader:
        return SegmentReader(self.container("segments"))

    def definitions(self, specs: Mapping[str, DestinationSpec], allow_local: bool = False) -> DefinitionStore:
        return DefinitionStore(self.container("exports"), specs, allow_local)

    @property
    def runs(self) -> RunStore:
        return RunStore(self.container(RUNS_CONTAINER))

    def rate_budget(self, connection: str) -> RateBudget:
        """This process's share of the connection's rate limit, agreed with every process sending to it."""
        return rate_budget(self.container("export-state").get_blob_client(f"rate-budgets/{connection}.json"))


@lru_cache(maxsize=4)
def _storage_for(settings: AppSettings, credential: Any) -> Storage:
    if settings.storage_connection_string:
        return Storage.from_connection_string(settings.storage_connection_string)
    if settings.blob_service_uri:
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential(managed_identity_client_id=settings.managed_identity_client_id)
        return Storage(BlobServiceClient(settings.blob_service_uri, credential=credential, **_client_options()))
    raise RuntimeError("no storage configured: set AzureWebJobsStorage (connection string) "
                       "or AzureWebJobsStorage__blobServiceUri (managed identity)")
