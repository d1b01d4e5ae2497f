"""`dqnbench sweep`: one configuration trained on several seeds in parallel, each final policy evaluated, then
summarised (`dqnbench.sweep_summary` holds the figures and the folder layout).

Backends: local processes (the default, nothing beyond the package), or Ray tasks (`dqnbench.sweep_ray`).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import time
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Literal

from dqnbench.config import DQNConfig
from dqnbench.files import atomic_write_text, refuse_to_overwrite
from dqnbench.sweep_summary import THRESHOLD, format_summary, seed_dirs, summarise, write_summary


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


EVAL_EPISODES = 100
"""Greedy episodes played by each seed's final policy at the end of a sweep (CartPole's solved criterion)."""


def evaluate_seed(run: Path, episodes: int) -> dict[str, Any]:
    """Play `episodes` greedy episodes with the final policy of the run in `run` and write run/evaluation.json."""
    from dqnbench.evaluate import evaluate

    started = time.perf_counter()
    result = evaluate(run, episodes=episodes, eps=0.0)
    record = {
        "wall_s": round(time.perf_counter() - started, 3),
        "episodes": len(result.durations),
        "eps": 0.0,
        "mean": result.mean_duration,
        "min": min(result.durations),
        "max": max(result.durations),
        "endings": dict(result.endings),
        "mean_max_q": None if math.isnan(result.mean_max_q) else result.mean_max_q,
        "durations": result.durations,
        "end_x": [None if math.isnan(x) else round(x, 3) for x in result.end_positions],
    }
    atomic_write_text(run / "evaluation.json", json.dumps(record, indent=2) + "\n")
    return record


def run_seed(config: DQNConfig, threads: int, eval_episodes: int = EVAL_EPISODES) -> bool:
    """Train one seed with `threads` intra-op threads (so parallel seeds don't oversubscribe), then evaluate its
    final policy greedily for `eval_episodes` episodes (0: no evaluation).

    Returns whether Ctrl-C stopped it (`train` catches the KeyboardInterrupt to finish writing its files); a
    stopped seed is not evaluated.
    """
    import torch

    from dqnbench.allocator import pin_glibc_allocator
    from dqnbench.train import train

    pin_glibc_allocator()  # a spawned process starts afresh: `dqnbench.cli.main` pinned only the parent
    torch.set_num_threads(threads)
    interrupted = train(config, progress=False).interrupted
    if not interrupted and eval_episodes:
        evaluate_seed(config.resolved_out(), eval_episodes)
    return interrupted


def run_in_processes(
    configs: Sequence[DQNConfig], jobs: int, threads: int, eval_episodes: int = EVAL_EPISODES
) -> list[tuple[int, int]]:
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
                started = context.Process(
                    target=run_seed, args=(config, threads, eval_episodes), name=f"dqnbench-seed{config.seed}"
                )
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


Backend = Literal["local", "ray"]


def sweep(
    base: DQNConfig,
    seeds: Sequence[int],
    out: Path,
    *,
    jobs: int | None = None,
    threads: int | None = None,
    threshold: float = THRESHOLD,
    eval_episodes: int = EVAL_EPISODES,
    backend: Backend = "local",
    address: str | None = None,
    gpus_per_seed: float | None = None,
) -> dict[str, Any]:
    """Train `base` on every seed, evaluate each final policy, then write and return the summary.

    backend "local": `jobs` processes at a time (default: one per seed, at most the available cores), each
    running torch with `threads` intra-op threads (default: the available cores shared out). backend "ray":
    each seed a Ray task of `threads` CPUs (default 1) and `gpus_per_seed` of a GPU, on the cluster at `address`
    (or RAY_ADDRESS; neither: a local Ray instance), at most `jobs` at once (default: as many as fit).
    A failed seed does not stop the others; the summary of the rest is written, then RuntimeError names it.
    """
    if backend not in ("local", "ray"):
        raise ValueError(f"--backend must be 'local' or 'ray', got {backend!r}")
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    if eval_episodes < 0:
        raise ValueError(f"--eval-episodes must be >= 0 (0: no evaluation), got {eval_episodes}")
    if backend == "local" and (address is not None or gpus_per_seed is not None):
        raise ValueError("--address and --gpus-per-seed are options of --backend ray; add --backend ray or drop them")
    configs = seed_configs(base, seeds, out)
    refuse_to_overwrite(out, "sweep folder", "pass a new --out (results of earlier sweeps are never replaced)")
    failures: list[tuple[int, str]] = []
    try:
        if backend == "ray":
            from dqnbench.sweep_ray import run_on_ray

            failures = run_on_ray(
                configs,
                threads=threads or 1,
                eval_episodes=eval_episodes,
                address=address,
                gpus=gpus_per_seed,
                jobs=jobs,
            )
        else:
            failures = run_locally(configs, jobs, threads, eval_episodes)
        interrupted = False
    except KeyboardInterrupt:
        # Every finished episode is on disk already; summarise what there is rather than lose it.
        interrupted = True
    summary: dict[str, Any] = {}
    if seed_dirs(out):
        summary = {**summarise(out, threshold), "interrupted": interrupted}
        summary["failed"] = [{"seed": seed, "error": error} for seed, error in sorted(failures)]
        write_summary(out, summary)
    if failures:
        text = "; ".join(f"seed {seed}: {error}" for seed, error in sorted(failures))
        kept = f"the others' summary is in {out / 'summary.json'}" if summary else "no seed finished an episode"
        raise RuntimeError(f"sweep: {len(failures)} of {len(configs)} seeds failed ({text}); {kept}")
    return summary


def run_locally(
    configs: Sequence[DQNConfig], jobs: int | None, threads: int | None, eval_episodes: int
) -> list[tuple[int, str]]:
    """The local backend: in this process when one job runs at a time, else spawned processes."""
    jobs = min(jobs or max(1, min(len(configs), available_cores())), len(configs))
    threads = threads or max(1, available_cores() // jobs)
    if jobs > 1:
        return [(seed, f"exit code {code}") for seed, code in run_in_processes(configs, jobs, threads, eval_episodes)]
    # In this process: simpler to debug, and Ctrl-C stops it like `train`.
    for config in configs:
        if run_seed(config, threads, eval_episodes):
            raise KeyboardInterrupt
    return []


def _run_sweep(args: argparse.Namespace) -> int:
    from dqnbench.cli import config_from_args

    if args.seed is not None:
        raise ValueError("sweep: --seed is not an option here; give the seeds with --seeds 0 1 2")
    if args.out is None:
        raise ValueError("sweep: --out DIR is required (each seed writes DIR/seed<N>/durations.csv)")
    summary = sweep(
        config_from_args(args),
        args.seeds,
        args.out,
        jobs=args.jobs,
        threads=args.threads,
        threshold=args.threshold,
        eval_episodes=args.eval_episodes,
        backend=args.backend,
        address=args.address,
        gpus_per_seed=args.gpus_per_seed,
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
        description="Train one configuration on several seeds in parallel (local processes or Ray tasks), "
        "evaluate each final policy greedily, then summarise them (final 100-episode mean, final evaluation "
        "mean, steps to threshold, IQM across seeds with a bootstrap CI). --out DIR is the "
        "sweep folder: seed N trains into DIR/seed<N>; the other options are `train`'s, for every seed.",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to train (default: 0 1 2)")
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: spawned processes on this machine (default); ray: each seed a Ray task, on a local Ray "
        "instance or the cluster of --address (needs the extra: pip install 'dqnbench[ray]')",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="--backend ray: the cluster to run on, as `ray start --head` prints it (e.g. 10.0.0.1:6379); "
        "default: RAY_ADDRESS, else a local Ray instance started for the sweep",
    )
    parser.add_argument(
        "--gpus-per-seed",
        type=float,
        default=None,
        help="--backend ray: the GPU share each seed asks for (default: 0 with --device cpu or a cluster "
        "without GPUs, else 0.25)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help=f"seeds trained at once (default: local, one per seed up to the {available_cores()} cores "
        "available; ray, as many as the cluster fits)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per seed, and the CPUs a Ray task asks for (default: local, the available cores "
        "divided by --jobs; ray, 1)",
    )
    parser.add_argument("--threshold", type=float, default=THRESHOLD, help=f"solved threshold (default {THRESHOLD})")
    parser.add_argument(
        "--eval-episodes",
        type=int,
        default=EVAL_EPISODES,
        help=f"greedy episodes each seed's final policy plays after training, recorded as final_eval_mean "
        f"(default {EVAL_EPISODES}; 0: none)",
    )
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
