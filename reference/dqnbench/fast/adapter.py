"""`dqnbench.fast` as seen by the conformance kit:

    pytest --pyargs dqnbench.conformance --dqn-impl=dqnbench.fast:ADAPTER

The kit pushes arbitrary float states into the memory, so `make_memory` is the state-storing `StateMemory`
(the training loop's `ScreenMemory` needs the rendered screens, which the kit does not have; its
exactness against the reference is tested in tests/test_fast_memory.py). `get_screen` is the bit-exact
rendered path: the kit compares patches pixel by pixel within 1/255, which the render-free rasterizer meets
only on average.
"""

from __future__ import annotations

import weakref

import torch
from torch import Tensor, nn

from dqnbench import learner, nets, policy
from dqnbench.conformance.adapter import DQNAdapter, TransitionBatch
from dqnbench.fast.learner import FoldedTarget, fast_optimize_step
from dqnbench.fast.memory import StateMemory
from dqnbench.fast.parts import make_network
from dqnbench.fast.screen import extract_screen, get_screen

_FOLDED: weakref.WeakKeyDictionary[nn.Module, FoldedTarget] = weakref.WeakKeyDictionary()


def _folded(target: nn.Module) -> FoldedTarget:
    if target not in _FOLDED:
        _FOLDED[target] = FoldedTarget(target)
    return _FOLDED[target]


def bellman_targets(target_net: nn.Module, batch: TransitionBatch, gamma: float) -> Tensor:
    seed = batch.seed_batch(final=batch.terminated)
    values = learner.next_state_values(_folded(target_net), seed)
    return learner.bellman_targets(seed.rewards, values, seed.non_final_mask, gamma)


def optimize_step(
    policy_net: nn.Module,
    target_net: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: TransitionBatch,
    gamma: float,
    grad_clip: float,
) -> Tensor:
    seed = batch.seed_batch(final=batch.terminated)
    return fast_optimize_step(policy_net, _folded(target_net), optimizer, seed, gamma=gamma, grad_clip=grad_clip)


def epsilon_trace(episode_lengths: list[int]) -> list[float]:
    # The fast path runs the reference's loop: epsilon(total_steps) before each action, across episodes.
    return [policy.epsilon(step) for step in range(sum(episode_lengths))]


ADAPTER = DQNAdapter(
    name="dqnbench.fast",
    conv2d_size_out=nets.conv2d_size_out,
    make_network=make_network,
    bellman_targets=bellman_targets,
    make_memory=StateMemory,
    epsilon=policy.epsilon,
    epsilon_trace=epsilon_trace,  # type: ignore[arg-type]
    greedy_action=policy.greedy_action,
    select_action=policy.select_action,
    optimize_step=optimize_step,
    make_target=learner.make_target,
    sync_target=learner.sync_target,
    extract_screen=extract_screen,
    get_screen=get_screen,
)
