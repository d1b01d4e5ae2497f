"""The Q-network: an inference forward pass (batch 1 and 128) and one optimisation step (batch 128)."""

from __future__ import annotations

from itertools import islice

import pytest
import torch

from dqnbench.bench.subjects import BenchSubject
from dqnbench.bench.workload import fill, network, rollout
from dqnbench.config import SEED_CONFIG
from dqnbench.train import make_optimizer

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


def test_optimize(timed, subject: BenchSubject, device: torch.device, screens) -> None:
    subject.require("make_network", "make_memory", "make_optimize")
    assert subject.make_memory is not None
    assert subject.make_optimize is not None
    policy = network(subject, device)
    optimize = subject.make_optimize(
        policy, subject.make_target(policy), make_optimizer(policy.parameters(), SEED_CONFIG), SEED_CONFIG
    )
    memory = subject.make_memory(1000, SEED_CONFIG.seed)
    fill(memory, rollout(screens), 1000)
    batch = memory.sample_batch(BATCH_SIZE)

    timed(f"optimize-b{BATCH_SIZE}", lambda: optimize(batch), batch_size=BATCH_SIZE)
