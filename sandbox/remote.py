"""The four stand-ins served by another process (`python cli.py sandbox`), seen from this one.

For measurements the exporter must not share a process with the vendors: Python threads
share one interpreter lock, so stand-ins in the exporter's process would slow it down,
blur its CPU figures, and timestamp requests late. The fault test and the benchmarks
run the stand-ins here instead and read their state through `/__sandbox__/` endpoints.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import requests

from .processes import stop_process
from .server import Faults

__all__ = ["RemoteSandbox"]

ROOT = Path(__file__).resolve().parent.parent


class RemoteSandbox:
    """A `python cli.py sandbox` process; a context manager."""

    def __init__(self, *, rate_limited: bool = True, faults: Faults | None = None, latency_s: float = 0.0,
                 tls: bool = False):
        self._options = ["--latency-ms", str(latency_s * 1000)] + (["--tls"] if tls else [])
        if not rate_limited:
            self._options.append("--unthrottled")
        if faults is not None:
            self._options += ["--faults", json.dumps(asdict(faults))]
        self._folder: Path | None = None
        self._process: subprocess.Popen | None = None
        self.urls: dict[str, str] = {}

    def start(self, timeout_s: float = 30.0) -> RemoteSandbox:
        self._folder = Path(tempfile.mkdtemp(prefix="remote-sandbox-"))
        self._process = subprocess.Popen(
            [sys.executable, "cli.py", "sandbox", "--write-config", str(self._folder), *self._options],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ready = self._folder / "stand-ins.json"
        deadline = time.monotonic() + timeout_s
        while not ready.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                error = self._process.stderr.read() if self._process.poll() is not None else "timed out"
                self.stop()
                raise RuntimeError(f"the sandbox process did not start: {error}")
            time.sleep(0.05)
        self.urls = json.loads(ready.read_text())
        return self

    def stop(self) -> None:
        stop_process(self._process)
        self._process = None
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> RemoteSandbox:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self._process, "not started"
        return self._process.pid

    def connections(self) -> list[dict[str, Any]]:
        return json.loads((self._folder / "connections.json").read_text())["connections"]

    @property
    def ca_path(self) -> str:
        """The stand-ins' CA certificates (when started with tls=True), for REQUESTS_CA_BUNDLE."""
        return str(self._folder / "ca.pem")

    def write_secrets(self, path: str) -> None:
        shutil.copyfile(self._folder / "local.secrets.json", path)

    def control(self, vendor: str) -> dict[str, Any]:
        """A stand-in's control view: state, request count, requests inside throttle windows, faults."""
        response = requests.get(f"{self.urls[vendor]}/__sandbox__/state", timeout=60,
                                verify=self.ca_path if self.urls[vendor].startswith("https") else True)
        response.raise_for_status()
        return response.json()

    def state(self, vendor: str) -> dict[str, Any]:
        return self.control(vendor)["state"]
