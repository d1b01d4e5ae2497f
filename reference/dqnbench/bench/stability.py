"""Run-to-run stability: run the benchmark suite N times back to back and report each benchmark's spread.

    python -m dqnbench.bench.stability [--runs 3] [--out DIR] [--target 0.10] [-- PYTEST ARGS...]

Each run is a separate `python -m pytest benchmarks/ --benchmark-json=DIR/run-<i>.json` process (so
each pays its own start-up, as `tox -e bench` does); its output goes to DIR/run-<i>.log. The spread of a
benchmark is max/min - 1 of its medians across the runs; the exit status is 1 when any benchmark's spread
exceeds `--target`. The table also gives each run's host factor (the median, over the benchmarks, of a
benchmark's median in that run ÷ in run 1: how much faster or slower the machine ran that whole run) and each
benchmark's spread with those factors divided out, which tells a benchmark that varies on its own from a host
whose speed moved every benchmark at once; a diagnostic only, the target and the exit status use the medians as
measured. For runs timed with `--passes`, a last line counts per run the benchmark passes that a burst of the host
slowed by more than 25 %. The table, the pytest arguments and the allocator and thread settings of the environment
go to DIR/stability.txt. Nothing in DIR is overwritten: DIR must not hold run files already.
`--from FILE...` computes the same table from runs made earlier, without running anything (plain or gzipped:
`python -m dqnbench.bench.history pack --dir reports/stability` gzips the kept runs in place).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dqnbench.bench.compare import format_time, host_factor
from dqnbench.bench.facts import COMMIT_ENV, MACHINE_ID_ENV, MALLOC_ENV_VARS, THREAD_ENV_VARS
from dqnbench.bench.history import BenchFileError, Run, load_run

DEFAULT_TARGET = 0.10
DEFAULT_SUITE = Path("benchmarks")
SUMMARY_NAME = "stability.txt"
RECORDED_ENV = (*MALLOC_ENV_VARS, *THREAD_ENV_VARS, COMMIT_ENV, MACHINE_ID_ENV)
"""Environment settings written with the table: what the runs' timings or labels depend on."""
BURST_EXCESS = 0.25
"""A benchmark's pass median this far above its median over the run counts as a burst (`bursts`)."""


@dataclass(frozen=True)
class Spread:
    name: str
    medians: tuple[float, ...]
    """Median round time of each run, in run order (seconds)."""
    iqr_fraction: float
    """Largest within-run IQR / median among the runs: the noise inside one run."""

    @property
    def spread(self) -> float:
        return _spread(self.medians)

    def spread_after(self, host_factors: Sequence[float]) -> float:
        """The spread of the medians with each run's host factor divided out."""
        return _spread([median / factor for median, factor in zip(self.medians, host_factors, strict=True)])


def _spread(medians: Sequence[float]) -> float:
    return max(medians) / min(medians) - 1


def host_factors(rows: Sequence[Spread]) -> tuple[float, ...] | None:
    """Per run, `compare.host_factor` of the benchmarks' medians in that run against run 1's (1.0 for run 1).

    On a shared host a whole run can be 5-10 % slower than the next with the same code (README, Noise): every
    benchmark moves together, and the median ratio measures that move. None with too few benchmarks.
    """
    factors = []
    for index in range(len(rows[0].medians) if rows else 0):
        factor = host_factor(row.medians[index] / row.medians[0] for row in rows)
        if factor is None:
            return None
        factors.append(factor)
    return tuple(factors) or None


def bursts(run: Run, excess: float = BURST_EXCESS) -> tuple[int, int]:
    """(how many, of how many) benchmark passes of a run timed with `--passes` had a median more than `excess` above
    the benchmark's median over the run; (0, 0) for a run without passes.

    A burst of the host lasts a second or two, so it slows the few benchmarks timed in it, not a whole pass: the
    count, not a median over benchmarks, shows it. In this machine's ten-pass triples whose runs all had 9 or fewer of
    180, 17 or 18 of 18 medians kept within 10 %; in those with a run at 14 or more, 13 to 17 (README, Figures from
    this machine).
    """
    relative = [
        float(median) / float(bench["stats"]["median"])
        for bench in run.data["benchmarks"]
        if len(bench.get("extra_info", {}).get("pass_medians_s") or []) > 1
        for median in bench["extra_info"]["pass_medians_s"]
    ]
    return sum(value > 1 + excess for value in relative), len(relative)


def format_bursts(runs: Sequence[Run], excess: float = BURST_EXCESS) -> str | None:
    """One line of `bursts` per run; None when no run was timed in passes."""
    counts = [bursts(run, excess) for run in runs]
    if not any(total for _, total in counts):
        return None
    return (
        f"benchmark passes more than {excess:.0%} slower than that benchmark over its run (bursts of the host), per "
        "run: " + ", ".join(f"{hit} of {total}" for hit, total in counts)
    )


def spreads(runs: Sequence[Run]) -> list[Spread]:
    """Per benchmark present in every run, its medians across the runs (benchmarks missing from one are left out)."""
    common = [name for name in runs[0].benchmarks if all(name in run.benchmarks for run in runs)]
    result = []
    for name in common:
        stats = [run.benchmarks[name]["stats"] for run in runs]
        result.append(Spread(
            name=name,
            medians=tuple(float(s["median"]) for s in stats),
            iqr_fraction=max(float(s["iqr"]) / float(s["median"]) for s in stats),
        ))  # fmt: skip
    return result


def format_spreads(rows: Sequence[Spread], target: float) -> str:
    factors = host_factors(rows)
    width = max([len("benchmark"), *(len(row.name) for row in rows)])
    after_host = f"  {'w/o host':>8}" if factors else ""
    lines = [f"{'benchmark':{width}}  {'medians per run':40}  {'spread':>7}  {'IQR max':>7}{after_host}"]
    for row in rows:
        medians = ", ".join(format_time(m) for m in row.medians)
        flag = "  > target" if row.spread > target else ""
        after = f"  {row.spread_after(factors):8.1%}" if factors else ""
        lines.append(f"{row.name:{width}}  {medians:40}  {row.spread:7.1%}  {row.iqr_fraction:7.1%}{after}{flag}")
    worst = max(rows, key=lambda row: row.spread)
    within = sum(row.spread <= target for row in rows)
    lines.append(f"\nworst spread {worst.spread:.1%} ({worst.name}); target {target:.0%}")
    lines.append(f"within target: {within} of {len(rows)}")
    if factors:
        within_after = sum(row.spread_after(factors) <= target for row in rows)
        lines.append(
            "host factor per run (median over the benchmarks of median / run 1's): "
            + ", ".join(f"{factor - 1:+.1%}" for factor in factors)
            + f"; with it divided out (column w/o host) {within_after} of {len(rows)} within target: a diagnostic, "
            "the target and the exit status use the medians as measured"
        )
    return "\n".join(lines)


def run_suite(runs: int, out: Path, pytest_args: Sequence[str], suite: Path = DEFAULT_SUITE) -> list[Path]:
    """Run `suite` `runs` times, each in its own process, writing DIR/run-<i>.json and .log; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    existing = sorted([*out.glob("run-*.json"), *out.glob("run-*.json.gz"), *out.glob(SUMMARY_NAME)])
    if existing:
        raise FileExistsError(f"{out} already holds {existing[0].name}; pass a new --out (runs are never overwritten)")
    paths = []
    for index in range(1, runs + 1):
        path = out / f"run-{index}.json"
        command = [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider",
                   f"--benchmark-json={path}", *pytest_args]  # fmt: skip
        log = path.with_suffix(".log")
        started = time.perf_counter()
        with log.open("x") as output:
            completed = subprocess.run(command, check=False, stdout=output, stderr=subprocess.STDOUT)
        took = time.perf_counter() - started
        print(f"run {index}/{runs}: exit {completed.returncode} in {took:.0f} s (output: {log})", flush=True)
        if completed.returncode != 0:
            raise RuntimeError(
                f"benchmark run {index} failed (exit {completed.returncode}, see {log}): {' '.join(command)}"
            )
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dqnbench.bench.stability",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=3, help="back-to-back runs (default 3)")
    parser.add_argument("--out", type=Path, default=Path(f"reports/stability/{time.strftime('%Y%m%dT%H%M%S')}"))
    parser.add_argument("--target", type=float, default=DEFAULT_TARGET, help="largest acceptable spread (0.10)")
    parser.add_argument("--suite", type=Path, default=DEFAULT_SUITE, help="benchmark folder or file (benchmarks)")
    parser.add_argument("--from", dest="files", nargs="+", type=Path, help="existing run JSON files to compare")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest after `--`, e.g. -- --device=cpu -k replay")
    args = parser.parse_args(argv)
    if args.runs < 2 and not args.files:
        parser.error(f"--runs {args.runs}: a spread needs at least 2 runs")
    try:
        paths = args.files or run_suite(args.runs, args.out, args.pytest_args, args.suite)
        runs = [load_run(path) for path in paths]
        rows = spreads(runs)
    except (BenchFileError, FileExistsError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not rows:
        print("error: no benchmark appears in every run", file=sys.stderr)
        return 2
    table = "\n".join(filter(None, [format_spreads(rows, args.target), format_bursts(runs)]))
    print(table)
    if not args.files:
        summary = args.out / SUMMARY_NAME
        # Next to the runs, so the folder says how they were made and what they showed without re-running anything.
        with summary.open("x") as written:
            written.write(f"{describe_runs(args.suite, args.pytest_args)}\n\n{table}\n")
        print(f"\nwritten to {summary}")
    return 1 if any(row.spread > args.target for row in rows) else 0


def describe_runs(suite: Path, pytest_args: Sequence[str]) -> str:
    """The command each run was, and the environment settings its timings depend on."""
    settings = {name: os.environ[name] for name in RECORDED_ENV if name in os.environ}
    return "\n".join([
        f"written {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: python -m pytest {suite} "
        + " ".join(shlex.quote(arg) for arg in pytest_args),
        "environment: " + (", ".join(f"{name}={value}" for name, value in settings.items()) or "nothing set"),
    ])  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
