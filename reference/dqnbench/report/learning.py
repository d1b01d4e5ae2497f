"""Learning results: which stored configuration is the current tuned one, and per configuration the seeds'
final running means (each at its own end, not cut to the shortest seed), their IQM across seeds with a
percentile-bootstrap interval, the seeds that reached the threshold and the environment steps they needed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from dqnbench.config import NAMED_CONFIGS, DQNConfig
from dqnbench.report.analysis import MIN_VALUES, bootstrap_interval, iqm
from dqnbench.report.load import SweepInfo

# Fields that set the budget, the place or the bookkeeping of a run, not what it learns from.
_RUN_FIELDS = {"episodes", "max_env_steps", "device", "impl", "compile", "out", "seed", "seeds", "cuda_graph"}
CURRENT = "current"
SUPERSEDED = "superseded"


def role(name: str, config: Mapping[str, Any] | None) -> tuple[str, str]:
    """(role, named config): `CURRENT` when the stored configuration equals a named one of this code (`tuned`,
    `seed`) on every learning setting; `SUPERSEDED` for a folder named after a configuration it no longer equals;
    "other" otherwise (an ablation or a trial)."""
    if isinstance(config, Mapping):
        for named, reference in NAMED_CONFIGS.items():
            if _same_settings(config, reference):
                return CURRENT, named
    return (SUPERSEDED, name) if name in NAMED_CONFIGS else ("other", "")


def _same_settings(config: Mapping[str, Any], reference: DQNConfig) -> bool:
    settings = {f.name: getattr(reference, f.name) for f in dataclasses.fields(reference)}
    for key, value in settings.items():
        if key in _RUN_FIELDS:
            continue
        stored = config.get(key, _field_default(key))
        if isinstance(value, float) or isinstance(stored, float):
            if stored is None or value is None or not math.isclose(float(stored), float(value)):
                return False
        elif stored != value:
            return False
    return True


def _field_default(key: str) -> Any:
    field = {f.name: f for f in dataclasses.fields(DQNConfig)}[key]
    return field.default


def seed_table(training: pd.DataFrame, sweep: str, threshold: float, window: int) -> pd.DataFrame:
    """One row per seed: episodes, environment steps, final `window`-episode mean (at its own end), and the steps
    at which the running mean first reached `threshold` (NaN if it never did)."""
    rows = []
    for seed, run in training[training["sweep"] == sweep].groupby("seed", sort=True):
        ordered = run.sort_values("episode")
        durations = ordered["duration"].to_numpy(dtype=float)
        steps = ordered["total_steps"].to_numpy(dtype=float)
        if np.isnan(steps).all():
            steps = np.cumsum(durations)  # an older CSV without the column: its durations add up to the steps
        full = pd.Series(durations).rolling(window, min_periods=window).mean().to_numpy()
        hits = np.flatnonzero(full >= threshold)
        rows.append({
            "seed": str(seed), "episodes": len(durations), "steps": float(steps[-1]),
            "final": float(durations[-window:].mean()), "full_window": len(durations) >= window,
            "reached_at": float(steps[hits[0]]) if len(hits) else math.nan,
        })  # fmt: skip
    return pd.DataFrame(rows)


def summary(
    training: pd.DataFrame, sweeps: Mapping[str, SweepInfo], threshold: float = 195.0, window: int = 100
) -> pd.DataFrame:
    """One row per configuration, the current tuned configuration first."""
    rows = []
    for sweep in sorted(training["sweep"].unique()):
        info = sweeps.get(sweep)
        seeds = seed_table(training, sweep, threshold, window)
        finals = seeds["final"].to_numpy()
        low, high = bootstrap_interval(finals, "iqm") if len(finals) >= MIN_VALUES else (math.nan, math.nan)
        evaluations = [v for v in (info.final_eval.values() if info else []) if v is not None]
        kind, named = role(sweep, info.config if info else None)
        reached = seeds[seeds["reached_at"].notna()]
        rows.append({
            "sweep": sweep, "role": kind, "named": named, "seeds": len(seeds),
            "iqm": float(iqm(finals)) if len(finals) else math.nan, "low": low, "high": high,
            "min_final": float(finals.min()), "max_final": float(finals.max()),
            "reached": len(reached),
            "median_steps_reached": float(reached["reached_at"].median()) if len(reached) else math.nan,
            "min_steps": float(seeds["steps"].min()), "max_steps": float(seeds["steps"].max()),
            "evaluated": len(evaluations), "eval_mean": float(np.mean(evaluations)) if evaluations else math.nan,
            "config_recorded": bool(info and info.config is not None),
        })  # fmt: skip
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    order = frame.assign(
        _rank=[
            0 if (r == CURRENT and n == "tuned") else 1 if r == CURRENT else 2
            for r, n in zip(frame["role"], frame["named"], strict=True)
        ]
    )
    return (
        order.sort_values(["_rank", "iqm"], ascending=[True, False], kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def curves(training: pd.DataFrame, sweep: str, window: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per seed: (environment steps at each episode's end, running mean of the last `window` durations)."""
    out = []
    for _, run in training[training["sweep"] == sweep].groupby("seed", sort=True):
        ordered = run.sort_values("episode")
        durations = ordered["duration"].astype(float)
        steps = ordered["total_steps"].to_numpy(dtype=float)
        if np.isnan(steps).all():
            steps = np.cumsum(durations.to_numpy())
        out.append((steps, durations.rolling(window, min_periods=1).mean().to_numpy()))
    return out


def iqm_curve(seed_curves: list[tuple[np.ndarray, np.ndarray]], points: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """The IQM over seeds of their running means on a common grid of environment steps, up to the shortest seed's
    last step (past it, fewer seeds would be averaged)."""
    end = min(float(steps[-1]) for steps, _ in seed_curves)
    grid = np.linspace(0, end, points)
    stacked = np.stack([np.interp(grid, steps, means) for steps, means in seed_curves])
    return grid, iqm(stacked, axis=0)
