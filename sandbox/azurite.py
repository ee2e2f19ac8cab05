"""Azurite, the Azure Storage emulator, started on a free loopback port for tests, demo and benchmarks.

Installed from npm by `make` (package.json + package-lock.json); started with in-memory
persistence and telemetry off, and stopped with the process that started it.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path

from .processes import stop_process

__all__ = ["Azurite"]

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# Azurite's documented well-known development key: not a secret.
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTENING = re.compile(r"Blob service (?:is )?successfully listens on http://127\.0\.0\.1:(\d+)")


class Azurite:
    """A running Azurite blob service; use as a context manager or start()/stop()."""

    def __init__(self, start_timeout_s: float = 60.0):
        self.port: int | None = None
        self._timeout = start_timeout_s
        self._process: subprocess.Popen | None = None
        self._workspace: tempfile.TemporaryDirectory | None = None

    @property
    def pid(self) -> int:
        assert self._process, "Azurite not started"
        return self._process.pid

    @property
    def connection_string(self) -> str:
        assert self.port, "Azurite not started"
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"BlobEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};")

    def start(self) -> Azurite:
        binary = ROOT / "node_modules" / ".bin" / "azurite-blob"
        if not binary.exists():
            raise RuntimeError(f"{binary} is missing: run `make setup` (it installs Azurite with npm ci)")
        # Run in an empty directory: with in-memory persistence Azurite should write nothing,
        # and if a version does, it lands there rather than in the checkout.
        self._workspace = tempfile.TemporaryDirectory(prefix="azurite-")
        self._process = subprocess.Popen(
            [str(binary), "--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence",
             "--disableTelemetry", "--skipApiVersionCheck", "--loose", "--silent"],
            cwd=self._workspace.name, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "NODE_NO_WARNINGS": "1"})
        found = threading.Event()
        output: list[str] = []

        def watch() -> None:
            for line in self._process.stdout:
                output.append(line)
                match = _LISTENING.search(line)
                if match and not found.is_set():
                    self.port = int(match.group(1))
                    found.set()

        threading.Thread(target=watch, name="azurite-output", daemon=True).start()
        if not found.wait(self._timeout):
            self.stop()
            raise RuntimeError("Azurite did not start:\n" + "".join(output[-20:]))
        return self

    def stop(self) -> None:
        stop_process(self._process)
        self._process = None
        if self._workspace:
            self._workspace.cleanup()
            self._workspace = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
