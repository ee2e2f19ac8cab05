"""Storage writes done in the background by the plan: in order, bounded, and never failing silently;
a blob written in parts reads back whole, compressed or not (in one request when it fits a block);
compressed batches read back in bounded pieces; large freed buffers returned to the system."""

import os
import threading
import time
from pathlib import Path

import pytest

from shared.memory import fewer_malloc_arenas, return_large_buffers
from shared.state import ITEMS_COMPRESSION, BackgroundWrites, BlobWriter, compression_of, decompressed

ROOT = Path(__file__).resolve().parents[2]


def test_writes_run_in_the_order_submitted_and_all_finish_by_the_end_of_the_block():
    done = []
    with BackgroundWrites() as writes:
        for index in range(20):
            # Earlier writes take longer: any two running side by side would end out of order.
            writes.submit(lambda i: (time.sleep((20 - i) * 0.002), done.append(i)), index)
    assert done == list(range(20))


def test_a_failed_write_is_raised_at_the_end_of_the_block():
    with pytest.raises(OSError, match="disk on fire"), BackgroundWrites() as writes:
        writes.submit(_fail)


def test_a_failed_write_is_raised_by_the_next_submit_and_later_writes_do_not_run():
    later = []
    with pytest.raises(OSError, match="disk on fire"), BackgroundWrites() as writes:
        writes.submit(_fail)
        time.sleep(0.2)
        writes.submit(later.append, "written after a failure")
    assert later == []


def test_writes_submitted_before_the_caller_failed_are_still_done():
    """A failing plan part keeps the chunks it closed: their files must be written."""
    done = []
    with pytest.raises(ValueError, match="a late row is malformed"), BackgroundWrites() as writes:
        for index in range(3):
            writes.submit(lambda i: (time.sleep(0.05), done.append(i)), index)
        raise ValueError("a late row is malformed")
    assert done == [0, 1, 2]


def test_a_caller_too_far_ahead_waits_for_the_pending_writes():
    release, pending = threading.Event(), []
    with BackgroundWrites(pending=2) as writes:
        writes.submit(release.wait)
        try:
            writes.submit(pending.append, 1)
            waiting = threading.Thread(target=writes.submit, args=(pending.append, 2))
            waiting.start()
            time.sleep(0.2)
            assert waiting.is_alive()  # a third write waits while two are pending
        finally:  # else a failed assertion would leave the block waiting for the first write for ever
            release.set()
        waiting.join(5)
    assert pending == [1, 2]


def test_a_blob_written_in_many_parts_reads_back_whole_in_several_blocks(storage, unique):
    # Hex compresses ~2x: 4 MB of it crosses the 1 MB hand-over several times and, with
    # 256 KB blocks, stages several blocks.
    import zstandard

    parts = [os.urandom(512).hex() + "\n" for _ in range(4_000)]
    blob = storage.container("export-runs").get_blob_client(f"{unique}/written.items")
    with BackgroundWrites() as writes:
        writer = BlobWriter(blob, block_bytes=256 * 1024, writes=writes)
        for start in range(0, len(parts), 7):
            writer.write(parts[start:start + 7])
        writer.close()
    stored = blob.download_blob().readall()
    assert b"".join(decompressed([stored], ITEMS_COMPRESSION)) == "".join(parts).encode()
    assert len(blob.get_block_list()[0]) > 3
    # A reader holds a window's worth per stream: a sending worker holds 16 streams.
    assert zstandard.get_frame_parameters(stored).window_size <= 128 * 1024


def test_a_blob_that_fits_one_block_is_uploaded_whole_in_one_request(storage, unique):
    blob = storage.container("export-runs").get_blob_client(f"{unique}/small.items")
    calls = []
    for name in ("upload_blob", "stage_block", "commit_block_list"):
        method = getattr(blob, name)
        setattr(blob, name, lambda *args, _method=method, _name=name, **kwargs: (calls.append(_name),
                                                                                 _method(*args, **kwargs)))
    with BackgroundWrites() as writes:
        writer = BlobWriter(blob, writes=writes)
        writer.write(["a batch\n", "another\n"])
        writer.close()
    stored = blob.download_blob().readall()
    assert b"".join(decompressed([stored], ITEMS_COMPRESSION)) == b"a batch\nanother\n"
    assert calls == ["upload_blob"]


def _fail() -> None:
    raise OSError("disk on fire")


@pytest.mark.parametrize("compression", ["zstd", "zlib"])
def test_a_compressed_stream_is_read_back_in_bounded_pieces_whatever_its_download_chunks(compression):
    import zlib

    import zstandard

    original = b"".join(b'{"EmailAddress":"p%d@example.com","Name":"P"}\n' % i for i in range(200_000))
    compress = zstandard.ZstdCompressor(level=1).compress if compression == "zstd" else zlib.compress
    stored = compress(original)
    chunks = [stored[i:i + 100_000] for i in range(0, len(stored), 100_000)]
    pieces = list(decompressed(iter(chunks), compression, piece_bytes=1 << 20))
    assert b"".join(pieces) == original
    assert max(len(piece) for piece in pieces) <= 1 << 20  # tens of times the stored size never lands at once


def test_chunk_entries_say_how_their_items_are_stored_and_plans_made_before_zstd_still_read():
    assert compression_of({"items_compression": "zstd"}) == "zstd"
    assert compression_of({"items_compression": None}) is None  # Snapchat's, in plans made before they were compressed
    assert compression_of({"items_compressed": True}) == "zlib"
    assert compression_of({"items_compressed": False}) is None
    with pytest.raises(ValueError, match="unknown compression"):
        list(decompressed(iter([b"x"]), "brotli"))


def test_large_freed_buffers_are_returned_to_the_system_on_glibc():
    """Once a 1 MB block was freed, glibc served later ones from its heap, which keeps a
    freed middle: a hundred freed megabytes stayed resident (0 MB given back below, with
    glibc's default); with the threshold fixed, each goes back to the system as it is freed."""
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        assert return_large_buffers() is False and fewer_malloc_arenas() is False  # elsewhere they do nothing
        return
    assert fewer_malloc_arenas() is True
    script = """
import sys
from shared.memory import return_large_buffers
if sys.argv[1] == "fixed":
    assert return_large_buffers()
def rss(): return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
first = bytearray(1 << 20)
del first  # glibc raises its mmap threshold past this size when such a block is freed
buffers, small = [], []
for _ in range(100):
    buffers.append(bytearray(1 << 20))
    small.append(bytearray(1000))  # something small lives on after each
before = rss()
del buffers
print(before - rss())
"""
    given_back = {mode: float(subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True,
                                             check=True, cwd=str(ROOT)).stdout)
                  for mode in ("fixed", "default")}
    assert given_back["fixed"] > 90 and given_back["default"] < 20, given_back  # MB


def test_memory_freed_among_live_objects_goes_back_to_the_system_when_a_plan_part_ends():
    """What a plan part frees sits between objects that live on: glibc keeps those pages
    until `return_freed_memory` (called at the end of each part) gives them back."""
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    script = """
from shared.memory import fewer_malloc_arenas, return_freed_memory, return_large_buffers
return_large_buffers(); fewer_malloc_arenas()  # as the worker sets them up
def rss(): return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
blocks = [bytes(2000) for _ in range(40_000)]  # 80 MB of rows' worth of small allocations
kept = blocks[::50]  # one lives on every 100 KB: the heap cannot shrink from its top
del blocks
before = rss(); returned = return_freed_memory(); print(returned, before - rss())
"""
    answer = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            cwd=str(ROOT)).stdout.split()
    assert answer[0] == "True" and float(answer[1]) > 50  # MB given back


def test_the_cycle_collector_runs_less_often_and_skips_what_was_imported():
    import gc

    from shared.memory import COLLECT_EVERY, collect_cycles_less_often

    before = gc.get_threshold()
    gc.unfreeze()  # importing function_app (other tests) already did it: start from CPython's defaults
    gc.set_threshold(700, 10, 10)
    try:
        collect_cycles_less_often()
        assert gc.get_threshold() == COLLECT_EVERY
        assert gc.get_freeze_count() > 0  # the modules imported so far
        # Cycles are still collected, only less often: a forced pass finds this one.
        cycle: list = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.set_threshold(*before)


@pytest.mark.parametrize("variable", [None, "HTTPS_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_storage_requests_follow_the_proxy_and_ca_bundle_variables(monkeypatch, variable):
    from shared.state.storage import _PROXY_VARIABLES, _client_options

    for name in (*_PROXY_VARIABLES, "NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    if variable:
        monkeypatch.setenv(variable, "http://proxy.internal:3128" if "PROXY" in variable else "/etc/corporate-ca.pem")
    transport = _client_options()["transport"]
    # requests' per-call look-ups (a tenth of a small blob call's CPU) only where a proxy needs them;
    # a CA bundle from the environment is still the one TLS verifies against.
    assert transport.session.trust_env is (variable == "HTTPS_PROXY")
    expected_verify = "/etc/corporate-ca.pem" if variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") else True
    assert transport.connection_config.verify == expected_verify


def test_a_blob_not_found_leaves_nothing_for_the_cycle_collector(storage, unique):
    import gc
    import weakref

    from shared.state import RunStore

    runs = RunStore(storage.container("export-runs"))

    class Batch:  # stands for a chunk's last prepared batch, megabytes for Snapchat
        pass

    def chunk_activity():
        batch = Batch()
        assert runs.checkpoint(unique, "run", 0) is None and runs.progress(unique, "run", 0) == []
        return weakref.ref(batch)

    gc.disable()
    try:
        # The SDK's errors are cycles through the frames that raised them, up to the caller's:
        # unbroken, the batch would live on until the collector's next pass.
        assert chunk_activity()() is None
    finally:
        gc.enable()


def test_a_chunks_state_is_its_checkpoint_else_its_progress_records_else_nothing(storage, unique):
    from shared.state import RunStore

    runs = RunStore(storage.container("export-runs"))
    runs.items_writer(unique, "run", 0).close()  # its other files are listed too, and ignored
    assert runs.chunk_state(unique, "run", 0) == (None, [])
    runs.append_progress(unique, "run", 0, {"through_row": 75})
    runs.append_progress(unique, "run", 0, {"through_row": 150})
    assert runs.chunk_state(unique, "run", 0) == (None, [{"through_row": 75}, {"through_row": 150}])
    runs.write_checkpoint(unique, "run", 0, {"chunk": 0, "delivered": 150})
    assert runs.chunk_state(unique, "run", 0) == ({"chunk": 0, "delivered": 150}, [])
    runs.append_progress(unique, "run", 10, {"through_row": 9})
    assert runs.chunk_state(unique, "run", 1) == (None, [])  # chunk 10's files are not chunk 1's
