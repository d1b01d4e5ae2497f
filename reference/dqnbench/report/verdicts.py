"""History verdicts for the report, so that it states exactly what `dqnbench bench compare --history` and the
regression gate would.

- Over a machine's whole history, a regression or improvement is a *lasting step*: `dqnbench.bench.changes.steps`
  (asv-style change-point detection with the host factor divided out, runs of one commit pooled, so two runs of
  the same commit are never a regression), attributed to the commit range where it happened. A change in a
  machine fact (CPU model, cores, torch threads, GPUs, torch, CUDA, kernel) is a *break*: the history is cut
  there, and history figures draw the series apart.
- The newest run is judged against the run of the commit measured before it by the gate's `judge` (median
  beyond the benchmark's threshold *and* interquartile ranges apart), unless the machine changed between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from dqnbench.bench import changes
from dqnbench.bench.compare import Thresholds, Verdict, judge
from dqnbench.report.load import MACHINE_FACTS

SERIES = ["machine", "operation", "device", "impl"]
Key = tuple[str, str, str]


def history(benchmarks: pd.DataFrame, limits: Thresholds | None = None) -> pd.DataFrame:
    """Every non-quick measurement in time order, with the gate's `threshold` for its benchmark."""
    limits = limits or Thresholds()
    measured = benchmarks[~benchmarks["quick"].astype(bool)] if len(benchmarks) else benchmarks
    if measured.empty:
        return measured.assign(threshold=[])
    measured = measured.sort_values("datetime", kind="stable").reset_index(drop=True)
    return measured.assign(threshold=[limits.for_benchmark(row) for row in measured.to_dict("records")])


def _key(operation: str, device: str, impl: str) -> str:
    return f"{operation}\t{device}\t{impl}"


@dataclass(frozen=True)
class MachineHistory:
    """One machine's runs as `dqnbench.bench.changes` sees them, and what it found in them."""

    machine: str
    points: tuple[changes.RunPoint, ...]
    """Oldest first; a point's name is its run's source file."""
    steps: tuple[changes.Step, ...]
    breaks: tuple[changes.Break, ...]
    commit_of: Mapping[str, str]
    """The report's commit of each run (by source) and of each commit `changes` names."""

    def series(self, step: changes.Step) -> Key:
        operation, device, impl = step.benchmark.split("\t")
        return operation, device, impl

    def commit(self, name: str) -> str:
        """The report's commit for a commit or run that `changes` names (a run without a known commit is named
        by its source)."""
        return self.commit_of.get(name, name)

    def current_steps(self) -> list[changes.Step]:
        """Per benchmark, the newest step of the newest segment (after the last break): the level it set still
        holds at the machine's newest commit."""
        newest = changes.segments(self.points)[0][-1]
        inside = {point.commit for point in newest}
        latest: dict[str, changes.Step] = {}
        for step in self.steps:
            if step.last_before in inside and step.first_after in inside:
                latest[step.benchmark] = step
        return [latest[name] for name in sorted(latest)]


def machine_histories(trend: pd.DataFrame, runs: pd.DataFrame) -> dict[str, MachineHistory]:
    """Per machine, `changes.steps` over its runs (`history` rows; thresholds as the gate's)."""
    facts = runs.drop_duplicates("source").set_index("source")[list(MACHINE_FACTS)].astype(str).to_dict("index")
    out = {}
    for machine, rows in trend.sort_values("datetime", kind="stable").groupby("machine", sort=True):
        limit = {
            _key(o, d, i): float(t)
            for o, d, i, t in rows[["operation", "device", "impl", "threshold"]].itertuples(index=False)
        }
        points, commit_of = [], {}
        for source, run in rows.groupby("source", sort=False):
            commit = str(run["commit"].iloc[0])
            commit_of[str(source)] = commit
            medians = {_key(r.operation, r.device, r.impl): float(r.median) for r in run.itertuples(index=False)}
            points.append(
                changes.RunPoint(
                    str(source),
                    changes.known_commit({"id": commit}) or str(source),
                    dict(facts.get(str(source), {})),
                    medians,
                )
            )
        found, breaks = changes.steps(points, limit.__getitem__)
        out[str(machine)] = MachineHistory(str(machine), tuple(points), tuple(found), tuple(breaks), commit_of)
    return out


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
    trend: pd.DataFrame, histories: Mapping[str, MachineHistory], label: Mapping[Key, str]
) -> list[NewestVerdict]:
    """Per machine: each benchmark's newest measurement at the machine's newest commit against its newest
    measurement at the commit measured before it (`history` rows)."""
    out = []
    for machine, rows in trend.groupby("machine", sort=True):
        point = {p.name: p for p in histories[str(machine)].points}
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
            differences = changes.fact_differences(point[str(before["source"])], point[str(row.source)])
            if differences:
                breaks.update(differences)
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
