"""The benchmark's memory figures: a measured process's peak is its own, not its parent's."""

import subprocess
import sys

from bench.procfs import peak_rss_mb, rss_mb


def test_a_small_process_started_by_a_large_one_peaks_at_its_own_size():
    ballast = bytearray(200 * 1024 * 1024)  # this process touches 200 MB before it starts the child
    for page in range(0, len(ballast), 4096):
        ballast[page] = 1
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        del ballast
        now = rss_mb(child.pid)
        peak = peak_rss_mb(child.pid)  # read after: the high-water mark is at least what was resident then
        # The rusage a parent waits for would say >= 200 MB here (Linux keeps the spawning
        # process's peak across exec); the child's own high-water mark is an interpreter's.
        assert 0 < now <= peak < 100
    finally:
        child.communicate(b"")
    assert peak_rss_mb(child.pid) == 0.0  # gone: nothing to read
