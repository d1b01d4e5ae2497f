"""Sweep summaries: per-seed figures read from the files on disk, the IQM across seeds and its interval.

Layout of a sweep folder (the contract the reports read; docs/learning.md documents summary.json):

    DIR/seed<N>/durations.csv    one per seed, written by `dqnbench.train.train`
    DIR/seed<N>/evaluation.json  the final policy's greedy episodes, written at the end of the seed
    DIR/summary.json             per-seed figures; IQMs across seeds with bootstrap intervals
    DIR/curves.png               each seed's 100-episode mean against environment steps (not tracked)

The summary is computed from the files on disk, never from what the workers return, so an interrupted sweep
and `dqnbench sweep-summary DIR` give the same figures as a finished one.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dqnbench.files import atomic_write, atomic_write_text

WINDOW = 100
"""Episodes in the running mean, as in the seed's plot and the CartPole solved criterion."""

THRESHOLD = 195.0
"""CartPole's solved criterion: a 100-episode mean duration of at least 195."""

BOOTSTRAP_RESAMPLES = 10_000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class SeedSummary:
    seed: int
    episodes: int
    total_steps: int
    final_mean: float
    """Mean duration of the last `WINDOW` episodes (of all of them when fewer were run)."""
    full_window: bool
    """False when fewer than `WINDOW` episodes were run, so `final_mean` is not a 100-episode mean."""
    steps_to_threshold: int | None
    """Environment steps when the running mean first reached the threshold (None: never)."""
    wall_s: float
    final_eval_mean: float | None = None
    """Mean duration of the greedy episodes the final policy played after training (None: not evaluated)."""
    eval_episodes: int = 0
    """How many greedy episodes `final_eval_mean` averages."""

    @property
    def steps_per_s(self) -> float:
        return self.total_steps / self.wall_s if self.wall_s > 0 else float("nan")


def read_durations(csv_path: Path) -> tuple[list[int], list[int], float]:
    """(durations, total steps after each episode, wall seconds) from a `train` durations.csv."""
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: no durations.csv; was this seed trained with `dqnbench train`?")
    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"duration", "total_steps", "wall_s"} - set(rows[0] if rows else {})
    if rows and missing:
        raise ValueError(f"{csv_path}: columns {sorted(missing)} missing; expected the header of dqnbench train")
    durations = [int(row["duration"]) for row in rows]
    steps = [int(row["total_steps"]) for row in rows]
    return durations, steps, float(rows[-1]["wall_s"]) if rows else 0.0


def steps_to_threshold(
    durations: Sequence[int], total_steps: Sequence[int], threshold: float = THRESHOLD, window: int = WINDOW
) -> int | None:
    """Total environment steps at the first episode whose `window`-episode mean reaches `threshold`."""
    sums = np.cumsum(np.asarray(durations, dtype=float))
    for end in range(window - 1, len(durations)):
        window_sum = sums[end] - (sums[end - window] if end >= window else 0.0)
        if window_sum / window >= threshold:
            return int(total_steps[end])
    return None


Run = tuple[list[int], list[int], float]


def read_runs(out: Path) -> dict[int, Run]:
    """(durations, total steps, wall seconds) of every seed folder under `out`; empty for a seed that has
    not finished an episode yet (train writes durations.csv after the first)."""
    dirs = seed_dirs(out)
    if not dirs:
        raise FileNotFoundError(f"{out}: no seed<N> folders; run `dqnbench sweep --out {out}` first")
    empty: Run = ([], [], 0.0)
    return {
        seed: read_durations(path / "durations.csv") if (path / "durations.csv").is_file() else empty
        for seed, path in dirs.items()
    }


def read_evaluation(run: Path) -> dict[str, Any] | None:
    """The evaluation.json a sweep wrote after training the seed in `run` (None: not evaluated)."""
    path = run / "evaluation.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if not isinstance(record, dict) or not {"mean", "episodes"} <= set(record):
        raise ValueError(f"{path}: expected a JSON object with 'mean' and 'episodes', as `dqnbench sweep` writes")
    return record


def summarise_seed(
    seed: int, run: Run, threshold: float = THRESHOLD, evaluation: dict[str, Any] | None = None
) -> SeedSummary:
    durations, steps, wall_s = run
    last = durations[-WINDOW:]
    return SeedSummary(
        seed=seed,
        episodes=len(durations),
        total_steps=steps[-1] if steps else 0,
        final_mean=sum(last) / len(last) if last else float("nan"),
        full_window=len(durations) >= WINDOW,
        steps_to_threshold=steps_to_threshold(durations, steps, threshold),
        wall_s=wall_s,
        final_eval_mean=None if evaluation is None else float(evaluation["mean"]),
        eval_episodes=0 if evaluation is None else int(evaluation["episodes"]),
    )


def _iqm_weights(n: int) -> np.ndarray:
    """Weight of each of n sorted values in the interquartile mean: its share of the mass in [25%, 75%]."""
    edges = np.arange(n + 1) / n
    weights = np.clip(np.minimum(edges[1:], 0.75) - np.maximum(edges[:-1], 0.25), 0.0, None)
    return weights / weights.sum()


def interquartile_mean(values: Sequence[float]) -> float:
    """Mean of the middle 50% of the empirical distribution, partial samples weighted by their share.

    Each of the n sorted values holds 1/n of the probability mass; the mass between the 25% and 75%
    quantiles is averaged. This equals `scipy.stats.trim_mean(values, 0.25)` when n is a multiple of 4 and
    stays robust for the 3-seed case, where whole-sample trimming would drop nothing: IQM(a <= b <= c)
    = (a + 4b + c) / 6.
    """
    if len(values) == 0:
        raise ValueError("interquartile_mean(values=[]): need at least one value")
    return float(np.sort(np.asarray(values, dtype=float)) @ _iqm_weights(len(values)))


def bootstrap_ci(
    values: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = CONFIDENCE, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the IQM, resampling seeds with replacement (seeded, reproducible)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("bootstrap_ci(values=[]): need at least one value")
    draws = np.random.default_rng(seed).choice(data, size=(resamples, data.size), replace=True)
    stats = np.sort(draws, axis=1) @ _iqm_weights(data.size)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [tail, 1.0 - tail])
    return float(low), float(high)


def seed_dirs(out: Path) -> dict[int, Path]:
    """The `seed<N>` folders of a sweep, by seed."""
    found = {}
    for path in sorted(out.glob("seed*")):
        suffix = path.name.removeprefix("seed")
        if path.is_dir() and suffix.isdigit():
            found[int(suffix)] = path
    return found


def summarise(out: Path, threshold: float = THRESHOLD) -> dict[str, Any]:
    """Summary of every `seed<N>/durations.csv` under `out`, as written to summary.json.

    The IQM and its interval are over the seeds that finished at least one episode.
    """
    dirs = seed_dirs(out)
    seeds = [summarise_seed(seed, run, threshold, read_evaluation(dirs[seed])) for seed, run in read_runs(out).items()]
    finals = [s.final_mean for s in seeds if s.episodes]
    low, high = bootstrap_ci(finals) if finals else (math.nan, math.nan)
    evals = [s.final_eval_mean for s in seeds if s.final_eval_mean is not None]
    eval_low, eval_high = bootstrap_ci(evals) if evals else (math.nan, math.nan)
    config_path = out / f"seed{seeds[0].seed}" / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    return {
        "threshold": threshold,
        "window": WINDOW,
        # The settings shared by every seed: the first seed's, less what differs between seeds.
        "config": {k: v for k, v in config.items() if k not in ("seed", "out")},
        "seeds": [{**asdict(s), "steps_per_s": s.steps_per_s} for s in seeds],
        "reached": sum(s.steps_to_threshold is not None for s in seeds),
        "iqm_final_mean": interquartile_mean(finals) if finals else math.nan,
        "iqm_ci": [low, high],
        # Over the seeds whose final policy was evaluated (every seed of a finished sweep).
        "evaluated": len(evals),
        "eval_reached": sum(value >= threshold for value in evals),
        "iqm_final_eval_mean": interquartile_mean(evals) if evals else math.nan,
        "iqm_eval_ci": [eval_low, eval_high],
        "ci_confidence": CONFIDENCE,
        "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
    }


def format_summary(summary: dict[str, Any]) -> str:
    threshold = summary["threshold"]
    lines = [
        f"{'seed':>4} {'episodes':>8} {'steps':>8} {'final mean100':>13} {f'steps to {threshold:g}':>13} "
        f"{'wall min':>8} {'steps/s':>8} {'final eval':>10}"
    ]
    for s in summary["seeds"]:
        reached = "never" if s["steps_to_threshold"] is None else str(s["steps_to_threshold"])
        final = f"{s['final_mean']:.1f}" + ("" if s["full_window"] else "*")
        lines.append(
            f"{s['seed']:>4} {s['episodes']:>8} {s['total_steps']:>8} {final:>13} {reached:>13} "
            f"{s['wall_s'] / 60:>8.1f} {s['steps_per_s']:>8.1f} "
            + (f"{s['final_eval_mean']:>10.1f}" if s.get("final_eval_mean") is not None else f"{'-':>10}")
        )
    low, high = summary["iqm_ci"]
    lines.append(
        f"IQM of final means across {len(summary['seeds'])} seeds: {summary['iqm_final_mean']:.1f} "
        f"({summary['ci_confidence']:.0%} bootstrap CI {low:.1f} to {high:.1f}); "
        f"threshold {threshold:g} reached on {summary['reached']} of {len(summary['seeds'])} seeds"
    )
    if summary.get("evaluated"):
        low, high = summary["iqm_eval_ci"]
        lines.append(
            f"IQM of final greedy evaluations across {summary['evaluated']} seeds: "
            f"{summary['iqm_final_eval_mean']:.1f} ({summary['ci_confidence']:.0%} bootstrap CI {low:.1f} to "
            f"{high:.1f}); at least {threshold:g} on {summary['eval_reached']} of {summary['evaluated']} seeds"
        )
    if not all(s["full_window"] for s in summary["seeds"]):
        lines.append(f"* fewer than {summary['window']} episodes: the mean of all episodes run")
    if summary.get("interrupted"):
        lines.append("interrupted: the figures are those of the episodes finished before the stop")
    return "\n".join(lines)


def plot_curves(out: Path, path: Path, threshold: float = THRESHOLD, title: str | None = None) -> None:
    """Each seed's 100-episode running mean against environment steps, with the threshold."""
    import matplotlib.pyplot as plt

    from dqnbench.plots import running_mean

    runs = read_runs(out)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    # Single episodes first, so no seed's episodes hide another seed's mean.
    for durations, steps, _ in runs.values():
        ax.plot(steps, durations, color="0.85", linewidth=0.5)
    for seed, (durations, steps, _) in runs.items():
        ax.plot(steps, running_mean(durations, WINDOW), linewidth=2, label=f"seed {seed}")
    ax.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set(
        title=title or f"{out.name}: {WINDOW}-episode mean duration (grey: single episodes)",
        xlabel="environment steps",
        ylabel="duration (steps)",
    )
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def _strict_json(value: Any) -> Any:
    """NaN (a seed without episodes) as null: NaN is not JSON, and strict readers reject it."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict_json(v) for v in value]
    return value


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    text = json.dumps(_strict_json(summary), indent=2, allow_nan=False)
    atomic_write_text(out / "summary.json", text + "\n")
    atomic_write(out / "curves.png", lambda tmp: plot_curves(out, tmp, summary["threshold"]))
