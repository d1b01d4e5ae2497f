"""The Q-network: an inference forward pass (batch 1 and 128) and one optimisation step (batch 128)."""

from __future__ import annotations

from itertools import islice

import pytest
import torch

from dqnbench.bench.subjects import BenchSubject
from dqnbench.bench.workload import Workloads, network, optimize_call, rollout
from dqnbench.config import SEED_CONFIG

BATCH_SIZE = SEED_CONFIG.batch_size


def states(screens: list[torch.Tensor], batch_size: int) -> torch.Tensor:
    """`batch_size` screen-difference states as the training loop makes them."""
    return torch.cat([step.transition[0] for step in islice(rollout(screens), batch_size)])


@pytest.mark.parametrize("batch_size", [1, BATCH_SIZE], ids=lambda b: f"b{b}")
def test_forward(timed, subject: BenchSubject, device: torch.device, screens, batch_size: int) -> None:
    net = network(subject, device).eval()
    x = states(screens, batch_size)

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return net(x)

    timed(f"forward-b{batch_size}", forward, batch_size=batch_size)


def test_optimize(timed, subject: BenchSubject, device: torch.device, screens, workloads: Workloads) -> None:
    optimize = workloads.get(("optimize", subject.name, device), lambda: optimize_call(subject, device, screens))
    timed(f"optimize-b{BATCH_SIZE}", optimize, batch_size=BATCH_SIZE)
