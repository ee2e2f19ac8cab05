"""What the engine works with in this process: settings, storage, secrets. Built once per process."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

from destinations import SPECS

from ..secrets import SecretStore
from ..settings import AppSettings
from ..state import DefinitionStore, RunStore, Storage


@dataclass(frozen=True)
class Services:
    settings: AppSettings

    @classmethod
    def current(cls) -> Services:
        """The services for the app settings now in the environment (cached per distinct settings)."""
        return _services(AppSettings.from_env())

    @cached_property
    def storage(self) -> Storage:
        return Storage.from_settings(self.settings)

    @cached_property
    def secrets(self) -> SecretStore:
        return SecretStore.from_settings(self.settings)

    @cached_property
    def runs(self) -> RunStore:
        return self.storage.runs

    @cached_property
    def definitions(self) -> DefinitionStore:
        return self.storage.definitions(SPECS, self.settings.allow_local_endpoints)


@lru_cache(maxsize=8)
def _services(settings: AppSettings) -> Services:
    return Services(settings)
