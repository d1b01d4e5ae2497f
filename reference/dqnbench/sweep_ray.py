"""`dqnbench sweep --backend ray`: each seed a Ray task, on a local Ray instance or an existing cluster.

A task trains its seed into a temporary folder on whichever node runs it, evaluates the final policy there and
returns the folder's files; the driver writes them to DIR/seed<N>, so a cluster needs no shared filesystem and
the sweep folder has the layout of the local backend. Each seed is written when its task ends, not episode by
episode: a driver that dies loses the seeds still running (their nodes keep nothing).

Ray is an optional extra (`pip install 'dqnbench[ray]'`); nothing here imports it before a Ray sweep starts.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dqnbench.config import DQNConfig
from dqnbench.files import atomic_write_text

CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class SeedFiles:
    """What a Ray task sends back: the seed's result files by name, and whether it was stopped."""

    seed: int
    files: dict[str, bytes]
    interrupted: bool


def import_ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError as error:
        raise RuntimeError(
            "--backend ray needs Ray, an optional extra: pip install 'dqnbench[ray]' (or pip install 'ray>=2.9'); "
            "--backend local (the default) needs nothing beyond dqnbench"
        ) from error
    return ray


def train_seed_task(config: DQNConfig, threads: int, eval_episodes: int) -> SeedFiles:
    """The body of a Ray task: `run_seed` into a temporary folder, then that folder's files.

    `ray.cancel` raises KeyboardInterrupt in the task; `train` catches it and finishes its files, and a stop
    during the evaluation skips the evaluation, so a cancelled seed still returns the episodes it finished.
    """
    from dqnbench.sweep import run_seed

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # a worker has no display; only the reference renders
    scratch = Path(tempfile.mkdtemp(prefix=f"dqnbench-seed{config.seed}-"))
    try:
        run = scratch / f"seed{config.seed}"
        try:
            interrupted = run_seed(config.replace(out=run), threads, eval_episodes)
        except KeyboardInterrupt:
            interrupted = True
        files = {path.name: path.read_bytes() for path in sorted(run.iterdir()) if path.is_file()}
        return SeedFiles(seed=config.seed, files=files, interrupted=interrupted)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_seed_files(config: DQNConfig, result: SeedFiles) -> None:
    """Write a task's files to `config.out`; config.json from `config`, so it names DIR/seed<N> (as the local
    backend's does), not the node's temporary folder."""
    out = config.resolved_out()
    out.mkdir(parents=True, exist_ok=True)
    for name, data in result.files.items():
        if name != CONFIG_FILE:
            (out / name).write_bytes(data)
    atomic_write_text(out / CONFIG_FILE, json.dumps(config.to_json_dict(), indent=2) + "\n")


def gpus_per_seed(config: DQNConfig, cluster_gpus: float, requested: float | None) -> float:
    """The GPU share of each task: `requested`, else 0 on the CPU and 0.25 (four seeds per GPU) on CUDA."""
    if requested is not None:
        if requested < 0 or (requested > 1 and requested != int(requested)):
            raise ValueError(f"--gpus-per-seed must be a fraction in [0, 1] or a whole number, got {requested}")
        if requested > 0 and config.device == "cpu":
            raise ValueError(f"--gpus-per-seed {requested} with --device cpu: drop one of them")
        if requested > 0 and cluster_gpus == 0:
            raise ValueError(f"--gpus-per-seed {requested}: the Ray cluster has no GPU, so no task would start")
        return requested
    if config.device == "cpu" or (config.device == "auto" and cluster_gpus == 0):
        return 0.0
    if cluster_gpus == 0:
        raise ValueError("--device cuda: the Ray cluster has no GPU; use --device cpu or a cluster with GPUs")
    return 0.25


def run_on_ray(
    configs: Sequence[DQNConfig],
    *,
    threads: int,
    eval_episodes: int,
    address: str | None = None,
    gpus: float | None = None,
    jobs: int | None = None,
) -> list[tuple[int, str]]:
    """Train every config as a Ray task (`threads` CPUs each, `gpus` of a GPU), at most `jobs` at once (None:
    as many as the cluster fits); returns (seed, error) of the seeds that failed while the others went on.

    `address` (or RAY_ADDRESS when None) names a running cluster; with neither, a local Ray instance is started
    for the sweep and stopped after it. On Ctrl-C every task is cancelled, each running seed still writes the
    episodes it finished, and KeyboardInterrupt is raised again.
    """
    ray = import_ray()
    if ray.is_initialized():
        started_here = False
    else:
        # address=None lets Ray read RAY_ADDRESS; without it, a local instance with this machine's cores.
        ray.init(address=address, include_dashboard=False, log_to_driver=True, configure_logging=False)
        started_here = True
    try:
        resources = ray.cluster_resources()
        cpus = float(resources.get("CPU", 0))
        if threads > cpus:
            raise ValueError(
                f"--threads {threads}: each seed asks Ray for {threads} CPUs, the cluster has {cpus:g}; lower --threads"
            )
        share = gpus_per_seed(configs[0], float(resources.get("GPU", 0)), gpus)
        task = ray.remote(num_cpus=threads, num_gpus=share, max_retries=0)(train_seed_task)
        return _drive(ray, task, configs, threads, eval_episodes, jobs or len(configs))
    finally:
        if started_here:
            ray.shutdown()


def _drive(
    ray: Any, task: Any, configs: Sequence[DQNConfig], threads: int, eval_episodes: int, jobs: int
) -> list[tuple[int, str]]:
    by_seed = {config.seed: config for config in configs}
    pending = list(configs)
    running: dict[Any, int] = {}
    failures: list[tuple[int, str]] = []

    def collect(ref: Any) -> None:
        seed = running.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return  # cancelled before it started: nothing to keep
        except ray.exceptions.RayError as error:
            cause = getattr(error, "cause", None) or error
            failures.append((seed, f"{type(cause).__name__}: {cause}"))
            return
        write_seed_files(by_seed[seed], result)

    try:
        while pending or running:
            while pending and len(running) < jobs:
                config = pending.pop(0)
                running[task.remote(config, threads, eval_episodes)] = config.seed
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                collect(ref)
    except KeyboardInterrupt:
        for ref in running:
            ray.cancel(ref)
        for ref in list(running):
            collect(ref)
        raise
    return failures
