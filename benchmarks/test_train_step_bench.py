"""One full training step: act, env step, screen, push, optimize (batch 128), as `dqnbench train` runs it."""

from __future__ import annotations

import torch

from dqnbench.bench.subjects import BenchSubject
from dqnbench.bench.workload import TrainStep, Workloads
from dqnbench.config import SEED_CONFIG

WARM_TRANSITIONS = 1000


def test_train_step(
    timed, subject: BenchSubject, device: torch.device, screens, quick: bool, workloads: Workloads
) -> None:
    warm = 2 * SEED_CONFIG.batch_size if quick else WARM_TRANSITIONS
    # Built once: passes go on with the same run (its environment is closed at the session's end).
    step = workloads.get(
        ("train-step", subject.name, device, warm), lambda: TrainStep(subject, device, screens=screens, warm=warm)
    )
    timed("train-step", step, batch_size=SEED_CONFIG.batch_size)
