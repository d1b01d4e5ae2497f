"""The numbers behind the benchmark figures, tables and sentences: speed-up ratios with intervals that say whether
the result would come out the same in another run.

A ratio compares two benchmarks of the same run (fast against reference, CUDA against CPU). Its values are
the per-pass ratios of every run of the machine's newest commit: a run timed in passes (`--passes=N`) records each
pass's median (`pass_medians_s`), and the two sides of one pass ran minutes apart at most, so each pass gives one
paired ratio; a run without passes gives one ratio of its medians. The 95% interval is a percentile bootstrap
of the median of those values (`scipy.stats.bootstrap`). Rounds within one pass are never resampled: they are
seconds apart and share the host's momentary state, so their interval says nothing about the next run. Fewer
than `MIN_VALUES` values give no interval.

Two separate questions are answered per ratio: *distinguishable* (the interval excludes 1) and *matters* (the
ratio lies beyond the regression gate's threshold for the benchmark, 10% by default).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from dqnbench.bench.compare import DEFAULT_THRESHOLDS_FILE, Thresholds, load_thresholds

BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95
MIN_VALUES = 3
"""Fewer values than this give no interval ("-"): a bootstrap of two values is not an interval."""


@dataclass(frozen=True)
class Ratio:
    """`baseline / candidate` time: above 1 the candidate is faster. `low`/`high` are NaN without an interval."""

    value: float
    low: float
    high: float
    values: int
    unit: str
    threshold: float = 0.10

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def distinguishable(self) -> bool | None:
        """Whether the interval excludes 1; None when there is no interval."""
        return None if not self.has_interval else not (self.low <= 1.0 <= self.high)

    @property
    def matters(self) -> bool:
        """Whether the ratio lies beyond the threshold either way (a 10% threshold: above 1.1 or below 1/1.1)."""
        return abs(math.log(self.value)) > math.log(1 + self.threshold)


def bootstrap_interval(values: np.ndarray, statistic: str = "median", seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median (or "iqm") of `values`; NaNs below `MIN_VALUES` values."""
    values = np.asarray(values, dtype=float)
    if len(values) < MIN_VALUES or np.ptp(values) == 0:
        flat = float(values[0]) if len(values) >= MIN_VALUES else math.nan
        return flat, flat
    function = np.median if statistic == "median" else iqm
    result = stats.bootstrap(
        (values,),
        function,
        n_resamples=BOOTSTRAP_SAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),  # a fixed seed: the same inputs give the same report, word for word
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the probability mass between the 25% and 75% quantiles, each sorted value
    weighted by its share of it, as `dqnbench sweep` computes it for summary.json. It equals
    `scipy.stats.trim_mean(values, 0.25)` (rliable's IQM) when the count is a multiple of 4, and for 3 seeds is
    (a + 4b + c) / 6 where whole-value trimming would drop nothing."""
    ordered = np.sort(np.moveaxis(np.asarray(values, dtype=float), axis, -1), axis=-1)
    n = ordered.shape[-1]
    edges = np.arange(n + 1) / n
    weights = np.clip(np.minimum(edges[1:], 0.75) - np.maximum(edges[:-1], 0.25), 0.0, None)
    return np.asarray(ordered @ (weights / weights.sum()))


def paired_values(baseline: pd.DataFrame, candidate: pd.DataFrame) -> tuple[np.ndarray, str]:
    """The ratios baseline / candidate, one per pass (or per run where a run has no passes), over the runs that
    measured both; rows of both frames are the same benchmark's rows of those runs."""
    values: list[float] = []
    with_passes = True
    merged = baseline.merge(candidate, on="source", suffixes=("_b", "_c"))
    for row in merged.itertuples(index=False):
        passes_b, passes_c = row.pass_medians_b, row.pass_medians_c
        if passes_b is not None and passes_c is not None and len(passes_b) == len(passes_c) and len(passes_b) > 1:
            values += list(np.asarray(passes_b) / np.asarray(passes_c))
        else:
            with_passes = False
            values.append(float(row.median_b) / float(row.median_c))
    return np.asarray(values, dtype=float), "passes" if with_passes else "runs"


def ratio_of(baseline: pd.DataFrame, candidate: pd.DataFrame, threshold: float) -> Ratio:
    """The ratio of two benchmarks over the runs of one commit: paired by pass (or run) where both sides share
    runs; otherwise (a CPU run and a CUDA run made apart) the ratio of the sides' median run medians, with a
    two-sample bootstrap interval over runs when each side has `MIN_VALUES` runs."""
    values, unit = paired_values(baseline, candidate)
    if len(values):
        low, high = bootstrap_interval(values)
        return Ratio(float(np.median(values)), low, high, len(values), unit, threshold)
    base, cand = baseline["median"].to_numpy(dtype=float), candidate["median"].to_numpy(dtype=float)
    value = float(np.median(base) / np.median(cand))
    low = high = math.nan
    if min(len(base), len(cand)) >= MIN_VALUES:
        result = stats.bootstrap(
            (base, cand),
            lambda b, c, axis=-1: np.median(b, axis=axis) / np.median(c, axis=axis),
            n_resamples=BOOTSTRAP_SAMPLES,
            confidence_level=CONFIDENCE,
            method="percentile",
            vectorized=True,
            rng=np.random.default_rng(0),
        )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return Ratio(value, low, high, min(len(base), len(cand)), "separate runs", threshold)


def newest_commit_rows(benchmarks: pd.DataFrame) -> pd.DataFrame:
    """Per machine, the non-quick rows of every run of that machine's newest commit (of its newest run)."""
    measured = benchmarks[~benchmarks["quick"].astype(bool)]
    if measured.empty:
        return measured
    newest = measured.sort_values("datetime", kind="stable").groupby("machine")["commit"].last()
    return measured[measured["commit"] == measured["machine"].map(newest)]


def _threshold(limits: Thresholds, row: pd.Series) -> float:
    return limits.for_benchmark({"name": row["name"], "fullname": row["fullname"], "group": row["group"]})


def comparisons(benchmarks: pd.DataFrame, kind: str, limits: Thresholds | None = None) -> pd.DataFrame:
    """Ratios on each machine's newest commit. `kind` "impl": each implementation against the reference (or the
    alphabetically first) per operation and device, `ratio` > 1 faster; "device": CUDA against the CPU per
    operation and implementation, `ratio` > 1 CUDA faster."""
    limits = limits or Thresholds()
    rows = newest_commit_rows(benchmarks)
    split, within = ("impl", "device") if kind == "impl" else ("device", "impl")
    out = []
    for (machine, operation, where), group in rows.groupby(["machine", "operation", within], sort=True):
        sides = sorted(group[split].unique())
        if kind == "impl":
            base = baseline_implementation(sides)
            others = [s for s in sides if s != base]
        else:
            base, others = "cpu", [s for s in sides if s == "cuda"] if "cpu" in sides else []
        for other in others:
            ratio = ratio_of(
                group[group[split] == base], group[group[split] == other], _threshold(limits, group.iloc[0])
            )
            out.append({
                "machine": machine, "operation": operation, within: where, "baseline": base, "candidate": other,
                "base_median": float(group[group[split] == base]["median"].median()),
                "median": float(group[group[split] == other]["median"].median()),
                "ratio": ratio.value, "low": ratio.low, "high": ratio.high, "values": ratio.values,
                "unit": ratio.unit, "threshold": ratio.threshold, "distinguishable": ratio.distinguishable,
                "matters": ratio.matters, "commit": str(group["commit"].iloc[0]), "runs": group["source"].nunique(),
            })  # fmt: skip
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    return frame.sort_values(["machine", within, "operation"], key=_natural_column, kind="stable").reset_index(
        drop=True
    )


def _natural_column(column: pd.Series) -> pd.Series:
    return column.map(natural_key) if column.name == "operation" else column


def as_ratio(row: pd.Series) -> Ratio:
    return Ratio(
        float(row["ratio"]), float(row["low"]), float(row["high"]), int(row["values"]), str(row["unit"]),
        float(row["threshold"]),
    )  # fmt: skip


def baseline_implementation(impls: list[str]) -> str:
    return "reference" if "reference" in impls else sorted(impls)[0]


_BENCHMARK_COLUMNS = ("machine", "source", "datetime", "commit", "operation", "device", "impl", "median")
DRIFT_COLUMNS = (*_BENCHMARK_COLUMNS, "pass", "relative")


def pass_drift(benchmarks: pd.DataFrame) -> pd.DataFrame:
    """Each pass's median over the benchmark's median, in the newest run timed in passes on each machine.

    One row per benchmark and pass (`pass` counts from 1); `relative` above 1 is a pass slower than the run's median.
    Quick runs are left out: they time one call per pass.
    """
    passed = benchmarks[
        ~benchmarks["quick"].astype(bool)
        & benchmarks["pass_medians"].map(lambda medians: medians is not None and len(medians) > 1)
    ]
    rows = []
    for _, runs in passed.groupby("machine", sort=True):
        newest = runs[runs["source"] == runs.sort_values("datetime", kind="stable")["source"].iloc[-1]]
        for bench in newest.itertuples(index=False):
            for index, median in enumerate(bench.pass_medians, start=1):
                rows.append({
                    **{key: getattr(bench, key) for key in _BENCHMARK_COLUMNS},
                    "pass": index,
                    "relative": float(median) / float(bench.median),
                })  # fmt: skip
    return pd.DataFrame(rows, columns=list(DRIFT_COLUMNS))


def common_pass_drift(drift: pd.DataFrame) -> pd.Series:
    """Per machine and pass, the median over the benchmarks of `pass_drift`'s `relative`, minus 1: how much slower
    (above 0) or faster that whole pass ran, which is the machine's doing when most benchmarks moved together."""
    return drift.groupby(["machine", "pass"])["relative"].median() - 1


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key in which runs of digits compare as numbers: "batch_size=2" before "batch_size=128"."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", str(text)))


def thresholds(path: Path | None = None) -> Thresholds:
    """The regression gate's thresholds: `path`, else the suite's thresholds file if present, else its default."""
    if path is not None:
        return load_thresholds(path)
    return load_thresholds(DEFAULT_THRESHOLDS_FILE) if DEFAULT_THRESHOLDS_FILE.is_file() else Thresholds()


def newest_conformance(conformance: pd.DataFrame) -> pd.DataFrame:
    """Each implementation's rows from its most recently created result file, and only those: a check that
    the newest run left out (a `-k` subset, a renamed check) is absent, not carried over from an older run.
    Times are compared as times (any ISO 8601 offset); a result without a readable one counts as the oldest,
    and reading order breaks ties."""
    if conformance.empty:
        return conformance
    created = pd.to_datetime(conformance["created"], utc=True, errors="coerce", format="ISO8601")
    ordered = conformance.assign(_created=created, _read=range(len(conformance))).sort_values(
        ["_created", "_read"], na_position="first", kind="stable"
    )
    newest_source = ordered.groupby("implementation")["source"].last()
    return conformance[conformance["source"] == conformance["implementation"].map(newest_source)]


def conformance_matrix(conformance: pd.DataFrame) -> pd.DataFrame:
    """check × implementation table of outcomes (the newest result wins when an implementation appears twice)."""
    newest = newest_conformance(conformance)
    return newest.pivot(index="check", columns="implementation", values="outcome").fillna("absent")
