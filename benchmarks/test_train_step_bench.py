"""One full training step: act, env step, screen, push, optimize (batch 128), as `dqnbench train` runs it."""

from __future__ import annotations

import torch

from dqnbench.bench.subjects import BenchSubject
from dqnbench.bench.workload import TrainStep
from dqnbench.config import SEED_CONFIG

WARM_TRANSITIONS = 1000


def test_train_step(timed, subject: BenchSubject, device: torch.device, screens, quick: bool) -> None:
    warm = 2 * SEED_CONFIG.batch_size if quick else WARM_TRANSITIONS
    step = TrainStep(subject, device, screens=screens, warm=warm)
    try:
        timed("train-step", step, batch_size=SEED_CONFIG.batch_size)
    finally:
        step.close()
