"""The stand-ins in processes of their own (the benchmark's): a start that fails leaves none running."""

from types import SimpleNamespace

import pytest

import sandbox.remote as remote
from sandbox.remote import RemoteSandbox


def test_a_start_that_fails_after_the_processes_started_stops_them(monkeypatch):
    started = []
    popen = remote.subprocess.Popen

    def recording_popen(*args, **kwargs):
        started.append(popen(*args, **kwargs))
        return started[-1]

    def unreadable(_text):
        raise ValueError("config unreadable")

    monkeypatch.setattr(remote.subprocess, "Popen", recording_popen)
    monkeypatch.setattr(remote, "json", SimpleNamespace(loads=unreadable))  # each process ready, its config unreadable
    with pytest.raises(ValueError, match="config unreadable"):
        RemoteSandbox().start()
    assert len(started) == 4
    assert all(process.poll() is not None for process in started)
