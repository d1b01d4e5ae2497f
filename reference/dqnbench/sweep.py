"""`dqnbench sweep`: one configuration trained on several seeds in parallel processes, then summarised.

Layout of a sweep folder (the contract the reports read):

    DIR/seed<N>/durations.csv   one per seed, written by `dqnbench.train.train`
    DIR/summary.json            per-seed final mean and steps to threshold; IQM across seeds with its CI
    DIR/curves.png              each seed's 100-episode mean against environment steps

The summary is computed from the CSVs on disk, never from what the workers return, so an interrupted sweep
and `dqnbench sweep-summary DIR` give the same figures as a finished one.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import multiprocessing.connection
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np

from dqnbench.config import DQNConfig
from dqnbench.files import atomic_write, atomic_write_text, refuse_to_overwrite

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

    @property
    def steps_per_s(self) -> float:
        return self.total_steps / self.wall_s if self.wall_s > 0 else float("nan")


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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


def summarise_seed(seed: int, run: Run, threshold: float = THRESHOLD) -> SeedSummary:
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
    seeds = [summarise_seed(seed, run, threshold) for seed, run in read_runs(out).items()]
    finals = [s.final_mean for s in seeds if s.episodes]
    low, high = bootstrap_ci(finals) if finals else (math.nan, math.nan)
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
        "ci_confidence": CONFIDENCE,
        "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
    }


def format_summary(summary: dict[str, Any]) -> str:
    threshold = summary["threshold"]
    lines = [
        f"{'seed':>4} {'episodes':>8} {'steps':>8} {'final mean100':>13} {f'steps to {threshold:g}':>13} "
        f"{'wall min':>8} {'steps/s':>8}"
    ]
    for s in summary["seeds"]:
        reached = "never" if s["steps_to_threshold"] is None else str(s["steps_to_threshold"])
        final = f"{s['final_mean']:.1f}" + ("" if s["full_window"] else "*")
        lines.append(
            f"{s['seed']:>4} {s['episodes']:>8} {s['total_steps']:>8} {final:>13} {reached:>13} "
            f"{s['wall_s'] / 60:>8.1f} {s['steps_per_s']:>8.1f}"
        )
    low, high = summary["iqm_ci"]
    lines.append(
        f"IQM of final means across {len(summary['seeds'])} seeds: {summary['iqm_final_mean']:.1f} "
        f"({summary['ci_confidence']:.0%} bootstrap CI {low:.1f} to {high:.1f}); "
        f"threshold {threshold:g} reached on {summary['reached']} of {len(summary['seeds'])} seeds"
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


def run_seed(config: DQNConfig, threads: int) -> bool:
    """Train one seed with `threads` intra-op threads (so parallel seeds don't oversubscribe).

    Returns whether Ctrl-C stopped it (`train` catches the KeyboardInterrupt to finish writing its files).
    """
    import torch

    from dqnbench.allocator import pin_glibc_allocator
    from dqnbench.train import train

    pin_glibc_allocator()  # a spawned process starts afresh: `dqnbench.cli.main` pinned only the parent
    torch.set_num_threads(threads)
    return train(config, progress=False).interrupted


def run_in_processes(configs: Sequence[DQNConfig], jobs: int, threads: int) -> list[tuple[int, int]]:
    """Train each config in its own spawned process, `jobs` at a time; returns (seed, exit code) of failures.

    On Ctrl-C every worker gets the same SIGINT and finishes writing its files; they are waited for, no
    further seed is started, and KeyboardInterrupt is raised again.
    """
    # spawn, not fork: a forked child inherits torch's thread pools and CUDA state in an unusable state.
    context = multiprocessing.get_context("spawn")
    pending = list(configs)
    running: dict[int, BaseProcess] = {}
    failures: list[tuple[int, int]] = []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                config = pending.pop(0)
                started = context.Process(target=run_seed, args=(config, threads), name=f"dqnbench-seed{config.seed}")
                started.start()
                running[config.seed] = started
            multiprocessing.connection.wait([worker.sentinel for worker in running.values()])
            for seed, worker in list(running.items()):
                if worker.exitcode is not None:
                    del running[seed]
                    if worker.exitcode != 0:
                        failures.append((seed, worker.exitcode))
    except KeyboardInterrupt:
        for worker in running.values():
            worker.join()
        raise
    return failures


def seed_configs(base: DQNConfig, seeds: Sequence[int], out: Path) -> list[DQNConfig]:
    if not seeds:
        raise ValueError("--seeds: give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {' '.join(map(str, seeds))}: each seed may appear once")
    if min(seeds) < 0:
        raise ValueError(f"--seeds: seeds must be >= 0, got {min(seeds)}")
    return [base.replace(seed=seed, out=out / f"seed{seed}") for seed in seeds]


def sweep(
    base: DQNConfig,
    seeds: Sequence[int],
    out: Path,
    *,
    jobs: int,
    threads: int | None = None,
    threshold: float = THRESHOLD,
) -> dict[str, Any]:
    """Train `base` on every seed (`jobs` processes at a time), then write and return the summary.

    Each process runs torch with `threads` intra-op threads (default: the available cores shared out).
    """
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    configs = seed_configs(base, seeds, out)
    refuse_to_overwrite(out, "sweep folder", "pass a new --out (results of earlier sweeps are never replaced)")
    jobs = min(jobs, len(configs))
    threads = threads or max(1, available_cores() // jobs)
    failures: list[tuple[int, int]] = []
    try:
        if jobs == 1:
            # In this process: simpler to debug, and Ctrl-C stops it like `train`.
            for config in configs:
                if run_seed(config, threads):
                    raise KeyboardInterrupt
        else:
            failures = run_in_processes(configs, jobs, threads)
        interrupted = False
    except KeyboardInterrupt:
        # Every finished episode is on disk already; summarise what there is rather than lose it.
        interrupted = True
    if failures:
        text = ", ".join(f"seed {seed} (exit code {code})" for seed, code in sorted(failures))
        raise RuntimeError(
            f"sweep: {len(failures)} of {len(configs)} seeds failed: {text}; see the tracebacks above. The other "
            f"seeds' results are kept: `dqnbench sweep-summary {out}` summarises them"
        )
    summary = {**summarise(out, threshold), "interrupted": interrupted}
    write_summary(out, summary)
    return summary


def _run_sweep(args: argparse.Namespace) -> int:
    from dqnbench.cli import config_from_args

    if args.seed is not None:
        raise ValueError("sweep: --seed is not an option here; give the seeds with --seeds 0 1 2")
    if args.out is None:
        raise ValueError("sweep: --out DIR is required (each seed writes DIR/seed<N>/durations.csv)")
    jobs = args.jobs if args.jobs is not None else max(1, min(len(args.seeds), available_cores()))
    summary = sweep(
        config_from_args(args), args.seeds, args.out, jobs=jobs, threads=args.threads, threshold=args.threshold
    )
    print(format_summary(summary))
    print(f"summary in {args.out / 'summary.json'}, curves in {args.out / 'curves.png'}")
    return 130 if summary["interrupted"] else 0


def _run_summary(args: argparse.Namespace) -> int:
    summary = summarise(args.dir, args.threshold)
    print(format_summary(summary))
    if args.write:
        for name in ("summary.json", "curves.png"):
            refuse_to_overwrite(args.dir / name, "sweep summary", "delete it first if it is out of date")
        write_summary(args.dir, summary)
        print(f"summary in {args.dir / 'summary.json'}, curves in {args.dir / 'curves.png'}")
    return 0


def register(subparsers: Any) -> None:
    """Add `sweep` and `sweep-summary` to the `dqnbench` command line."""
    from dqnbench.cli import add_config_arguments
    from dqnbench.config import NAMED_CONFIGS

    parser = subparsers.add_parser(
        "sweep",
        help="train one configuration on several seeds in parallel and summarise them",
        description="Train one configuration on several seeds in parallel processes, then summarise them "
        "(final 100-episode mean, steps to threshold, IQM across seeds with a bootstrap CI). --out DIR is the "
        "sweep folder: seed N trains into DIR/seed<N>; the other options are `train`'s, for every seed.",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to train (default: 0 1 2)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help=f"seeds trained at once, each in its own process (default: one per seed, at most the "
        f"{available_cores()} cores available)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per process (default: the available cores divided by --jobs)",
    )
    parser.add_argument("--threshold", type=float, default=THRESHOLD, help=f"solved threshold (default {THRESHOLD})")
    parser.add_argument(
        "--config",
        default="seed",
        help=f"a named configuration ({', '.join(NAMED_CONFIGS)}) or a JSON file of DQNConfig fields (default: seed)",
    )
    add_config_arguments(parser)
    parser.set_defaults(run=_run_sweep)

    summary = subparsers.add_parser(
        "sweep-summary",
        help="print (and optionally write) the summary of an existing sweep folder",
        description="Summarise DIR/seed<N>/durations.csv of an existing (possibly interrupted) sweep.",
    )
    summary.add_argument("dir", type=Path, help="the sweep folder (the --out of `dqnbench sweep`)")
    summary.add_argument("--threshold", type=float, default=THRESHOLD, help=f"solved threshold (default {THRESHOLD})")
    summary.add_argument("--write", action="store_true", help="also write DIR/summary.json and DIR/curves.png")
    summary.set_defaults(run=_run_summary)
