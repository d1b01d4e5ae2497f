"""Stored runs of one machine compared: the newest with a baseline, or the whole history's lasting steps.

    dqnbench bench compare [--dir reports/history] [--machine ID] [--current newest|FILE]
                           [--baseline previous|NAME|FILE] [--thresholds benchmarks/thresholds.toml]
                           [--history] [--allow-cross-machine]

Stored runs are minutes or days apart on a shared host, so their differences mix the code with the host's
phase; the trustworthy gate between two revisions is `dqnbench bench ab`. What this command can say:

* Two runs of the **same commit** are never a regression (their differences are the host's): nothing is judged.
* Runs whose **machine facts** differ (kernel, torch, CUDA, cuDNN, GPU UUIDs, threads) are a **break**:
  nothing is judged.
* Otherwise each benchmark's change is judged with the **host factor** (the median change over all compared
  benchmarks) divided out. It counts as **slower** (exit status 1) only when that change exceeds its
  threshold (thresholds file, default 10%) and the two runs' interquartile ranges, scaled alike, do not
  overlap. **Faster** is the mirror image; a change above threshold with overlapping ranges is `noise`.
* `--history` judges the machine's whole history instead: lasting steps (change points), attributed to
  commit ranges (`dqnbench.bench.changes`); exit status 1 when any step is slower.

Benchmarks present in only one run are `new` or `gone` and never fail. Runs from different machines are
refused (exit status 2, naming both) unless `--allow-cross-machine` is given; bad input files exit with
status 2 and a message naming the file; so do two runs with no benchmark in common.
"""

from __future__ import annotations

import argparse
import fnmatch
import statistics
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from dqnbench.bench import changes
from dqnbench.bench.facts import this_machine_id
from dqnbench.bench.history import DEFAULT_DIR, BenchFileError, Run, load_run, machine_runs, newest_run, run_name

DEFAULT_THRESHOLD = 0.10
DEFAULT_THRESHOLDS_FILE = Path("benchmarks/thresholds.toml")
FEW_ROUNDS = 5
"""Below this many rounds a run's interquartile range says little; such verdicts carry a note."""
SHIFT_SHARE = 0.75
"""Share of the compared benchmarks moving one way beyond which `machine_shift` suspects the machine."""
SHIFT_MIN_BENCHMARKS = 4
"""Fewer compared benchmarks than this say nothing about the machine as a whole."""


class Verdict(StrEnum):
    SLOWER = "SLOWER"
    FASTER = "faster"
    NOISE = "noise"
    SAME = "same"
    NEW = "new"
    GONE = "gone"


@dataclass(frozen=True)
class Thresholds:
    """Allowed relative slow-down of the median: a default, and overrides by fnmatch pattern."""

    default: float = DEFAULT_THRESHOLD
    overrides: tuple[tuple[str, float], ...] = ()

    def for_benchmark(self, bench: dict[str, Any]) -> float:
        """The first override whose pattern matches the benchmark's group, name or fullname, else the default."""
        keys = [str(bench.get(key) or "") for key in ("group", "name", "fullname")]
        for pattern, threshold in self.overrides:
            if any(fnmatch.fnmatchcase(key, pattern) for key in keys):
                return threshold
        return self.default


def _threshold_value(path: Path, where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 10:
        raise BenchFileError(
            path, f"{where} = {value!r}: a threshold is a relative slow-down such as 0.10 (10%), between 0 and 10"
        )
    return float(value)


AB_SECTION = "ab"
"""The thresholds file's table of the A/B gate's minimum effects (`dqnbench bench ab`), beside the history's."""


def load_thresholds(path: Path | str, section: str | None = None) -> Thresholds:
    """Read a thresholds file::

    default = 0.10            # relative slow-down of the median that may count as a regression
    [benchmarks]
    "screen-render" = 0.20    # fnmatch patterns over group, test name or fullname; first match wins
    [ab]                      # the A/B gate's minimum effects (`section="ab"`), same layout
    default = 0.05
    [ab.benchmarks]
    "forward-b1" = 0.08
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise BenchFileError(path, f"cannot be read ({error.strerror or error})") from error
    except tomllib.TOMLDecodeError as error:
        raise BenchFileError(path, f"is not valid TOML ({error})") from error
    unknown = sorted(set(data) - {"default", "benchmarks", AB_SECTION})
    if unknown:
        raise BenchFileError(path, f"unknown keys {unknown}; expected `default`, a [benchmarks] and an [ab] table")
    where = ""
    if section is not None:
        data, where = data.get(section, {}), f"{section}."
        if not isinstance(data, dict) or sorted(set(data) - {"default", "benchmarks"}):
            raise BenchFileError(path, f"[{section}] must hold `default` and a [{section}.benchmarks] table only")
    overrides = data.get("benchmarks", {})
    if not isinstance(overrides, dict):
        raise BenchFileError(path, f"[{where}benchmarks] must be a table of pattern = threshold")
    return Thresholds(
        default=_threshold_value(path, f"{where}default", data.get("default", DEFAULT_THRESHOLD)),
        overrides=tuple(
            (str(pattern), _threshold_value(path, f"{where}benchmarks.{pattern!r}", value))
            for pattern, value in overrides.items()
        ),
    )


@dataclass(frozen=True)
class Row:
    name: str
    verdict: Verdict
    baseline: dict[str, Any] | None
    current: dict[str, Any] | None
    threshold: float
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return float(self.current["median"]) / float(self.baseline["median"])


def judge(baseline: dict[str, Any], current: dict[str, Any], threshold: float) -> tuple[Verdict, str]:
    """Verdict for one benchmark from the two runs' `stats` (median, q1, q3, rounds)."""
    ratio = float(current["median"]) / float(baseline["median"])
    note = ""
    if min(int(baseline["rounds"]), int(current["rounds"])) < FEW_ROUNDS:
        note = f"fewer than {FEW_ROUNDS} rounds: spread unreliable"
    if ratio > 1 + threshold:
        return (Verdict.SLOWER, note) if current["q1"] > baseline["q3"] else (Verdict.NOISE, "IQRs overlap")
    if ratio < 1 / (1 + threshold):
        return (Verdict.FASTER, note) if current["q3"] < baseline["q1"] else (Verdict.NOISE, "IQRs overlap")
    return Verdict.SAME, note


def _scaled(stats: dict[str, Any], host: float) -> dict[str, Any]:
    return {**stats, **{key: float(stats[key]) / host for key in ("median", "q1", "q3")}}


def compare_runs(baseline: Run, current: Run, thresholds: Thresholds, host: float | None = None) -> list[Row]:
    """One row per benchmark in either run, in the current run's order, then the ones that are gone.

    With `host` (`host_factor` of the two runs), each current timing is divided by it before it is judged: the
    verdict then asks whether the benchmark moved beyond the machine's common change between the runs.
    """
    base, cur = baseline.benchmarks, current.benchmarks
    rows = []
    for name, bench in cur.items():
        threshold = thresholds.for_benchmark(bench)
        if name not in base:
            rows.append(Row(name, Verdict.NEW, None, bench["stats"], threshold))
            continue
        judged = bench["stats"] if host is None else _scaled(bench["stats"], host)
        verdict, note = judge(base[name]["stats"], judged, threshold)
        rows.append(Row(name, verdict, base[name]["stats"], bench["stats"], threshold, note))
    rows += [
        Row(name, Verdict.GONE, bench["stats"], None, thresholds.for_benchmark(bench))
        for name, bench in base.items()
        if name not in cur
    ]
    return rows


def host_factor(ratios: Iterable[float]) -> float | None:
    """The median over benchmarks of their time ratios (current / baseline): how much faster or slower the machine
    ran one run than the other, when most benchmarks moved together; one benchmark's own change barely moves it.
    None for fewer than `SHIFT_MIN_BENCHMARKS` ratios, whose median is one benchmark's noise."""
    ratios = list(ratios)
    return statistics.median(ratios) if len(ratios) >= SHIFT_MIN_BENCHMARKS else None


def machine_shift(rows: Sequence[Row]) -> str | None:
    """A warning when the runs differ everywhere at once, the mark of a change in the machine's speed.

    On a shared host the whole suite can run 20 % faster or slower from one hour to the next with the same code
    (README, Noise). When at least `SHIFT_SHARE` of the compared benchmarks moved the same way and their median
    change exceeds the default threshold, the verdicts say more about the host than about the code.
    """
    ratios = [row.ratio for row in rows if row.ratio is not None]
    median = host_factor(ratios)
    if median is None:
        return None
    same_way = sum(ratio > 1 for ratio in ratios) if median > 1 else sum(ratio < 1 for ratio in ratios)
    if same_way < SHIFT_SHARE * len(ratios) or abs(median - 1) <= DEFAULT_THRESHOLD:
        return None
    return (
        f"{same_way} of {len(ratios)} benchmarks moved the same way (median change {median - 1:+.1%}): the machine's "
        "speed likely changed between the runs (a shared host's busy or quiet phase), which moves unchanged code "
        "too; rerun the baseline's commit and the current one back to back before trusting these verdicts, and "
        "compare implementations within one run"
    )


def format_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3f} {unit}"
    return f"{seconds / 1e-9:.1f} ns"


def _spread(stats: dict[str, Any] | None) -> str:
    return "" if stats is None else f"{100 * float(stats['iqr']) / float(stats['median']):.1f}%"


def _change(ratio: float | None) -> str:
    return "" if ratio is None else f"{100 * (ratio - 1):+.1f}%"


def format_table(rows: Sequence[Row], host: float | None = None) -> str:
    """The comparison table; with `host` (`host_factor` of the rows), a `w/o host` column of each change with the
    machine's common change divided out, beside the change as measured that the verdict judges."""
    lines: list[list[str]] = []
    for row in rows:
        ratio = row.ratio
        lines.append([
            row.name,
            "" if row.baseline is None else format_time(float(row.baseline["median"])),
            "" if row.current is None else format_time(float(row.current["median"])),
            _change(ratio),
            *([] if host is None else ["" if ratio is None else _change(ratio / host)]),
            f"{_spread(row.baseline)}/{_spread(row.current)}",
            f"{100 * row.threshold:.0f}%",
            f"{row.verdict}{f' ({row.note})' if row.note else ''}",
        ])  # fmt: skip
    header = ["benchmark", "baseline median", "current median", "change", *([] if host is None else ["w/o host"]),
              "IQR base/cur", "threshold", "verdict"]  # fmt: skip
    lines.insert(0, header)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)


CONTEXT_KEYS = ("torch", "cuda", "torch_threads", "allocator", "mode", "passes")
CONTEXT_BEFORE_RECORDED = {"passes": 1}
"""What runs stored before a fact was recorded did: every benchmark in one block, before `--passes` existed."""


def context_differences(baseline: Run, current: Run) -> list[str]:
    """Recorded facts (torch, threads, allocator...) that differ between the runs: causes to rule out first."""
    base = {**CONTEXT_BEFORE_RECORDED, **baseline.data["machine_info"].get("dqnbench", {})}
    cur = {**CONTEXT_BEFORE_RECORDED, **current.data["machine_info"].get("dqnbench", {})}
    return [f"{key}: {base.get(key)!r} -> {cur.get(key)!r}" for key in CONTEXT_KEYS if base.get(key) != cur.get(key)]


def _timers(run: Run) -> list[str]:
    """The timers (pytest-benchmark's `options.timer`) a run's benchmarks were measured with."""
    return sorted({str(bench.get("options", {}).get("timer", "perf_counter")) for bench in run.data["benchmarks"]})


class CompareError(Exception):
    """The comparison cannot be made as asked; the message says why and what to pass instead."""


def resolve_baseline(choice: str, current: Run, directory: Path) -> Run:
    """`previous` (the stored run just before `current` on its machine), a file path, or a stored run's name."""
    machine = current.machine_id
    stored = machine_runs(directory, machine)
    if choice == "previous":
        here = current.path.resolve()
        before = [path for path in stored if run_name(path) < current.run_name() and path.resolve() != here]
        if not before:
            raise CompareError(
                f"no run of machine {machine!r} older than {current.path} in {directory}; store a baseline first "
                "(`tox -e bench` twice) or name one with --baseline FILE"
            )
        return load_run(before[-1])
    if Path(choice).is_file():
        return load_run(choice)
    matches = [path for path in stored if choice in path.name]
    if len(matches) != 1:
        found = "none" if not matches else ", ".join(path.name for path in matches)
        available = ", ".join(path.name for path in stored) or "none"
        raise CompareError(
            f"--baseline {choice!r} must name exactly one stored run of machine {machine!r} (matches: {found}; "
            f"stored: {available}), or be `previous` or a file path"
        )
    return load_run(matches[0])


def _machine(args: argparse.Namespace) -> str | None:
    """The machine whose newest run is compared: `--machine`, else this one when it has stored runs."""
    if args.machine:
        return str(args.machine)
    here = this_machine_id()
    if machine_runs(args.dir, here):
        return here
    print(f"note: no stored run of this machine ({here}) in {args.dir}; taking the newest run of any machine")
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`dqnbench bench compare`'s options."""
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"history store (default: {DEFAULT_DIR})")
    parser.add_argument(
        "--machine",
        help="take the newest run of this machine id (default: the machine running this command, when the store "
        "holds runs of it; else the newest run of any machine)",
    )
    parser.add_argument("--current", default="newest", help="`newest` stored run (default) or a JSON file")
    parser.add_argument(
        "--baseline",
        default="previous",
        help="`previous` (default): the stored run before the current one; or a stored run's name "
        "(any unique part of it) or a JSON file",
    )
    parser.add_argument(
        "--thresholds",
        type=Path,
        default=None,
        help=f"thresholds file (default: {DEFAULT_THRESHOLDS_FILE} when present, else "
        f"{100 * DEFAULT_THRESHOLD:.0f}%% for every benchmark)",
    )
    parser.add_argument(
        "--history",
        action="store_true",
        help="judge the machine's whole stored history instead of two runs: lasting steps (change points, host "
        "factor divided out, same-commit runs pooled) attributed to commit ranges, and breaks where the machine "
        "facts changed (dqnbench.bench.changes)",
    )
    parser.add_argument(
        "--allow-cross-machine",
        action="store_true",
        help="compare runs from different machines (their timings are not comparable)",
    )


def _not_comparable(baseline: Run, current: Run) -> str | None:
    """Why two runs' difference cannot be a regression: the same commit, or different machine facts (a break)."""
    commit = changes.known_commit(current.data["commit_info"])
    if commit and changes.known_commit(baseline.data["commit_info"]) == commit:
        return (
            f"same commit {current.commit}: the two runs time the same code, so their differences are the "
            "host's; nothing is judged (no regression). To test a change, compare two commits with "
            "`dqnbench bench ab BASELINE CANDIDATE`"
        )
    before = changes.run_point(baseline.data, baseline.run_name(), baseline.commit)
    after = changes.run_point(current.data, current.run_name(), current.commit)
    differences = changes.fact_differences(before, after)
    if differences:
        return (
            f"break: the machine changed between the runs ({'; '.join(differences)}), so their timings are not "
            "comparable and nothing is judged (no regression); compare runs made after the change"
        )
    return None


def history_verdicts(directory: Path, machine: str, thresholds: Thresholds) -> int:
    """Print the lasting steps and breaks of a machine's whole stored history; 1 when its newest step is slower."""
    paths = machine_runs(directory, machine)
    runs = [load_run(path) for path in paths]
    points = [changes.run_point(run.data, run.run_name(), run.commit) for run in runs if not run.quick]
    if len(points) < 2 * changes.MIN_POINTS:
        raise CompareError(
            f"{len(points)} stored full run(s) of machine {machine!r} in {directory}: a lasting step needs at least "
            f"{2 * changes.MIN_POINTS}; store more runs (`dqnbench bench run` then `dqnbench bench store`)"
        )
    names = {name: bench for run in runs for name, bench in run.benchmarks.items()}
    found, breaks = changes.steps(points, lambda name: thresholds.for_benchmark(names[name]))
    print(f"history of {machine}: {len(points)} runs, {len({p.commit for p in points})} commits")
    for item in breaks:
        print(f"break between {item.before} and {item.after}: {'; '.join(item.differences)}")
    for step in found:
        print(("REGRESSION: " if step.slower else "improvement: ") + step.describe())
    slower = [step for step in found if step.slower]
    print(f"history: {len(slower)} slower and {len(found) - len(slower)} faster step(s), {len(breaks)} break(s)")
    return 1 if slower else 0


def run(args: argparse.Namespace) -> int:
    """Compare as `args` ask; the exit status (0 no regression, 1 a regression, 2 bad input)."""
    try:
        if args.history:
            thresholds_file = args.thresholds or DEFAULT_THRESHOLDS_FILE
            thresholds = load_thresholds(thresholds_file) if thresholds_file.is_file() else Thresholds()
            return history_verdicts(args.dir, _machine(args) or this_machine_id(), thresholds)
    except (BenchFileError, CompareError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        thresholds_file = args.thresholds or (DEFAULT_THRESHOLDS_FILE if DEFAULT_THRESHOLDS_FILE.is_file() else None)
        thresholds = load_thresholds(thresholds_file) if thresholds_file else Thresholds()
        current = load_run(newest_run(args.dir, _machine(args)) if args.current == "newest" else args.current)
        baseline = resolve_baseline(args.baseline, current, args.dir)
        if baseline.machine_id != current.machine_id and not args.allow_cross_machine:
            raise CompareError(
                f"baseline {baseline.path} comes from machine {baseline.machine_id!r} and current {current.path} "
                f"from machine {current.machine_id!r}: timings from different machines are not comparable; pass "
                "--allow-cross-machine to compare them anyway"
            )
        timers = {label: _timers(run) for label, run in (("baseline", baseline), ("current", current))}
        if timers["baseline"] != timers["current"]:
            raise CompareError(
                f"baseline {baseline.path} was timed with {', '.join(timers['baseline'])} and current "
                f"{current.path} with {', '.join(timers['current'])}: wall-clock and CPU-time medians are not "
                "comparable; rerun one of them with the other's --benchmark-timer"
            )
        for run in (baseline, current):
            if run.quick:
                raise CompareError(f"{run.path} is a --quick run (one round per benchmark): not a measurement")
    except (BenchFileError, CompareError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    if not args.history:
        verdict = _not_comparable(baseline, current)
        if verdict:
            print(verdict)
            return 0
    common = [name for name in current.benchmarks if name in baseline.benchmarks]
    host = host_factor(
        float(current.benchmarks[name]["stats"]["median"]) / float(baseline.benchmarks[name]["stats"]["median"])
        for name in common
    )
    rows = compare_runs(baseline, current, thresholds, host)
    compared = [row for row in rows if row.verdict not in (Verdict.NEW, Verdict.GONE)]
    if not compared:
        print(
            f"error: baseline {baseline.path} and current {current.path} have no benchmark in common (e.g. one ran "
            "on CPU and the other on CUDA), so nothing was compared; name a baseline of the same benchmarks with "
            "--baseline NAME|FILE",
            file=sys.stderr,
        )
        return 2
    for label, run in (("baseline", baseline), ("current", current)):
        print(f"{label + ':':9} {run.path} ({run.machine_id}, commit {run.commit}, {run.time:%Y-%m-%d %H:%M} UTC)")
    for difference in context_differences(baseline, current):
        print(f"note: recorded context differs, {difference}")
    print(format_table(rows, host))
    if host is not None:
        print(
            f"\nhost factor {host - 1:+.1%}: the median change over the {len(compared)} benchmarks, how much the "
            "machine's speed moved between the runs; the verdicts judge each change with it divided out (`w/o "
            "host`), so only a change that stands out from the machine's is the benchmark's own"
        )
    shift = machine_shift(compared)
    if shift:
        print(f"\nnote: {shift}")
    slower = [row.name for row in rows if row.verdict is Verdict.SLOWER]
    if slower:
        print(f"\nREGRESSION: {len(slower)} benchmark(s) slower beyond threshold and spread: {', '.join(slower)}")
        return 1
    print(f"\nno regression ({len(compared)} benchmarks compared)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dqnbench bench compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
