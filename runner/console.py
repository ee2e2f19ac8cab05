"""What a person sees while local runs go: a progress line per run, and a summary table."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from shared.state import RUNS_CONTAINER

__all__ = ["Progress", "summary_table"]


class _Run:
    def __init__(self, label: str):
        self.label = label
        self.chunks = self.chunks_done = self.rows = self.rows_done = 0
        self.delivered = self.rejected = self.skipped = 0
        self.planned = False  # the plan has read the whole segment: its chunks and rows are all known
        self.finished = False
        self.export = self.run_id = None  # known once the plan's first part is
        self.polled: dict[str, int] = {}  # counts of the run's status, chunks still sending included


class Progress:
    """Live progress of one or more local runs: redrawn lines on a terminal, periodic lines in a log.

    `track(label)` returns the hook to give a LocalRunner as `on_result`. Activities tell
    of chunks that ended; with `poll` (export, run id -> the run's status, as
    `shared.engine.progress` gives it) the counts also move while a chunk sends: a chunk
    of a slow vendor can send for minutes.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 24,
                 poll: Callable[[str, str], dict[str, Any] | None] | None = None, poll_s: float = 2.0):
        self._stream = stream or sys.stderr
        self._width = width
        self._lock = threading.Lock()
        self._runs: list[_Run] = []
        self._started = time.monotonic()
        self._drawn = 0
        self._last = 0.0
        self._stopped = threading.Event()
        if poll is not None:
            threading.Thread(target=self._poll, args=(poll, poll_s), name="progress-poll", daemon=True).start()

    def _poll(self, poll: Callable[[str, str], dict[str, Any] | None], every_s: float) -> None:
        while not self._stopped.wait(every_s):
            with self._lock:
                running = [run for run in self._runs if run.run_id and not run.finished]
            for run in running:
                try:
                    status = poll(run.export, run.run_id) or {}
                except Exception:  # noqa: BLE001 - a status read that fails shows nothing new, the run goes on
                    continue
                with self._lock:
                    run.polled = {key: status[key] for key in ("rows_done", "delivered", "rejected", "skipped")
                                  if isinstance(status.get(key), int)}
            with self._lock:
                if running:
                    self._draw(final=False)

    def track(self, label: str, say_run_id: bool = False):
        """The hook for one run; `say_run_id`: a line with its run id as soon as it is known
        (a `cli.py run`, which a person may have to resume)."""
        run = _Run(label)
        with self._lock:
            self._runs.append(run)

        def on_result(function: str, task: Any, result: Any) -> None:
            if not isinstance(result, dict):
                return
            with self._lock:
                if function in ("plan_run", "plan_next_part"):  # the plan so far, its parts read
                    run.chunks, run.rows = result.get("chunks", 0), result.get("rows", 0)
                    run.planned = result.get("complete", True)
                    if say_run_id and run.run_id is None and result.get("run_id"):  # a run killed can be resumed
                        self._announce(f"{label}: run {result['run_id']} (after an interruption, continue it "
                                       f"with --resume {result['run_id']})")
                    run.export, run.run_id = result.get("export"), result.get("run_id")
                elif function == "export_chunk":
                    run.chunks_done += 1
                    run.rows_done += result.get("rows", 0)
                    run.delivered += result.get("delivered", 0)
                    run.rejected += result.get("rejected", 0)
                    run.skipped += result.get("skipped", 0)
                elif function == "finish_run":
                    run.finished = True
                self._draw(final=False)

        return on_result

    def close(self) -> None:
        self._stopped.set()
        with self._lock:
            self._draw(final=True)

    def _announce(self, text: str) -> None:
        """A line of its own above the progress lines, which are drawn again below it."""
        if self._stream.isatty() and self._drawn:
            self._stream.write(f"\x1b[{self._drawn}F\x1b[J")  # up to the progress lines, cleared
            self._drawn = 0
        self._stream.write(text + "\n")
        self._stream.flush()
        self._last = 0.0

    def _line(self, run: _Run, label_width: int, elapsed: float) -> str:
        # The ended chunks' counts, or the polled status where it is ahead (it counts the
        # batches confirmed to chunks still sending).
        rows_done, delivered, rejected, skipped = (max(getattr(run, key), run.polled.get(key, 0))
                                                   for key in ("rows_done", "delivered", "rejected", "skipped"))
        share = rows_done / run.rows if run.rows else (1.0 if run.finished else 0.0)
        filled = int(min(share, 1.0) * self._width)
        bar = "#" * filled + "." * (self._width - filled)
        more = "" if run.planned or run.finished else "+"  # the plan is still reading: more to come
        return (f"{run.label:<{label_width}} [{bar}] {run.chunks_done}/{run.chunks}{more} chunks  "
                f"{rows_done:,}/{run.rows:,}{more} rows  delivered {delivered:,}  "
                f"rejected {rejected:,}  skipped {skipped:,}  {elapsed:5.1f}s")

    def _draw(self, final: bool) -> None:
        now = time.monotonic()
        interactive = self._stream.isatty()
        if not final and now - self._last < (0.1 if interactive else 2.0):
            return
        self._last = now
        label_width = max((len(run.label) for run in self._runs), default=0)
        lines = [self._line(run, label_width, now - self._started) for run in self._runs]
        if interactive:
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            self._stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
            self._drawn = len(lines)
        else:
            self._stream.write("".join(line + "\n" for line in lines))
        self._stream.flush()


def summary_table(reports: list[dict[str, Any]]) -> str:
    """One row per run: status and counts; then the grouped reasons of each run."""
    headers = ("export", "destination", "status", "input", "delivered", "rejected", "skipped", "requests", "seconds")
    rows = []
    for report in reports:
        destination = report.get("destination") or {}
        rows.append((report["export"], destination.get("type") or "-", report["status"],
                     f"{destination.get('input_rows', 0):,}", f"{destination.get('delivered', 0):,}",
                     f"{destination.get('rejected', 0):,}", f"{destination.get('skipped', 0):,}",
                     f"{(destination.get('requests') or {}).get('requests', 0):,}",
                     f"{destination.get('duration_s', 0):.1f}"))
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    numeric = set(range(3, len(headers)))

    def line(cells: tuple) -> str:
        return "  ".join(str(cell).rjust(w) if i in numeric else str(cell).ljust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths, strict=True)))

    out = [line(headers), line(tuple("-" * w for w in widths))] + [line(row) for row in rows]
    for report in reports:
        destination = report.get("destination") or {}
        details = []
        if report.get("error"):
            details.append(f"  error: {report['error']}")
        for kind in ("rejected", "skipped"):
            for reason, count in ((destination.get("reasons") or {}).get(kind) or {}).items():
                details.append(f"  {kind:<8} {count:>9,}  {reason}")
        for warning in destination.get("warnings") or []:
            details.append(f"  warning: {warning}")
        if destination.get("rejected_rows_file"):
            details.append(f"  rejected rows: {RUNS_CONTAINER}/{destination['rejected_rows_file']}")
        if details:
            out += ["", f"{report['export']} (run {report['run_id']}):"] + details
    return "\n".join(out)
