"""The progress lines of local runs: what a person watching a run reads."""

import io
import time

from runner.console import Progress


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_a_plan_read_in_parts_counts_the_chunks_and_rows_of_every_part():
    stream = io.StringIO()  # not a terminal: a line per run at each drawing
    progress = Progress(stream, width=10)
    hook = progress.track("demo-braze")
    # The first part plans one chunk; the rest of the segment comes with the next part.
    hook("plan_run", {}, {"chunks": 1, "rows": 10_000, "complete": False})
    hook("export_chunk", {}, {"rows": 10_000, "delivered": 9_850, "rejected": 100, "skipped": 50})
    progress.close()
    assert "[##########] 1/1+ chunks  10,000/10,000+ rows" in _lines(stream)[-1]  # more to come
    hook("plan_next_part", {}, {"chunks": 9, "rows": 50_000, "complete": True})
    for _ in range(8):
        hook("export_chunk", {}, {"rows": 5_000, "delivered": 4_950, "rejected": 50, "skipped": 0})
    hook("finish_run", {}, {})
    progress.close()
    assert ("demo-braze [##########] 9/9 chunks  50,000/50,000 rows  delivered 49,450  rejected 500  skipped 50"
            in _lines(stream)[-1])


def test_the_bar_never_overflows_and_the_runs_lines_align():
    stream = io.StringIO()
    progress = Progress(stream, width=10)
    short, long = progress.track("a"), progress.track("demo-campaign-monitor")
    short("plan_run", {}, {"chunks": 1, "rows": 100, "complete": True})
    short("export_chunk", {}, {"rows": 250})  # more rows than planned: the bar stays full, no longer
    long("plan_run", {}, {"chunks": 2, "rows": 100, "complete": True})
    progress.close()
    first, second = _lines(stream)[-2:]
    assert "[##########]" in first and first.index("[") == second.index("[")
    assert second.startswith("demo-campaign-monitor [..........]")


def test_closing_with_no_run_draws_nothing():
    stream = io.StringIO()
    Progress(stream).close()
    assert stream.getvalue() == ""


def test_a_chunk_still_sending_moves_the_counts_through_the_polled_status():
    stream = io.StringIO()
    asked = []
    status = {"rows_done": 2_000, "delivered": 1_900, "rejected": 60, "skipped": 40}
    progress = Progress(stream, width=10, poll=lambda export, run_id: asked.append((export, run_id)) or status,
                        poll_s=0.01)
    hook = progress.track("demo-omnisend")
    hook("plan_run", {}, {"export": "demo-omnisend", "run_id": "r1", "chunks": 1, "rows": 10_000, "complete": True})
    deadline = time.monotonic() + 5
    while "2,000/10,000 rows" not in stream.getvalue():
        assert time.monotonic() < deadline, stream.getvalue()
        time.sleep(0.01)
    assert ("demo-omnisend", "r1") in asked
    assert "[##........] 0/1 chunks  2,000/10,000 rows  delivered 1,900  rejected 60  skipped 40" in stream.getvalue()
    hook("export_chunk", {}, {"rows": 10_000, "delivered": 9_500, "rejected": 300, "skipped": 200})
    hook("finish_run", {}, {})
    progress.close()
    assert "[##########] 1/1 chunks  10,000/10,000 rows  delivered 9,500" in _lines(stream)[-1]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_run_id_is_written_above_the_progress_lines_not_over_them():
    stream = _Terminal()
    progress = Progress(stream, width=10)
    first, second = progress.track("a", say_run_id=True), progress.track("b", say_run_id=True)
    first("plan_run", {}, {"chunks": 1, "rows": 10, "complete": True, "export": "a", "run_id": "R1"})
    second("plan_run", {}, {"chunks": 1, "rows": 10, "complete": True, "export": "b", "run_id": "R2"})
    progress.close()
    # Each announcement clears the progress lines drawn so far; they are drawn again below it.
    screen = stream.getvalue()
    assert "a: run R1 (after an interruption, continue it with --resume R1)\n" in screen
    after = screen.split("b: run R2 (after an interruption, continue it with --resume R2)\n")[1]
    assert screen.split("b: run R2")[0].endswith("\x1b[2F\x1b[J")  # up over the two lines drawn, cleared
    assert after.count("\x1b[2Ka ") >= 1 and after.count("\x1b[2Kb ") >= 1


def test_a_run_that_cannot_be_resumed_by_hand_is_not_announced():
    """The demo's runs: no --resume line for a command that takes none."""
    stream = io.StringIO()
    progress = Progress(stream, width=10)
    progress.track("demo-braze")("plan_run", {}, {"chunks": 1, "rows": 10, "complete": True, "export": "demo-braze",
                                                  "run_id": "R1"})
    progress.close()
    assert "--resume" not in stream.getvalue()
