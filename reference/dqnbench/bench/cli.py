"""`dqnbench bench run|store|compare|ab|calibrate`: the benchmark suite's command line (docs/benchmarks.md).

* `run`: the benchmark suite, timed as the stored history is (passes pooled per benchmark), into a JSON file.
* `store`: add such a file to the history (a compact summary, tracked; its raw rounds beside it, ignored by git).
* `compare`: the newest stored run of this machine against the previous one, or a history's change points.
* `ab`: two revisions timed interleaved, a verdict per benchmark: the regression gate.
* `calibrate`: how often `ab` flags unchanged code, and how often it catches a known slow-down.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from dqnbench.bench import ab, calibrate, compare, history

AB_DIR = Path("reports/ab")
"""Where `ab` keeps its results, per machine: beside the history, not in it (its readers expect runs only)."""
RUN_OPTIONS = (
    "-p", "no:cacheprovider", "--benchmark-save-data", "--passes=10", "--benchmark-max-time=0.3",
    "--benchmark-min-rounds=5", "--benchmark-min-time=0.01", "--benchmark-disable-gc",
)  # fmt: skip
"""How a stored run is timed: each benchmark in 10 passes of 0.3 s and at least 5 rounds, pooled, rounds of at least
10 ms (a sub-millisecond call repeats within a round), no garbage collection inside rounds."""


def _run(args: argparse.Namespace) -> int:
    command = [sys.executable, "-m", "pytest", "benchmarks", *RUN_OPTIONS, f"--benchmark-json={args.json}"]
    return subprocess.call([*command, *args.pytest_args])


def _store(args: argparse.Namespace) -> int:
    return history.store_files(args.files, args.dir)


def _thresholds(args: argparse.Namespace) -> Any:
    path = args.thresholds or (compare.DEFAULT_THRESHOLDS_FILE if compare.DEFAULT_THRESHOLDS_FILE.is_file() else None)
    return compare.load_thresholds(path, section=compare.AB_SECTION) if path else compare.Thresholds(default=0.05)


def _ab(args: argparse.Namespace) -> int:
    try:
        options = ab.Options(
            keyword=args.keyword,
            device=args.device,
            threads=args.threads,
            passes=args.passes,
            pass_seconds=args.pass_seconds,
            injections=tuple(ab.parse_injection(text) for text in args.inject_slowdown),
            timer=args.timer,
        )
        thresholds = _thresholds(args)
        out = args.out or AB_DIR / _machine_id()
        status = ab.run_ab(Path.cwd(), (args.baseline, args.candidate), options, thresholds, out)
        return 0 if args.report_only else status
    except (ab.ABError, ValueError, history.BenchFileError) as error:
        print(f"dqnbench bench ab: error: {error}", file=sys.stderr)
        return 2


def _machine_id() -> str:
    from dqnbench.bench.facts import this_machine_id

    return this_machine_id()


def _calibrate(args: argparse.Namespace) -> int:
    try:
        return calibrate.run(args, _thresholds(args))
    except (ab.ABError, ValueError, history.BenchFileError) as error:
        print(f"dqnbench bench calibrate: error: {error}", file=sys.stderr)
        return 2


def _add_ab_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("baseline", metavar="BASELINE", help="a git revision (commit, branch, tag, HEAD~1)")
    parser.add_argument(
        "candidate",
        metavar="CANDIDATE",
        nargs="?",
        default=ab.WORKTREE,
        help=f"a git revision, or `{ab.WORKTREE}` (default): the working tree as it is, uncommitted changes included",
    )
    parser.add_argument("-k", dest="keyword", help="pytest -k expression selecting benchmarks, as for the suite")
    parser.add_argument(
        "--device", help="cpu, cuda or cpu,cuda as for the suite (default: both, CUDA skipped when absent)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on both sides (default 1)")
    parser.add_argument(
        "--passes",
        type=int,
        default=ab.DEFAULT_PASSES,
        help=f"paired passes per benchmark (default {ab.DEFAULT_PASSES}; at least 6)",
    )
    parser.add_argument(
        "--pass-seconds",
        type=float,
        default=ab.DEFAULT_PASS_SECONDS,
        help=f"seconds each side times a benchmark per pass (default {ab.DEFAULT_PASS_SECONDS}; at least 2 rounds)",
    )
    parser.add_argument(
        "--timer",
        choices=ab.TIMERS,
        default="auto",
        help="auto (default): each worker's CPU time for CPU benchmarks (a busy host barely moves it), elapsed "
        "time for CUDA ones; wall: elapsed time everywhere (sees waits, but also every other process on the host)",
    )
    parser.add_argument(
        "--inject-slowdown",
        action="append",
        default=[],
        metavar="PATTERN=FACTOR",
        help="for calibrating the gate only: the candidate's benchmarks whose node id contains PATTERN (or "
        "fnmatch-matches it) run FACTOR times slower, e.g. test_optimize=1.10 (each timed round is followed by a "
        "spin of (FACTOR - 1) times its own length, so the slow-down scales with the call); repeatable",
    )


def _add_threshold_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--thresholds",
        type=Path,
        default=None,
        help=f"thresholds file whose [ab] table gives the minimum effects (default {compare.DEFAULT_THRESHOLDS_FILE})",
    )


def _documented(commands: Any, name: str, doc: str | None, summary: str) -> argparse.ArgumentParser:
    """A sub-command whose --help shows its module's docstring as written."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    return parser


def register(subparsers: Any) -> None:
    bench = subparsers.add_parser("bench", help="benchmarks: run, store, compare, A/B gate", description=__doc__)
    bench.formatter_class = argparse.RawDescriptionHelpFormatter
    commands = bench.add_subparsers(dest="bench_command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the benchmark suite into a JSON file, timed as the history is")
    run.add_argument("--json", type=Path, default=Path("bench.json"), help="output file (default bench.json)")
    run.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG", help="more pytest arguments, after --")
    run.set_defaults(run=_run)

    store = commands.add_parser("store", help="add runs to the history (summary tracked, raw rounds beside it)")
    store.add_argument("files", nargs="+", type=Path, metavar="FILE")
    store.add_argument("--dir", type=Path, default=history.DEFAULT_DIR, help=f"default {history.DEFAULT_DIR}")
    store.set_defaults(run=_store)

    comparing = _documented(commands, "compare", compare.__doc__, "stored runs compared (exit 1 on a regression)")
    compare.add_arguments(comparing)
    comparing.set_defaults(run=compare.run)

    gate = _documented(commands, "ab", ab.__doc__, "two revisions timed interleaved; exit 1 on a regression")
    _add_ab_arguments(gate)
    _add_threshold_argument(gate)
    gate.add_argument("--out", type=Path, help=f"results folder (default {AB_DIR}/<machine>)")
    gate.add_argument(
        "--report-only",
        action="store_true",
        help="exit 0 whatever the verdicts (a revision that does not build or run still exits 2): for smoke runs "
        "that check the gate works, not what it finds",
    )
    gate.set_defaults(run=_ab)

    calibrating = _documented(commands, "calibrate", calibrate.__doc__, "false alarms and power of `ab` here")
    calibrate.add_arguments(calibrating)
    _add_threshold_argument(calibrating)
    calibrating.set_defaults(run=_calibrate)
