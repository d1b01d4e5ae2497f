"""The fast implementation's training parts, for `dqnbench train --impl fast`."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from dqnbench.config import DQNConfig
from dqnbench.fast.batchnorm import accurate_batchnorm
from dqnbench.fast.graphs import GraphedStep
from dqnbench.fast.learner import FoldedTarget, compiled, fast_optimize_step, use_foreach
from dqnbench.fast.memory import ScreenMemory
from dqnbench.fast.screen import get_screen, raster_screen
from dqnbench.nets import DQN
from dqnbench.parts import OptimizeFn, TrainingParts, reference_optimize


def make_network(height: int, width: int, n_actions: int, in_channels: int = 3) -> nn.Module:
    """The reference DQN in channels-last layout (oneDNN's preferred one; same parameters and outputs).

    Its BatchNorm layers sum their training statistics accurately in that layout (`dqnbench.fast.batchnorm`).
    """
    net = accurate_batchnorm(DQN(height, width, n_actions, in_channels))
    return net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def make_optimize(
    policy: nn.Module, target: nn.Module, optimizer: torch.optim.Optimizer, config: DQNConfig
) -> OptimizeFn:
    """`fast_optimize_step` bound to these networks and the config's options; switches the optimizer to foreach.

    With `config.compile`, the step runs the policy and the folded target through torch.compile; with
    `config.cuda_graph`, it is replayed as one CUDA graph (`dqnbench.fast.graphs`).
    """
    use_foreach(optimizer)
    if config.cuda_graph:
        return GraphedStep(
            policy,
            FoldedTarget(target),
            optimizer,
            gamma=config.gamma,
            grad_clip=config.grad_clip,
            double_dqn=config.double_dqn,
        )
    return partial(
        fast_optimize_step,
        compiled(policy) if config.compile else policy,
        FoldedTarget(target, compiled=config.compile),
        optimizer,
        gamma=config.gamma,
        grad_clip=config.grad_clip,
        double_dqn=config.double_dqn,
    )


def uint8_screen_bytes(capacity: int, state_shape: tuple[int, int, int]) -> int:
    """`ScreenMemory`: one 3-channel uint8 screen per transition, whatever the state is built from."""
    _, height, width = state_shape
    return capacity * 3 * height * width


FAST_PARTS = TrainingParts(
    name="fast",
    get_screen=raster_screen,
    make_memory=ScreenMemory,
    make_network=make_network,
    make_optimize=make_optimize,
    replay_bytes=uint8_screen_bytes,
)
"""The fastest parts: screens drawn without rendering, uint8 replay, the faster optimisation step.

It does not follow the reference's episodes exactly (see README.md, The fast path): the drawn screens differ from the
rendered ones by a fraction of a grey level, and the faster step sums in a different order; RMSprop turns
such rounding differences in near-zero gradients into full-size updates within a step.
"""

EXACT_PARTS = TrainingParts(
    name="fast-exact",
    get_screen=get_screen,
    make_memory=ScreenMemory,
    make_network=DQN,
    make_optimize=reference_optimize,
    replay_bytes=uint8_screen_bytes,
)
"""The bit-exact subset: rendered screens resized without PIL, the uint8 replay, the reference's step.

Training with it repeats the reference's episodes exactly (`tests/test_fast_train.py`).
"""
