"""Telling a process of this machine that no longer runs: what a killed run leaves behind
(a held export, a share of a rate limit) is given up at once instead of when it expires."""

from __future__ import annotations

import os
import socket

__all__ = ["gone_from_here", "this_process"]


def this_process() -> dict[str, str]:
    """This machine's name and this process's id, as `gone_from_here` reads them back."""
    return {"host": socket.gethostname(), "pid": str(os.getpid())}


def gone_from_here(host: object, pid: object) -> bool:
    """True for a process of this machine (`host`) that is not running; False for one that
    runs, one of another machine (nothing can be told of it from here) or a pid unreadable."""
    if host != socket.gethostname():
        return False
    try:
        number = int(str(pid))
    except ValueError:
        return False
    if number <= 0 or number == os.getpid():
        return False
    try:
        os.kill(number, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process, running
        return False
    return False
