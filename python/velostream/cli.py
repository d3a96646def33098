"""The ``velostream`` command: ``run``, ``validate``, ``explain`` an application; ``bench``.

Exit codes: 0 success, 1 runtime failure (I/O, bad data under ``'error.strategy' =
'fail'``, a defect), 2 invalid SQL or configuration, 130 interrupted (Ctrl-C). Errors go
to stderr as ``file:line:column: message`` when the position is known, else
``file: message``; no input ever gives a Python traceback (an exception that is not a
:class:`~velostream.errors.VelostreamError` is a defect, reported on one line as an
internal error; ``VELOSTREAM_DEBUG=1`` adds its traceback). A closed standard output
(``velostream explain app.sql | head -1``) ends the command quietly with exit code 1.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

from velostream.errors import (
    CircularDependencyError,
    ConfigError,
    MissingDependencyError,
    SqlSyntaxError,
    SqlValidationError,
    VelostreamError,
)

if TYPE_CHECKING:
    from velostream.app import Application
    from velostream.runtime import RunReport

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130

_INVALID = (
    SqlSyntaxError,
    SqlValidationError,
    ConfigError,
    CircularDependencyError,
    MissingDependencyError,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="velostream", description="Streaming SQL for Kafka and Arrow."
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level on stderr (default WARNING)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    run = commands.add_parser("run", help="run an application")
    run.add_argument("file", help="the application's SQL file")
    run.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a property (overrides the WITH clauses); repeatable",
    )
    run.add_argument(
        "--until-end",
        action="store_true",
        help="make every source bounded: stop when all input is read",
    )
    run.add_argument(
        "--path",
        choices=["direct", "legacy"],
        default="direct",
        help="processing path (default direct)",
    )
    run.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help=(
            "threads running the partitions of each statement that reads Kafka "
            "(default: the number of cores)"
        ),
    )
    run.add_argument(
        "--http",
        metavar="[HOST:]PORT",
        help=(
            "serve the health and metrics API (GET /health/tables, /metrics, ...) on this "
            "address while the application runs; the host defaults to loopback"
        ),
    )

    validate = commands.add_parser("validate", help="check an application without running it")
    validate.add_argument("file", help="the application's SQL file")
    validate.add_argument(
        "--set", dest="settings", action="append", default=[], metavar="KEY=VALUE"
    )

    explain = commands.add_parser("explain", help="print the plan and the dependency waves")
    explain.add_argument("file", help="the application's SQL file")
    explain.add_argument(
        "--verbose", action="store_true", help="also print each statement's physical plan"
    )
    explain.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")

    bench = commands.add_parser(
        "bench", help="compare the direct and the legacy processing path on the same data"
    )
    bench.add_argument(
        "--records", type=int, default=1_000_000, help="records per workload (default 1M)"
    )
    bench.add_argument(
        "--legacy-records",
        type=int,
        default=None,
        help="records fed to the slow legacy path (default min(records, 20000))",
    )
    bench.add_argument(
        "--batch-size", type=int, default=10_000, help="rows per process() call (default 10K)"
    )
    bench.add_argument(
        "--workload",
        dest="workloads",
        action="append",
        default=None,
        help="run only this workload (repeatable)",
    )
    bench.add_argument("--format", choices=["table", "json"], default="table")
    return parser


def _settings(items: Sequence[str]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}", key=item)
        settings[key.strip()] = value
    return settings


def format_error(exc: BaseException, file: str) -> str:
    """Format an error for stderr: ``file:line:column: message`` when located.

    Args:
        exc: the error.
        file: the SQL file as given on the command line.

    Returns:
        One line (or a few, for long messages).
    """
    line = getattr(exc, "line", None)
    column = getattr(exc, "column", None)
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, ConfigError) and exc.key and exc.key not in message:
        message = f"{message} (key {exc.key!r})"
    kind = type(exc).__name__
    if line is not None:
        where = f"{file}:{line}:{column}" if column is not None else f"{file}:{line}"
        return f"{where}: {kind}: {message}"
    return f"{file}: {kind}: {message}"


def _load(args: argparse.Namespace) -> Application:
    from velostream.app import Application

    return Application.from_file(
        args.file,
        properties=_settings(args.settings),
        processing_path=getattr(args, "path", "direct"),
        workers=getattr(args, "workers", None),
    )


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


#: Allocations between two young-generation collections of the cyclic GC during a run.
_GC_THRESHOLD = 50_000


def _tune_gc() -> None:
    """Keep Python's cyclic GC off the data path of a run (this process is ours).

    A Kafka source creates one client ``Message`` object per record (the client's API);
    with the default thresholds they trigger a collection every 700 allocations and a
    full one, scanning every object of the process, every 100 of those: 15 % of a
    Kafka run's time (``perf``, docs/performance.md). Everything loaded so far is frozen
    out of the collections and young collections come 70 times less often; reference
    counting still frees every record as before.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_THRESHOLD, 20, 20)


def _run(args: argparse.Namespace) -> int:
    app = _load(args)
    _tune_gc()
    report: RunReport | None
    # Stop gracefully on SIGINT/SIGTERM: stop reading, drain what was read, flush the
    # sinks, commit the offsets the sinks acknowledged, close.
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    from velostream.runtime.progress import Progress

    server = None
    try:
        if args.http is not None:
            from velostream.health import parse_http_address

            host, port = parse_http_address(args.http)
            server = app.serve_health(port, host=host)
            print(f"velostream: health and metrics API on {server.url}", file=sys.stderr)
        app.start(until_end=args.until_end)
        # Live progress on a terminal (stderr), nothing otherwise.
        with Progress(app.snapshot):
            while not app.wait(0.2):
                if stop.is_set():
                    app.stop()
                    break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if server is not None:
            server.stop()
    report = app.report
    if report is None:
        print("velostream: the application ended without a report", file=sys.stderr)
        return EXIT_RUNTIME
    if report.error is not None:
        raise report.error
    _print(report.summary())
    if received and args.until_end:
        # The bounded run did not reach its end: say so, as the shell does (128 + signal).
        name = signal.Signals(received[0]).name
        print(
            f"velostream: interrupted ({name}): stopped reading, drained what was read, "
            "flushed the sinks and committed what they acknowledged",
            file=sys.stderr,
        )
        return 128 + received[0]
    return EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    import json

    from velostream.bench import format_table, run_bench

    try:
        results = run_bench(
            records=args.records,
            workloads=args.workloads,
            batch_size=args.batch_size,
            legacy_records=args.legacy_records,
        )
    except ValueError as exc:
        print(f"velostream bench: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except VelostreamError as exc:
        print(f"velostream bench: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    if args.format == "json":
        _print(json.dumps(results))
    else:
        _print(format_table(results))
    return EXIT_OK


def _print(text: str) -> None:
    """Print to stdout and flush at once, so a closed pipe is seen here, not at exit."""
    print(text)
    sys.stdout.flush()


def _command(args: argparse.Namespace) -> int:
    try:
        if args.command == "run":
            return _run(args)
        app = _load(args)
        if args.command == "explain":
            _print(app.explain(verbose=args.verbose))
        else:
            app.validate()
            _print(f"{args.file}: OK ({len(app.statements)} statement(s))")
        return EXIT_OK
    except _INVALID as exc:
        print(format_error(exc, args.file), file=sys.stderr)
        return EXIT_INVALID
    except VelostreamError as exc:
        print(format_error(exc, args.file), file=sys.stderr)
        return EXIT_RUNTIME


def _silence_stdout() -> None:
    """After a closed pipe: send what is left to /dev/null, so the exit flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # no file descriptor (a captured stream): nothing is flushed at exit


def _internal_error(exc: BaseException) -> None:
    detail = " ".join(str(exc).split()) or "(no message)"
    try:
        print(
            f"velostream: internal error: {type(exc).__name__}: {detail} (a defect of "
            "velostream: please report it; set VELOSTREAM_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        if os.environ.get("VELOSTREAM_DEBUG"):
            traceback.print_exception(exc, file=sys.stderr)
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``velostream`` command.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        The exit code: 0 success, 1 runtime failure (or a defect, reported as an internal
        error), 2 invalid SQL, configuration or arguments, 130 interrupted.
    """
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as exc:  # --help, or arguments argparse refused (it printed why)
            return exc.code if isinstance(exc.code, int) else EXIT_INVALID
        logging.basicConfig(
            level=getattr(logging, args.log_level), format="%(levelname)s %(name)s: %(message)s"
        )
        if args.command == "bench":
            return _bench(args)
        return _command(args)
    except KeyboardInterrupt:
        try:
            print("velostream: interrupted", file=sys.stderr)
        except (OSError, ValueError):
            pass
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_RUNTIME
    except Exception as exc:
        _internal_error(exc)
        return EXIT_RUNTIME
