"""History verdicts: where a machine's stored runs show a lasting step, and in which commits it happened.

Two stored runs are two moments of a shared host, minutes or days apart; their difference mixes the code with
the host's mood. A history gives more to go on, and the verdict here asks for what a regression looks like:

1. **Breaks.** Runs whose machine facts differ (`FACTS`: kernel, torch, CUDA, cuDNN, GPU UUIDs, thread count)
   are not compared across: the history is cut into segments there, and the change is reported as a break.
2. **Host factor.** In each run, every benchmark is divided by the run's host factor: the median, over the
   run's benchmarks, of each one's ratio to its own median over the segment. A host that runs the whole suite
   20 % slower for an hour moves every benchmark alike and cancels; a change to one part of the code stands out.
   (The price: a commit that slows every benchmark by the same factor looks like the host. `dqnbench bench ab`
   sees it.)
3. **Same commit.** Consecutive runs of one commit are pooled into one point (the median of their values), so a
   step can only fall between two different commits, and two runs of the same commit are never a regression.
4. **Change points.** Per benchmark, the points' log values are split by binary segmentation (Scott & Knott
   1974; Killick & Eckley, *changepoint*, J. Stat. Softw. 2014) under an L1 cost, the robust cost asv's step
   detection minimises (Friedrich et al. 2008, as used in `asv.step_detect`). A split is a step only when each
   side holds at least `MIN_POINTS` points (a single outlier is not a level), the two sides' medians differ by
   more than the benchmark's threshold, and the jump across the split itself does too (the medians of the
   `MIN_POINTS` points on each side of it), so a slow drift, which crosses any threshold only over many
   commits, is not pinned on one of them. Each step is attributed to the commit range between the last point
   before it and the first after it.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

FACTS = (
    ("release",),
    ("dqnbench", "torch"),
    ("dqnbench", "cuda"),
    ("dqnbench", "cudnn"),
    ("dqnbench", "gpu_uuids"),
    ("dqnbench", "torch_threads"),
)
"""Machine facts (paths into pytest-benchmark's `machine_info`) whose change makes timings incomparable."""
MIN_POINTS = 3


@dataclass(frozen=True)
class RunPoint:
    """What the history verdict needs of a stored run."""

    name: str
    commit: str
    facts: dict[str, Any]
    medians: dict[str, float]
    """Median time (s) per benchmark (full name)."""


@dataclass(frozen=True)
class Break:
    before: str
    after: str
    differences: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    """A lasting change of one benchmark, host factor divided out, between two commits."""

    benchmark: str
    last_before: str
    first_after: str
    ratio: float
    runs_before: int
    runs_after: int

    @property
    def slower(self) -> bool:
        return self.ratio > 1

    def describe(self) -> str:
        way = "slower" if self.slower else "faster"
        return (
            f"{self.benchmark}: {way} by {abs(self.ratio - 1):.1%} (host factor divided out) in "
            f"{self.last_before}..{self.first_after}, lasting over {self.runs_after} later run(s)"
        )


def machine_facts(machine_info: dict[str, Any]) -> dict[str, Any]:
    facts = {}
    for path in FACTS:
        value: Any = machine_info
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        facts[".".join(path)] = value
    return facts


def known_commit(commit_info: dict[str, Any]) -> str | None:
    """The commit a run recorded, when it is one (pytest-benchmark writes e.g. "unversioned" outside git)."""
    commit = str(commit_info.get("id") or "")
    return commit if re.fullmatch(r"[0-9a-f]{7,40}", commit) else None


def run_point(data: dict[str, Any], name: str, commit: str) -> RunPoint:
    """The run as the history verdict sees it; a run without a known commit is its own point (`name`)."""
    commit = commit if known_commit(data.get("commit_info", {})) else name
    medians = {bench["fullname"]: float(bench["stats"]["median"]) for bench in data["benchmarks"]}
    return RunPoint(name, commit, machine_facts(data["machine_info"]), medians)


def _same_fact(before: Any, after: Any) -> bool:
    # Runs stored before a fact was recorded hold None where later ones hold an empty list: both say "none".
    return (before if before != [] else None) == (after if after != [] else None)


def fact_differences(before: RunPoint, after: RunPoint) -> tuple[str, ...]:
    return tuple(
        f"{key}: {before.facts[key]!r} -> {after.facts.get(key)!r}"
        for key in before.facts
        if not _same_fact(before.facts[key], after.facts.get(key))
    )


def segments(runs: Sequence[RunPoint]) -> tuple[list[list[RunPoint]], list[Break]]:
    """`runs` (oldest first) cut wherever the machine facts change, and the breaks."""
    parts: list[list[RunPoint]] = []
    found: list[Break] = []
    for run in runs:
        if parts and (differences := fact_differences(parts[-1][-1], run)):
            found.append(Break(parts[-1][-1].name, run.name, differences))
            parts.append([])
        if not parts:
            parts.append([])
        parts[-1].append(run)
    return parts, found


def host_factors(runs: Sequence[RunPoint]) -> list[float]:
    """Each run's host factor: the median over its benchmarks of their time over their median across `runs`."""
    names = {name for run in runs for name in run.medians}
    typical = {name: statistics.median(run.medians[name] for run in runs if name in run.medians) for name in names}
    return [statistics.median(value / typical[name] for name, value in run.medians.items()) for run in runs]


def _l1(values: Sequence[float]) -> float:
    middle = statistics.median(values)
    return sum(abs(value - middle) for value in values)


def change_points(values: Sequence[float], threshold: float, min_points: int = MIN_POINTS) -> list[int]:
    """Indices i where a lasting step starts (values[i] is the first after it), by L1 binary segmentation of the
    log `values`: both sides at least `min_points` long, both the sides' and the split's shift above `threshold`."""
    logs = [math.log(value) for value in values]
    limit = math.log1p(threshold)
    found: list[int] = []

    def split(start: int, stop: int) -> None:
        if stop - start < 2 * min_points:
            return
        part = logs[start:stop]
        best = min(range(min_points, len(part) - min_points + 1), key=lambda k: _l1(part[:k]) + _l1(part[k:]))
        shift = statistics.median(part[best:]) - statistics.median(part[:best])
        jump = statistics.median(part[best : best + min_points]) - statistics.median(part[best - min_points : best])
        if abs(shift) > limit and abs(jump) > limit and shift * jump > 0:
            found.append(start + best)
            split(start, start + best)
            split(start + best, stop)

    split(0, len(logs))
    return sorted(found)


def _pooled_by_commit(runs: Sequence[RunPoint], values: Sequence[float]) -> list[tuple[list[RunPoint], float]]:
    """Consecutive runs of one commit as one point: the runs, and the median of their values."""
    groups: list[tuple[list[RunPoint], list[float]]] = []
    for run, value in zip(runs, values, strict=True):
        if groups and groups[-1][0][-1].commit == run.commit:
            groups[-1][0].append(run)
            groups[-1][1].append(value)
        else:
            groups.append(([run], [value]))
    return [(members, statistics.median(found)) for members, found in groups]


def steps(runs: Sequence[RunPoint], threshold: Callable[[str], float]) -> tuple[list[Step], list[Break]]:
    """The lasting steps per benchmark across the history `runs` (one machine, oldest first), and its breaks."""
    parts, found_breaks = segments(runs)
    found: list[Step] = []
    for part in parts:
        factors = host_factors(part)
        for name in sorted({name for run in part for name in run.medians}):
            present = [(run, run.medians[name] / factor) for run, factor in zip(part, factors, strict=True)
                       if name in run.medians]  # fmt: skip
            points = _pooled_by_commit([run for run, _ in present], [value for _, value in present])
            values = [value for _, value in points]
            starts = change_points(values, threshold(name))
            bounds = [0, *starts, len(values)]
            for position, index in enumerate(starts):
                # The step compares the levels on either side of it, up to the neighbouring steps.
                before, after = values[bounds[position] : index], values[index : bounds[position + 2]]
                found.append(
                    Step(
                        benchmark=name,
                        last_before=points[index - 1][0][-1].commit,
                        first_after=points[index][0][0].commit,
                        ratio=statistics.median(after) / statistics.median(before),
                        runs_before=sum(len(members) for members, _ in points[bounds[position] : index]),
                        runs_after=sum(len(members) for members, _ in points[index : bounds[position + 2]]),
                    )
                )
    return found, found_breaks
