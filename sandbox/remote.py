"""The four stand-ins served by other processes (`python cli.py sandbox`), seen from this one.

For measurements the exporter must not share a process with the vendors: Python threads
share one interpreter lock, so stand-ins in the exporter's process would slow it down,
blur its CPU figures, and timestamp requests late. The fault test and the benchmarks
run the stand-ins here instead and read their state through `/__sandbox__/` endpoints.

Each vendor is served by a process of its own, as the vendors are separate services: in
one process, Braze's and Omnisend's answers waited on each other's interpreter lock
while a run sent to both (bench throughput at 400,000 profiles x 4, five runs of each
alternated: median wall 30.8 s with one process, 28.5 s with one per vendor, the
exporter's CPU the same).
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
    """One `python cli.py sandbox` process per vendor; a context manager.

    Each process starts the whole bundle (so its credentials, connections and CA are
    made the usual way) and only its own vendor's stand-in is used: connections,
    secrets, URLs and CA certificates are gathered from each process for its vendor.
    """

    def __init__(self, *, rate_limited: bool = True, faults: Faults | None = None, latency_s: float = 0.0,
                 tls: bool = False):
        self._options = ["--latency-ms", str(latency_s * 1000)] + (["--tls"] if tls else [])
        if not rate_limited:
            self._options.append("--unthrottled")
        if faults is not None:
            self._options += ["--faults", json.dumps(asdict(faults))]
        self._folder: Path | None = None
        self._processes: dict[str, subprocess.Popen] = {}
        self.urls: dict[str, str] = {}
        self._connections: list[dict[str, Any]] = []
        self._secrets: dict[str, Any] = {}

    def start(self, timeout_s: float = 30.0) -> RemoteSandbox:
        self._folder = Path(tempfile.mkdtemp(prefix="remote-sandbox-"))
        try:
            return self._start(timeout_s)
        except BaseException:  # none left running: a failed start is not followed by stop()
            self.stop()
            raise

    def _start(self, timeout_s: float) -> RemoteSandbox:
        assert self._folder is not None
        for vendor in VENDORS:  # started together, waited for together
            self._processes[vendor] = subprocess.Popen(
                [sys.executable, "cli.py", "sandbox", "--write-config", str(self._folder / vendor), *self._options],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout_s
        certificates = []
        for vendor, process in self._processes.items():
            folder = self._folder / vendor
            ready = folder / "stand-ins.json"
            while not ready.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    error = process.stderr.read() if process.poll() is not None else "timed out"
                    raise RuntimeError(f"the {vendor} sandbox process did not start: {error}")
                time.sleep(0.05)
            self.urls[vendor] = json.loads(ready.read_text())[vendor]
            connection = next(c for c in json.loads((folder / "connections.json").read_text())["connections"]
                              if c["type"] == vendor)
            self._connections.append(connection)
            self._secrets[connection["secret_name"]] = json.loads(
                (folder / "local.secrets.json").read_text())[connection["secret_name"]]
            if (folder / "ca.pem").exists():
                certificates.append((folder / "ca.pem").read_text())
        if certificates:
            (self._folder / "ca.pem").write_text("".join(certificates))
        return self

    def stop(self) -> None:
        for process in self._processes.values():
            stop_process(process)
        self._processes = {}
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> RemoteSandbox:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        assert self._processes, "not started"
        return [process.pid for process in self._processes.values()]

    def connections(self) -> list[dict[str, Any]]:
        return json.loads(json.dumps(self._connections))  # a fresh copy: callers change settings

    @property
    def ca_path(self) -> str:
        """The stand-ins' CA certificates (when started with tls=True), for REQUESTS_CA_BUNDLE."""
        return str(self._folder / "ca.pem")

    def write_secrets(self, path: str) -> None:
        Path(path).write_text(json.dumps(self._secrets, indent=2), encoding="utf-8")

    def control(self, vendor: str) -> dict[str, Any]:
        """A stand-in's control view: state, request count, requests inside throttle windows, faults."""
        response = requests.get(f"{self.urls[vendor]}/__sandbox__/state", timeout=60,
                                verify=self.ca_path if self.urls[vendor].startswith("https") else True)
        response.raise_for_status()
        return response.json()

    def state(self, vendor: str) -> dict[str, Any]:
        return self.control(vendor)["state"]


VENDORS = ("snapchat", "braze", "omnisend", "campaign_monitor")
