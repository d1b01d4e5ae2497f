"""The swappable parts of the training loop, so implementations differ in parts, never in copied loops."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from dqnbench.config import DQNConfig
from dqnbench.learner import Batch, ReplayBatch, collate, optimize_step
from dqnbench.nets import DQN
from dqnbench.replay import ReplayMemory
from dqnbench.screen import get_screen


class Memory(Protocol):
    def observe(self, screen: Tensor, *, first: bool) -> None:
        """Called with every screen the loop renders (first=True right after a reset), before the push of the
        transition that screen ends; a memory that stores screens instead of states keeps it."""

    def push(self, state: Tensor, action: Tensor, next_state: Tensor | None, reward: Tensor) -> None: ...

    def sample_batch(self, batch_size: int) -> ReplayBatch: ...

    def __len__(self) -> int: ...


OptimizeFn = Callable[[ReplayBatch], Tensor]


@dataclass(frozen=True)
class TrainingParts:
    """What an implementation supplies to `dqnbench.train.train`."""

    name: str
    get_screen: Callable[[Any, int], Tensor]
    """Render the env and return its (1, 3, H, W) float screen patch."""
    make_memory: Callable[[int, int], Memory]
    """(capacity, seed) -> a replay memory."""
    make_network: Callable[[int, int, int, int], nn.Module]
    """(height, width, n_actions, in_channels) -> a Q-network."""
    make_optimize: Callable[[nn.Module, nn.Module, torch.optim.Optimizer, DQNConfig], OptimizeFn]
    """(policy, target, optimizer, config) -> a function running one optimisation step on a batch."""
    replay_bytes: Callable[[int, tuple[int, int, int]], int]
    """(capacity, (channels, height, width) of a state) -> bytes the full memory holds, to refuse a run that
    cannot fit before it starts."""


class ReferenceMemory(ReplayMemory):
    """The seed's replay memory, sampling collated batches."""

    def observe(self, screen: Tensor, *, first: bool) -> None:
        """The reference stores the states it is pushed, so it needs no screens."""

    def sample_batch(self, batch_size: int) -> Batch:
        return collate(self.sample(batch_size))


def reference_optimize(
    policy: nn.Module, target: nn.Module, optimizer: torch.optim.Optimizer, config: DQNConfig
) -> OptimizeFn:
    def step(batch: ReplayBatch) -> Tensor:
        return optimize_step(
            policy,
            target,
            optimizer,
            batch.materialize(),
            gamma=config.gamma,
            grad_clip=config.grad_clip,
            double_dqn=config.double_dqn,
        )

    return step


def float_state_bytes(capacity: int, state_shape: tuple[int, int, int]) -> int:
    """`ReplayMemory`: a float32 copy of the state and of the next state per transition."""
    channels, height, width = state_shape
    return capacity * 2 * channels * height * width * 4


REFERENCE_PARTS = TrainingParts(
    name="reference",
    get_screen=get_screen,
    make_memory=ReferenceMemory,
    make_network=DQN,
    make_optimize=reference_optimize,
    replay_bytes=float_state_bytes,
)


def training_parts(impl: str) -> TrainingParts:
    if impl == "reference":
        return REFERENCE_PARTS
    if impl == "fast":
        from dqnbench.fast import FAST_PARTS

        return FAST_PARTS
    raise ValueError(f"unknown implementation {impl!r}; choose 'reference' or 'fast'")
