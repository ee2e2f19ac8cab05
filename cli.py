"""Command line of the segment exporter: run exports locally, validate definitions, demo, sandbox.

    python cli.py run --config exports.json --export NAME [--report report.json] [--resume RUN_ID]
    python cli.py validate --config exports.json
    python cli.py publish --config exports.json      store the definitions in the exports container
    python cli.py upload FILE --segment PATH         put a segment file in the segments container
    python cli.py report --export NAME [--run RUN_ID] [--json]   a run's report (the latest), or its progress
    python cli.py sandbox [--write-config DIR] [--faults JSON]   the four vendor stand-ins, until Ctrl-C
    python cli.py demo [--profiles N]                the whole product on this machine (make demo)

Settings come from the environment, completed by `local.settings.json` (its "Values", as
Functions Core Tools reads them) when that file exists: AzureWebJobsStorage, KEY_VAULT_URL
or LOCAL_SECRETS_FILE, ALLOW_LOCAL_ENDPOINTS.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent


def load_local_settings(path: Path = ROOT / "local.settings.json") -> None:
    """Export local.settings.json's Values to the environment, never overriding what is set."""
    if not path.exists():
        return
    values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
    for key, value in values.items():
        os.environ.setdefault(key, str(value))


def _definitions(path: str, stored: Callable[[str], dict[str, Any] | None] | None = None) -> tuple[dict[str, Any], Any]:
    """The file's document and its definitions, validated; with `stored` (a connection's
    stored document by name), its exports may name connections stored before."""
    from destinations import SPECS
    from shared.config import DefinitionError, Problem, parse_definitions, with_stored_connections
    from shared.settings import AppSettings

    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise DefinitionError([Problem("definitions", "(file)", f"cannot be read: {error.strerror}")]) from None
    except UnicodeDecodeError:
        raise DefinitionError([Problem("definitions", "(file)", "is not UTF-8 text")]) from None
    except json.JSONDecodeError as error:
        raise DefinitionError([Problem("definitions", "(file)", f"is not JSON: {error.msg} at line {error.lineno} "
                                                                 f"column {error.colno}")]) from None
    allow_local = AppSettings.from_env().allow_local_endpoints
    checked = with_stored_connections(document, stored) if stored is not None else document
    return document, parse_definitions(checked, SPECS, allow_local=allow_local)


def _print_problems(path: str, error: Any) -> None:
    """Every problem of an invalid definitions file (a `DefinitionError`), one a line."""
    print(f"{path}: {len(error.problems)} problem(s):", file=sys.stderr)
    for problem in error.problems:
        print(f"  - {problem}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    from shared.config import DefinitionError

    try:
        _, definitions = _definitions(args.config)
    except DefinitionError as error:
        _print_problems(args.config, error)
        return 1
    for connection in definitions.connections.values():
        if connection.consent is None:
            print(f'warning: connection "{connection.name}" has no recorded privacy consent; '
                  "its exports cannot run until it has")
    print(f"{args.config}: valid ({len(definitions.connections)} connection(s), {len(definitions.exports)} export(s))")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from runner.workers import local_workers

    with local_workers() as workers:  # first: the worker imports the app while this process does
        return _run(args, workers)


def _run(args: argparse.Namespace, workers) -> int:
    from runner.console import Progress, summary_table
    from runner.holds import RunInProgress
    from runner.runs import run_export, run_status
    from shared.config import DefinitionError
    from shared.engine import Services
    from shared.engine.starts import UnknownRun
    from shared.state import RUNS_CONTAINER, RunStore

    try:
        document, definitions = _definitions(args.config)
        export = definitions.export(args.export)
    except DefinitionError as error:
        _print_problems(args.config, error)
        return 2
    except KeyError as error:
        print(error.args[0], file=sys.stderr)
        return 2
    connection = definitions.connections[export.connection]
    Services.current().storage.ensure_containers()
    progress = Progress(poll=run_status)
    started = time.monotonic()
    try:
        report = run_export(dict(export.document), dict(connection.document),
                            on_activity=progress.track(export.name, say_run_id=True), resume=args.resume,
                            workers=workers)
    except (UnknownRun, RunInProgress) as error:
        progress.close()
        print(error, file=sys.stderr)
        return 2
    except Exception as error:  # storage unreachable and the like: say what, without a traceback
        progress.close()
        print(f"run of {export.name} could not finish: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    progress.close()
    print(summary_table([report]))
    print(f"\nrun {report['run_id']}: {report['status']} in {time.monotonic() - started:.1f}s; "
          f"report in {RUNS_CONTAINER}/{RunStore.report_path(report['export'], report['run_id'])}")
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0 if report["status"] == "succeeded" else 1


def cmd_check(args: argparse.Namespace) -> int:
    """What a run of the export would stop at, found without sending anything."""
    from azure.core.exceptions import AzureError

    from shared.config import DefinitionError
    from shared.engine import Services, check_export

    services = Services.current()
    try:
        if args.config:  # the file's export; its connection from the file, else the one stored
            document, _ = _definitions(args.config, stored=services.definitions.connection_document)
            export = next((e for e in document.get("exports", []) if e.get("name") == args.export), None)
            connections = {c.get("name"): c for c in document.get("connections", [])}
        else:
            export, connections = services.definitions.export_document(args.export), {}
        if export is None:
            print(f'unknown export "{args.export}"' + (f" in {args.config}" if args.config else " in storage"),
                  file=sys.stderr)
            return 2
        name = str(export.get("connection"))
        result = check_export(export, connections.get(name) or services.definitions.connection_document(name),
                              services)
    except DefinitionError as error:
        _print_problems(args.config, error)
        return 2
    except AzureError as error:
        print(f"check of {args.export}: storage could not be read: {error.message}", file=sys.stderr)
        return 1
    for check in result["checks"]:
        print(f"{'ok' if check['ok'] else 'PROBLEM':<8} {check['check']}: {check['detail']}")
    print(f"\n{args.export}: " + ("ready to run" if result["ok"] else "a run would stop at the problems above"))
    return 0 if result["ok"] else 1


def cmd_publish(args: argparse.Namespace) -> int:
    from azure.core.exceptions import AzureError

    from destinations import SPECS
    from runner.holds import local_user
    from shared.config import DefinitionError
    from shared.engine import Services

    services = Services.current()
    store = services.storage.definitions(SPECS, services.settings.allow_local_endpoints)
    try:  # the whole file is checked before anything is stored: none or all of it
        # (storage is read only for connections its exports name and it does not define)
        document, _ = _definitions(args.config, stored=store.connection_document)
    except DefinitionError as error:
        _print_problems(args.config, error)
        return 1
    except AzureError as error:
        print(f"{args.config}: its exports name connections it does not define, and the stored ones could not be "
              f"read: {error.message}", file=sys.stderr)
        return 1
    services.storage.ensure_containers()
    publisher = f"{local_user()} (cli.py publish)"
    for connection in document.get("connections", []):
        store.put_connection(connection, recorded_by=publisher)
    for export in document.get("exports", []):
        store.put_export(export)
    print(f"stored {len(document.get('connections', []))} connection(s) and {len(document.get('exports', []))} "
          "export(s) in the exports container")
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    from azure.core.exceptions import AzureError

    from shared.config import segment_path_problem
    from shared.engine import Services

    source = Path(args.file)
    if not source.is_file():
        print(f"upload: {source} is not a file", file=sys.stderr)
        return 2
    if problem := segment_path_problem(args.segment):  # what an export's `segments` could not name
        print(f"upload: --segment {problem}", file=sys.stderr)
        return 2
    storage = Services.current().storage
    try:
        storage.ensure_containers()
        with source.open("rb") as data:  # streamed: a segment can be gigabytes
            storage.container("segments").upload_blob(args.segment, data, overwrite=True, max_concurrency=4)
    except AzureError as error:
        print(f"upload: could not store segments/{args.segment}: {error.message}", file=sys.stderr)
        return 1
    print(f"uploaded {source} ({source.stat().st_size:,} bytes) to segments/{args.segment}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from runner.console import summary_table
    from shared.engine import Services, progress
    from shared.engine.starts import looks_like_run_id, run_not_found
    from shared.state import RUNS_CONTAINER, RunStore

    services = Services.current()
    run_ids = services.runs.run_ids(args.export)
    run_id = args.run or (run_ids[0] if run_ids else None)
    if run_id is None:
        print(f'export "{args.export}" has no runs yet', file=sys.stderr)
        return 2
    found = progress(args.export, run_id, services) if looks_like_run_id(run_id) else None
    if found is None:
        print(f'export "{args.export}" has no run "{run_id}"' + run_not_found(args.export, run_id, services),
              file=sys.stderr)
        return 2
    if args.json or found["status"] == "running":  # a run going on: its progress as the HTTP API serves it
        print(json.dumps(found, indent=2))
        still = _still_for(found.get("updated_at"))
        if found["status"] == "running" and still is not None and still > STILL_S \
                and not services.runs.held_by_local_run(args.export):
            print(f"run {run_id}: nothing written for {still / 60:.0f} min and no local run holds the export: it "
                  "may have stopped (or waits on the vendor: retries, a throttle window). Run by the Function App: "
                  "see its orchestration's status, never resume it here. A local run that was stopped goes on "
                  f"with: cli.py run --export {args.export} --resume {run_id}", file=sys.stderr)
    else:
        print(summary_table([found]))
        print(f"\nreport in {RUNS_CONTAINER}/{RunStore.report_path(args.export, run_id)}")
    return 0


# A run sending writes its progress every few seconds (PROGRESS_INTERVAL_S): this long
# without a write, it may have stopped (or waits on the vendor's retries and throttling).
STILL_S = 120.0


def _still_for(updated_at: str | None) -> float | None:
    """Seconds since `updated_at` (ISO 8601), or None."""
    from datetime import UTC, datetime

    if not updated_at:
        return None
    return (datetime.now(UTC) - datetime.fromisoformat(updated_at)).total_seconds()


def cmd_sandbox(args: argparse.Namespace) -> int:
    from sandbox.bundle import Sandbox
    from sandbox.server import Faults
    from shared.memory import collect_cycles_less_often

    try:
        faults = Faults.of(json.loads(args.faults)) if args.faults else None
    except ValueError as error:  # JSON's decode error is one too
        print(f"sandbox --faults: {error}", file=sys.stderr)
        return 2
    _stop_on_sigterm()
    collect_cycles_less_often()
    with Sandbox(rate_limited=not args.unthrottled, faults=faults, latency_s=args.latency_ms / 1000,
                 tls=args.tls) as sandbox:
        for name, stand_in in sandbox.stand_ins.items():
            print(f"{name:<17} {stand_in.url}")
        if args.write_config:
            folder = args.write_config
            sandbox.write_config(folder, tls=args.tls)
            print(f"wrote {folder}/connections.json and {folder}/local.secrets.json "
                  "(set LOCAL_SECRETS_FILE and ALLOW_LOCAL_ENDPOINTS=true to use them)")
        print("stand-ins running; Ctrl-C stops them", flush=True)
        try:
            while True:
                time.sleep(1)
                # What the stand-ins keep (every profile sent to them) is moved out of the cycle
                # collector's reach: its passes over millions of kept objects were a sixth of
                # their CPU in a million-profile run. Cyclic garbage frozen with it stays (rare here).
                gc.freeze()
        except KeyboardInterrupt:
            return 0


def _stop_on_sigterm() -> None:
    import signal

    # A parent stopping the sandbox with SIGTERM gets the same clean shutdown as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))


def cmd_demo(args: argparse.Namespace) -> int:
    from runner.demo import main

    return main(args.profiles)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="cli.py", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one export now, on this machine")
    run.add_argument("--config", required=True, help="definitions file: {connections: [...], exports: [...]}")
    run.add_argument("--export", required=True, help="name of the export to run")
    run.add_argument("--report", help="also write the run report to this file")
    run.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run; confirmed batches are not resent")
    run.set_defaults(handler=cmd_run)
    validate = commands.add_parser("validate", help="check a definitions file and list every problem")
    validate.add_argument("--config", required=True)
    validate.set_defaults(handler=cmd_validate)
    check = commands.add_parser("check", help="what a run of an export would stop at, without sending anything")
    check.add_argument("--export", required=True)
    check.add_argument("--config", help="definitions file holding the export (default: the stored export)")
    check.set_defaults(handler=cmd_check)
    publish = commands.add_parser("publish", help="validate and store definitions in the exports container")
    publish.add_argument("--config", required=True)
    publish.set_defaults(handler=cmd_publish)
    upload = commands.add_parser("upload", help="put a segment file in the segments container")
    upload.add_argument("file", help="the CSV file on this machine")
    upload.add_argument("--segment", required=True, metavar="PATH", help="its path in the container, e.g. vip/a.csv")
    upload.set_defaults(handler=cmd_upload)
    report = commands.add_parser("report", help="show a run's report (the latest by default), or its progress")
    report.add_argument("--export", required=True)
    report.add_argument("--run", metavar="RUN_ID", help="a run of the export (default: its latest)")
    report.add_argument("--json", action="store_true", help="the whole report.json")
    report.set_defaults(handler=cmd_report)
    sandbox = commands.add_parser("sandbox", help="serve the four vendor stand-ins until Ctrl-C")
    sandbox.add_argument("--write-config", metavar="DIR", help="write connections and local secrets for them")
    sandbox.add_argument("--unthrottled", action="store_true", help="do not enforce the vendors' rate limits")
    sandbox.add_argument("--faults", metavar="JSON",
                         help='injected faults, e.g. \'{"throttle": 0.1, "server_error": 0.05}\'')
    sandbox.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer")
    sandbox.add_argument("--tls", action="store_true", help="serve HTTPS (CA written to DIR/ca.pem)")
    sandbox.set_defaults(handler=cmd_sandbox)
    demo = commands.add_parser("demo", help="generate a segment and export it to all four stand-ins")
    demo.add_argument("--profiles", type=int, default=50_000)
    demo.set_defaults(handler=cmd_demo)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    load_local_settings()
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
