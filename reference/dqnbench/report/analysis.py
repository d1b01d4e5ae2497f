"""The numbers behind every figure, table and sentence: ratios of medians with confidence intervals.

A ratio's 95% interval is bootstrapped from the raw timings when the run kept them (`--benchmark-save-data`).
Without them it is a parametric bootstrap from the summary: each median is drawn from a normal distribution
centred on it with the asymptotic standard error of a median, 1.2533 * sigma / sqrt(rounds), where sigma is
estimated as IQR / 1.349. That interval assumes independent rounds and is therefore optimistic, so a difference
also counts as noise whenever the two interquartile ranges overlap, and whenever either side has fewer rounds
than the regression gate trusts (`dqnbench.bench.compare.FEW_ROUNDS`; e.g. a `--quick` smoke run).

History uses the regression gate's own verdicts (`dqnbench.bench.compare.judge`, with its per-benchmark
thresholds file when present), so the report marks exactly what `tox -e compare` would flag.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from dqnbench.bench.compare import DEFAULT_THRESHOLDS_FILE, FEW_ROUNDS, Thresholds, Verdict, judge, load_thresholds

BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95
# Bootstrapping medians of very long raw series costs time and adds nothing: a fixed random subset keeps it cheap.
MAX_RAW_SAMPLES = 2000
_NORMAL_IQR = 1.349
_MEDIAN_SE_FACTOR = 1.2533
Method = Literal["raw", "iqr"]


@dataclass(frozen=True)
class Ratio:
    """`baseline median / candidate median`: above 1 the candidate is faster."""

    value: float
    low: float
    high: float
    method: Method
    iqr_overlap: bool
    few_rounds: bool = False

    @property
    def within_noise(self) -> bool:
        return self.few_rounds or self.iqr_overlap or self.low <= 1.0 <= self.high


def _rng(seed: int = 0) -> np.random.Generator:
    # A fixed seed: the same inputs give the same report, word for word.
    return np.random.default_rng(seed)


def _bootstrap_medians(row: pd.Series, rng: np.random.Generator) -> tuple[np.ndarray, Method]:
    data = row["data"]
    if isinstance(data, np.ndarray) and len(data) >= 2:
        if len(data) > MAX_RAW_SAMPLES:
            data = rng.choice(data, MAX_RAW_SAMPLES, replace=False)
        draws = rng.choice(data, size=(BOOTSTRAP_SAMPLES, len(data)), replace=True)
        return np.median(draws, axis=1), "raw"
    sigma = float(row["iqr"]) / _NORMAL_IQR
    se = _MEDIAN_SE_FACTOR * sigma / np.sqrt(max(int(row["rounds"]), 1))
    return rng.normal(float(row["median"]), se, BOOTSTRAP_SAMPLES), "iqr"


def median_ratio(baseline: pd.Series, candidate: pd.Series, seed: int = 0) -> Ratio:
    """How many times faster `candidate` is than `baseline` (rows of the benchmark table), with its 95% CI."""
    rng = _rng(seed)
    base_draws, base_method = _bootstrap_medians(baseline, rng)
    cand_draws, cand_method = _bootstrap_medians(candidate, rng)
    # A normal draw can dip to zero or below for a tiny median with a huge spread; such a draw has no ratio.
    valid = cand_draws > 0
    ratios = base_draws[valid] / cand_draws[valid]
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail]) if len(ratios) else (np.nan, np.nan)
    overlap = bool(baseline["q1"] <= candidate["q3"] and candidate["q1"] <= baseline["q3"])
    method: Method = "raw" if base_method == cand_method == "raw" else "iqr"
    few = min(int(baseline["rounds"]), int(candidate["rounds"])) < FEW_ROUNDS
    return Ratio(float(baseline["median"] / candidate["median"]), float(low), float(high), method, overlap, few)


def latest(benchmarks: pd.DataFrame) -> pd.DataFrame:
    """The newest measurement of each (machine, operation, device, implementation)."""
    if benchmarks.empty:
        return benchmarks
    ordered = benchmarks.sort_values("datetime", kind="stable")
    return ordered.drop_duplicates(["machine", "operation", "device", "impl"], keep="last").reset_index(drop=True)


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
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text))


def _ratio_columns(ratio: Ratio) -> dict[str, object]:
    return {
        "ratio": ratio.value,
        "low": ratio.low,
        "high": ratio.high,
        "method": ratio.method,
        "within_noise": ratio.within_noise,
        "iqr_overlap": ratio.iqr_overlap,
        "few_rounds": ratio.few_rounds,
    }


def device_comparison(benchmarks: pd.DataFrame) -> pd.DataFrame:
    """CPU vs CUDA for each operation measured on both on one machine: `ratio` > 1 means CUDA is faster."""
    rows = []
    newest = latest(benchmarks)
    for (machine, operation, impl), group in newest.groupby(["machine", "operation", "impl"], sort=True):
        by_device = {str(d): r for d, r in zip(group["device"], group.to_dict("records"), strict=True)}
        if "cpu" in by_device and "cuda" in by_device:
            cpu, cuda = pd.Series(by_device["cpu"]), pd.Series(by_device["cuda"])
            rows.append(
                {
                    "machine": machine,
                    "operation": operation,
                    "impl": impl,
                    "cpu_median": cpu["median"],
                    "cpu_q1": cpu["q1"],
                    "cpu_q3": cpu["q3"],
                    "cuda_median": cuda["median"],
                    "cuda_q1": cuda["q1"],
                    "cuda_q3": cuda["q3"],
                    **_ratio_columns(median_ratio(cpu, cuda)),
                }
            )
    return pd.DataFrame(sorted(rows, key=lambda row: (row["machine"], natural_key(row["operation"]))))


def baseline_implementation(impls: list[str]) -> str:
    return "reference" if "reference" in impls else sorted(impls)[0]


def implementation_comparison(benchmarks: pd.DataFrame) -> pd.DataFrame:
    """Each implementation against the baseline (the reference when present) for the same operation, device and
    machine: `ratio` > 1 means the implementation is faster than the baseline."""
    rows = []
    newest = latest(benchmarks)
    for (machine, operation, device), group in newest.groupby(["machine", "operation", "device"], sort=True):
        impls = list(group["impl"])
        if len(impls) < 2:
            continue
        base_name = baseline_implementation(impls)
        base = group[group["impl"] == base_name].iloc[0]
        for _, row in group[group["impl"] != base_name].sort_values("impl").iterrows():
            rows.append(
                {
                    "machine": machine,
                    "operation": operation,
                    "device": device,
                    "baseline": base_name,
                    "impl": row["impl"],
                    "baseline_median": base["median"],
                    "baseline_q1": base["q1"],
                    "baseline_q3": base["q3"],
                    "median": row["median"],
                    "q1": row["q1"],
                    "q3": row["q3"],
                    "baseline_first_call": base["first_call"],
                    "first_call": row["first_call"],
                    **_ratio_columns(median_ratio(base, row)),
                }
            )
    return pd.DataFrame(sorted(rows, key=lambda row: (row["machine"], natural_key(row["operation"]))))


def thresholds(path: Path | None = None) -> Thresholds:
    """The regression gate's thresholds: `path`, else the suite's thresholds file if present, else its default."""
    if path is not None:
        return load_thresholds(path)
    return load_thresholds(DEFAULT_THRESHOLDS_FILE) if DEFAULT_THRESHOLDS_FILE.is_file() else Thresholds()


_CHANGES = {Verdict.SLOWER: "regression", Verdict.FASTER: "improvement"}


def history(benchmarks: pd.DataFrame, limits: Thresholds | None = None) -> pd.DataFrame:
    """Every non-quick run of every series in time order, each judged against the run before it on the same
    machine by the regression gate: `verdict` is the gate's (`Verdict` text, "" for a first run), `change` is
    "regression", "improvement" or "" (same, or within noise)."""
    limits = limits or Thresholds()
    measured = benchmarks[~benchmarks["quick"].astype(bool)] if len(benchmarks) else benchmarks
    if measured.empty:
        return measured.assign(series=[], verdict=[], change=[], step=[], threshold=[])
    frames = []
    keys = ["machine", "operation", "device", "impl"]
    for key, group in measured.sort_values("datetime", kind="stable").groupby(keys, sort=True):
        group = group.reset_index(drop=True).copy()
        records = group.to_dict("records")
        limit = limits.for_benchmark(records[-1])
        verdicts = [judge(before, after, limit)[0] for before, after in itertools.pairwise(records)]
        group["verdict"] = [""] + [str(v) for v in verdicts]
        group["change"] = [""] + [_CHANGES.get(v, "") for v in verdicts]
        group["step"] = group["median"] / group["median"].shift()
        group["threshold"] = limit
        group["series"] = " · ".join(str(k) for k in key[1:])  # operation · device · implementation
        frames.append(group)
    return pd.concat(frames, ignore_index=True)


def running_mean_matrix(training: pd.DataFrame, sweep: str, window: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Episodes and a (seeds × episodes) matrix of the running mean duration, cut to the shortest seed.

    Before `window` episodes the mean is over the episodes so far, so that short runs still show a curve.
    """
    runs = training[training["sweep"] == sweep]
    curves = []
    for _, seed_run in runs.groupby("seed", sort=True):
        durations = seed_run.sort_values("episode")["duration"].to_numpy(dtype=float)
        curves.append(pd.Series(durations).rolling(window, min_periods=1).mean().to_numpy())
    length = min(len(c) for c in curves)
    return np.arange(1, length + 1), np.stack([c[:length] for c in curves])


def bootstrap_band(matrix: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds (rows) at each episode and its 95% percentile-bootstrap band, resampling seeds."""
    rng = _rng(seed)
    mean = matrix.mean(axis=0)
    if matrix.shape[0] < 2:
        return mean, mean.copy(), mean.copy()
    picks = rng.integers(0, matrix.shape[0], size=(BOOTSTRAP_SAMPLES, matrix.shape[0]))
    means = matrix[picks].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    return mean, low, high


def learning_summary(training: pd.DataFrame, threshold: float = 195.0, window: int = 100) -> pd.DataFrame:
    """Per sweep: seeds, episodes, final running mean (with a bootstrap CI over seeds) and seeds reaching
    `threshold`, with the median environment steps they needed."""
    rows = []
    for sweep in sorted(training["sweep"].unique()):
        episodes, matrix = running_mean_matrix(training, sweep, window)
        mean, low, high = bootstrap_band(matrix)
        reached_steps = []
        for _, seed_run in training[training["sweep"] == sweep].groupby("seed", sort=True):
            ordered = seed_run.sort_values("episode")
            means = ordered["duration"].rolling(window, min_periods=window).mean()
            hits = np.flatnonzero(means.to_numpy() >= threshold)
            if len(hits):
                steps = ordered["total_steps"].to_numpy()[hits[0]]
                reached_steps.append(float(steps) if pd.notna(steps) else np.nan)
        rows.append(
            {
                "sweep": sweep,
                "seeds": matrix.shape[0],
                "episodes": int(episodes[-1]),
                "longest": int(training[training["sweep"] == sweep].groupby("seed")["episode"].count().max()),
                "final_mean": float(mean[-1]),
                "final_low": float(low[-1]),
                "final_high": float(high[-1]),
                "reached": len(reached_steps),
                "steps_to_threshold": float(np.median(reached_steps)) if reached_steps else np.nan,
            }
        )
    return pd.DataFrame(rows)


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
