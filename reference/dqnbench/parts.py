"""The swappable parts of the training loop, so implementations differ in parts, never in copied loops."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from dqnbench import registry
from dqnbench.config import DQNConfig
from dqnbench.conformance.adapter import REFERENCE as REFERENCE_ADAPTER
from dqnbench.learner import Batch, ReplayBatch, collate, optimize_step
from dqnbench.nets import DQN
from dqnbench.registry import Implementation
from dqnbench.replay import ReplayMemory
from dqnbench.screen import VIEW_FRACTION, get_screen


class Memory(Protocol):
    def observe(self, screen: Tensor, *, first: bool) -> None:
        """Called with every screen the loop renders (first=True right after a reset), before the push of the
        transition that screen ends; a memory that stores screens instead of states keeps it."""

    def push(self, state: Tensor, action: Tensor, next_state: Tensor | None, reward: Tensor) -> None: ...

    def sample_batch(self, batch_size: int) -> ReplayBatch: ...

    def __len__(self) -> int: ...


OptimizeFn = Callable[[ReplayBatch], Tensor]
OptimizeFactory = Callable[[nn.Module, nn.Module, torch.optim.Optimizer, DQNConfig], OptimizeFn]
"""(policy, target, optimizer, config) -> a function running one optimisation step on a batch."""


@dataclass(frozen=True)
class TrainingParts:
    """What an implementation supplies to `dqnbench.train.train`."""

    name: str
    get_screen: Callable[..., Tensor]
    """(env, height[, view_fraction]) -> the env's (1, 3, H, W) float screen patch; `screen_for` passes
    view_fraction only when a configuration asks for a view other than the seed's."""
    make_memory: Callable[[int, int], Memory]
    """(capacity, seed) -> a replay memory."""
    make_network: Callable[[int, int, int, int], nn.Module]
    """(height, width, n_actions, in_channels) -> a Q-network."""
    make_optimize: OptimizeFactory
    """(policy, target, optimizer, config) -> a function running one optimisation step on a batch."""
    replay_bytes: Callable[[int, tuple[int, int, int]], int]
    """(capacity, (channels, height, width) of a state) -> bytes the full memory holds, to refuse a run that
    cannot fit before it starts."""


def screen_for(get_screen: Callable[..., Tensor], config: DQNConfig) -> Callable[[Any], Tensor]:
    """`get_screen` at the configuration's screen height and view width.

    At the seed's view it is called as the seed's (env, height), so a screen function written without a
    view option (a conformance adapter's, a peer's) still trains the seed's configuration.
    """
    height, view_fraction = config.screen_height, config.view_fraction
    if view_fraction == VIEW_FRACTION:
        return lambda env: get_screen(env, height)
    try:
        inspect.signature(get_screen).bind(None, height, view_fraction)
    except TypeError as error:
        raise ValueError(
            f"view_fraction={view_fraction}: the screen function {getattr(get_screen, '__qualname__', get_screen)!r} "
            f"cannot take a view ({error}); train it at the seed's view_fraction={VIEW_FRACTION}, or give it a "
            "third parameter, view_fraction"
        ) from error
    except ValueError:
        pass  # no signature to check (a builtin): let the call say
    return lambda env: get_screen(env, height, view_fraction)


class ReferenceMemory(ReplayMemory):
    """The seed's replay memory, sampling collated batches."""

    def observe(self, screen: Tensor, *, first: bool) -> None:
        """The reference stores the states it is pushed, so it needs no screens."""

    def sample_batch(self, batch_size: int) -> Batch:
        return collate(self.sample(batch_size))


SeedStep = Callable[..., Tensor]
"""(policy, target, optimizer, batch: Batch, *, gamma, grad_clip, double_dqn) -> loss: one optimisation step on
a seed-layout batch, as `dqnbench.learner.optimize_step`."""


def bind_optimize(step: SeedStep) -> OptimizeFactory:
    """The training loop's `make_optimize` for a step function: networks, optimizer and the config's options
    bound once, the sampled batch materialised at every call."""

    def make(policy: nn.Module, target: nn.Module, optimizer: torch.optim.Optimizer, config: DQNConfig) -> OptimizeFn:
        def run(batch: ReplayBatch) -> Tensor:
            return step(
                policy,
                target,
                optimizer,
                batch.materialize(),
                gamma=config.gamma,
                grad_clip=config.grad_clip,
                double_dqn=config.double_dqn,
            )

        return run

    return make


reference_optimize = bind_optimize(optimize_step)


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


REFERENCE_IMPLEMENTATION = Implementation(name="reference", parts=REFERENCE_PARTS, adapter=REFERENCE_ADAPTER)
"""The tutorial-faithful implementation, registered as `reference`."""


def training_parts(impl: str) -> TrainingParts:
    """The training parts of the implementation registered as `impl` (`dqnbench.registry`)."""
    return registry.load(impl).require_parts()
