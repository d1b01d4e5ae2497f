"""History verdicts, in one place so that the report states exactly what the regression gate would.

Rules: each run is judged against the run before it on the same machine by the gate's `judge` (median beyond
the benchmark's threshold *and* interquartile ranges apart), except that
- two runs of the same commit are never a regression or an improvement (the code did not change: the host did);
- a change in a machine fact (CPU model, cores, torch threads, GPUs, torch, CUDA, kernel) between two runs is a
  *break*: the runs are not compared, and history figures draw the series apart there.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from dqnbench.bench.compare import Thresholds, Verdict, judge
from dqnbench.report.load import MACHINE_FACTS

SAME_COMMIT = "same commit"
BREAK = "break"
_CHANGES = {Verdict.SLOWER: "regression", Verdict.FASTER: "improvement"}
SERIES = ["machine", "operation", "device", "impl"]


Facts = dict[str, dict[str, str]]


def run_facts(runs: pd.DataFrame) -> Facts:
    """Each run's machine facts, by source."""
    if runs.empty:
        return {}
    return runs.drop_duplicates("source").set_index("source")[list(MACHINE_FACTS)].astype(str).to_dict("index")


def fact_changes(facts: Facts, before: str, after: str) -> list[str]:
    """'kernel 6.18-a → 6.18-b' for each machine fact that differs between two runs (by source)."""
    old, new = facts.get(before), facts.get(after)
    if old is None or new is None:
        return []
    return [f"{fact.replace('_', ' ')} {old[fact]} → {new[fact]}" for fact in MACHINE_FACTS if old[fact] != new[fact]]


def history(benchmarks: pd.DataFrame, runs: pd.DataFrame, limits: Thresholds | None = None) -> pd.DataFrame:
    """Every non-quick run of every series in time order with `change` against the previous run of the series:
    "" (first run, same or within noise), "regression", "improvement", `SAME_COMMIT` or `BREAK`; `step` is the
    ratio of medians, `threshold` the gate's."""
    limits = limits or Thresholds()
    measured = benchmarks[~benchmarks["quick"].astype(bool)] if len(benchmarks) else benchmarks
    if measured.empty:
        return measured.assign(change=[], step=[], threshold=[], verdict=[])
    frames = []
    facts = run_facts(runs)
    for _, group in measured.sort_values("datetime", kind="stable").groupby(SERIES, sort=True):
        group = group.reset_index(drop=True).copy()
        records = group.to_dict("records")
        limit = limits.for_benchmark(records[-1])
        changes, verdicts = [""], [""]
        for before, after in itertools.pairwise(records):
            verdict = judge(before, after, limit)[0]
            verdicts.append(str(verdict))
            if fact_changes(facts, before["source"], after["source"]):
                changes.append(BREAK)
            elif before["commit"] == after["commit"]:
                changes.append(SAME_COMMIT if verdict in _CHANGES else "")
            else:
                changes.append(_CHANGES.get(verdict, ""))
        group["verdict"] = verdicts
        group["change"] = changes
        group["step"] = group["median"] / group["median"].shift()
        group["threshold"] = limit
        frames.append(group)
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class NewestVerdict:
    """The newest run of a machine judged against the previous run of another commit on the same machine."""

    machine: str
    commit: str
    when: pd.Timestamp
    baseline_commit: str | None
    slower: tuple[str, ...]
    faster: tuple[str, ...]
    compared: int
    breaks: tuple[str, ...]

    @property
    def text(self) -> str:
        if self.baseline_commit is None:
            return "no earlier commit on this machine to compare with"
        if self.breaks and not self.compared:
            return f"not compared with {self.baseline_commit[:7]}: the machine changed ({'; '.join(self.breaks)})"
        benchmarks = f"{self.compared} benchmark{'' if self.compared == 1 else 's'}"
        if self.slower:
            return f"{len(self.slower)} of {benchmarks} slower than at {self.baseline_commit[:7]}"
        return f"no regression against {self.baseline_commit[:7]} ({benchmarks} compared)"


def newest_verdicts(
    trend: pd.DataFrame, runs: pd.DataFrame, label: Mapping[tuple[str, str, str], str]
) -> list[NewestVerdict]:
    """Per machine: each benchmark's newest measurement at the machine's newest commit against its newest
    measurement at the commit measured before it (`history` rows)."""
    out = []
    facts = run_facts(runs)
    for machine, rows in trend.groupby("machine", sort=True):
        ordered = rows.sort_values("datetime", kind="stable")
        newest = ordered.iloc[-1]
        earlier = ordered[(ordered["commit"] != newest["commit"]) & (ordered["datetime"] < newest["datetime"])]
        if earlier.empty:
            out.append(NewestVerdict(str(machine), str(newest["commit"]), newest["datetime"], None, (), (), 0, ()))
            continue
        base_commit = str(earlier.iloc[-1]["commit"])
        current = ordered[ordered["commit"] == newest["commit"]].drop_duplicates(SERIES[1:], keep="last")
        baseline = ordered[ordered["commit"] == base_commit].drop_duplicates(SERIES[1:], keep="last")
        baseline = baseline.set_index(SERIES[1:])
        slower: list[str] = []
        faster: list[str] = []
        breaks: set[str] = set()
        compared = 0
        for row in current.itertuples(index=False):
            key = (row.operation, row.device, row.impl)
            if key not in baseline.index:
                continue
            before = baseline.loc[key]
            changes = fact_changes(facts, str(before["source"]), str(row.source))
            if changes:
                breaks.update(changes)
                continue
            compared += 1
            verdict = judge(before.to_dict(), row._asdict(), float(row.threshold))[0]
            name = label.get(key, " · ".join(key))
            if verdict == Verdict.SLOWER:
                slower.append(name)
            elif verdict == Verdict.FASTER:
                faster.append(name)
        out.append(
            NewestVerdict(
                str(machine), str(newest["commit"]), newest["datetime"], base_commit, tuple(slower), tuple(faster),
                compared, tuple(sorted(breaks)),
            )
        )  # fmt: skip
    return out
