"""`dqnbench bench calibrate`: how often the A/B gate cries wolf, and how often it catches a known slow-down.

    dqnbench bench calibrate [--conditions quiet,busy] [--out reports/calibration]

The working tree is compared with itself (both workers run the same code), in `--trials` A/B trials per
condition, spread over `--sessions` pairs of fresh worker processes (a pair's processes differ in memory
layout and placement, which a real A/B run meets too). In every trial the candidate of the three power
benchmarks (`POWER`: a sub-millisecond call, the optimisation step, the training step) is slowed down by
`--inject-slowdown`'s mechanism, by 10 % in even trials and 5 % in odd ones; every other benchmark's
comparison is a same-code one, where any verdict but `same` is a false alarm. Trials run exactly as
`dqnbench bench ab` does (same passes, same pass length, same thresholds, and a fresh pair of workers to
confirm whatever the screen flags); the tallies count final verdicts and, beside them, the screen's.

Conditions: `quiet` runs with whatever else the host is doing (recorded: the load average at every pass);
`busy` adds one process of ours spinning on one core for the whole condition. The results (every trial's
raw passes and verdicts, the load samples, and the tallies) are written as JSON to a new file per condition
in `--out`; nothing is overwritten.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dqnbench.bench.ab import (
    DEFAULT_PASS_SECONDS,
    DEFAULT_PASSES,
    SIDES,
    WORKTREE,
    Revision,
    Worker,
    benchmark_json,
    confirm_flagged,
    decisions,
    matched,
    record_pass,
    run_passes,
    timestamp,
    worker_args,
    write_new,
)
from dqnbench.bench.compare import Thresholds
from dqnbench.bench.paired import ABVerdict

POWER = (
    "test_forward[cpu-reference-b1]",
    "test_optimize[cpu-reference]",
    "test_train_step[cpu-reference]",
)
"""The benchmarks slowed down on purpose: a sub-millisecond call, the optimisation step, the training step."""
FACTORS = (1.10, 1.05)
"""The injected slow-downs, alternating from trial to trial."""
DEFAULT_KEYWORD = "cpu and not compiled and not graphed and not render and (reference or not (optimize or train_step))"
"""The calibrated CPU benchmarks: twelve of the eighteen, leaving out the compiled variant (minutes of compilation
per worker pair), screen rendering, and the fast path's optimisation and training steps (the slowest calls, whose
scales the reference's already cover), to keep a calibration within the time a shared machine affords."""
CONDITIONS = ("quiet", "busy")
SPIN = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass\n"
"""The `busy` condition's load: one core kept busy."""
DEFAULT_OUT = Path("reports/calibration")


@contextlib.contextmanager
def condition(name: str) -> Iterator[None]:
    """`busy`: one spinning process of ours for the duration (stopped by its id afterwards); `quiet`: nothing."""
    if name == "quiet":
        yield
        return
    # It spins only while its parent lives, so a calibration killed before its cleanup leaves no spinner behind.
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def trial_factor(trial: int, node: str) -> float:
    return FACTORS[trial % len(FACTORS)] if any(node.endswith(power) for power in POWER) else 1.0


def tally(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """False alarms over same-code comparisons, and detections per injected factor."""
    same_code = [b for trial in trials for b in trial["benchmarks"].values() if b["injected"] == 1.0]
    result: dict[str, Any] = {
        "same_code": {
            "comparisons": len(same_code),
            "flagged": sum(b["verdict"] != ABVerdict.SAME for b in same_code),
            "flagged_slower": sum(b["verdict"] == ABVerdict.SLOWER for b in same_code),
            "flagged_by_the_screen": sum(b["screen_verdict"] != ABVerdict.SAME for b in same_code),
        }
    }
    for factor in FACTORS:
        injected = [b for trial in trials for b in trial["benchmarks"].values() if b["injected"] == factor]
        result[f"injected_{factor:.2f}"] = {
            "injections": len(injected),
            "detected": sum(b["verdict"] == ABVerdict.SLOWER for b in injected),
            "detected_by_the_screen": sum(b["screen_verdict"] == ABVerdict.SLOWER for b in injected),
        }
    return result


def run_condition(name: str, args: argparse.Namespace, thresholds: Thresholds) -> Path:
    started = time.monotonic()
    tree = Revision(WORKTREE, None, Path.cwd())
    trials: list[dict[str, Any]] = []
    per_session = -(-args.trials // args.sessions)
    with condition(name), tempfile.TemporaryDirectory(prefix="dqnbench-calibrate-") as logs:
        for session in range(args.sessions):
            pytest_args = worker_args(tree.tree, keyword=args.keyword, device="cpu", threads=1)
            workers = {side: Worker(tree, pytest_args, Path(logs) / f"{side}-{session}.log") for side in SIDES}
            ready = matched(workers)
            try:
                for trial in range(session * per_session, min(args.trials, (session + 1) * per_session)):
                    loads: list[dict[str, Any]] = []
                    times = run_passes_for(trial, workers, ready.benchmarks, args, loads, started)
                    screen = decisions(times, ready.groups, thresholds)
                    confirmation = confirm_flagged(
                        {side: tree for side in SIDES},
                        screen,
                        ready.groups,
                        thresholds,
                        device="cpu",
                        threads=1,
                        passes=args.passes,
                        seconds=args.pass_seconds,
                        logs=Path(logs) / f"confirm-{trial}",
                        factor=functools.partial(trial_factor, trial),
                        on_pass=record_pass(loads, started),
                    )
                    trials.append({
                        "trial": trial, "session": session, "load": loads,
                        "benchmarks": {node: {**benchmark_json(node, ready.groups.get(node), times[node], screen[node],
                                                               confirmation), "injected": trial_factor(trial, node)}
                                       for node in ready.benchmarks},
                    })  # fmt: skip
                    print(f"calibrate {name}: trial {trial + 1}/{args.trials}: {tally(trials[-1:])}", flush=True)
            finally:
                for worker in workers.values():
                    worker.close()
    content = {
        "kind": "dqnbench-ab-calibration",
        "condition": name,
        "command": " ".join(["dqnbench", *sys.argv[1:]]),
        "options": {"passes": args.passes, "pass_seconds": args.pass_seconds, "keyword": args.keyword,
                    "trials": args.trials, "sessions": args.sessions, "power": list(POWER), "factors": list(FACTORS),
                    "min_effects": {"default": thresholds.default, "overrides": dict(thresholds.overrides)}},
        "wall_s": round(time.monotonic() - started, 1),
        "tally": tally(trials),
        "trials": trials,
    }  # fmt: skip
    path = write_new(args.out, f"{timestamp()}-{name}", content)
    print(f"calibrate {name}: {content['tally']} in {content['wall_s']:.0f} s; stored {path}", flush=True)
    return path


def run_passes_for(
    trial: int, workers: dict[str, Worker], benchmarks: list[str], args: argparse.Namespace,
    loads: list[dict[str, Any]], started: float,
) -> dict[str, dict[str, list[float]]]:  # fmt: skip
    return run_passes(
        workers, benchmarks, passes=args.passes, seconds=args.pass_seconds,
        factor=functools.partial(trial_factor, trial), on_pass=record_pass(loads, started),
    )  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help="quiet, busy or both (default: both)")
    parser.add_argument("--trials", type=int, default=14, help="A/B trials per condition (default 14)")
    parser.add_argument("--sessions", type=int, default=2, help="fresh worker pairs per condition (default 2)")
    parser.add_argument("--passes", type=int, default=DEFAULT_PASSES, help=f"as bench ab (default {DEFAULT_PASSES})")
    parser.add_argument("--pass-seconds", type=float, default=DEFAULT_PASS_SECONDS, help="as bench ab")
    parser.add_argument("-k", dest="keyword", default=DEFAULT_KEYWORD, help=f"benchmarks (default {DEFAULT_KEYWORD!r})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})")


def run(args: argparse.Namespace, thresholds: Thresholds) -> int:
    names = [name.strip() for name in args.conditions.split(",") if name.strip()]
    if not names or set(names) - set(CONDITIONS):
        raise ValueError(f"--conditions {args.conditions!r}: choose from {', '.join(CONDITIONS)}, comma-separated")
    if args.trials < 1 or not 1 <= args.sessions <= args.trials:
        raise ValueError(f"--trials {args.trials} --sessions {args.sessions}: need 1 <= sessions <= trials")
    for name in names:
        run_condition(name, args, thresholds)
    return 0
