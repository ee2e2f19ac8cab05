"""Stopping the helper processes the stand-ins start (Azurite, a sandbox in another process)."""

from __future__ import annotations

import subprocess

__all__ = ["stop_process"]


def stop_process(process: subprocess.Popen | None, grace_s: float = 10.0) -> None:
    """Ask a child process to end (SIGTERM); kill it if it has not within `grace_s`."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
