"""Exploration: the seed's exponential epsilon schedule and epsilon-greedy action selection."""

from __future__ import annotations

import math
import random
from typing import overload

import torch
from torch import Tensor, nn


@overload
def epsilon(steps_done: int, start: float = ..., end: float = ..., decay: float = ...) -> float: ...
@overload
def epsilon(steps_done: Tensor, start: float = ..., end: float = ..., decay: float = ...) -> Tensor: ...
def epsilon(steps_done: int | Tensor, start: float = 0.9, end: float = 0.05, decay: float = 200.0) -> float | Tensor:
    """EPS_END + (EPS_START - EPS_END) * exp(-steps_done / EPS_DECAY).

    A tensor count gives a float64 tensor on its device, so a loop that counts on a GPU never waits for it.
    """
    decayed = (
        torch.exp(-steps_done.double() / decay) if isinstance(steps_done, Tensor) else math.exp(-steps_done / decay)
    )
    return end + (start - end) * decayed


def greedy_action(net: nn.Module, state: Tensor, values: list[Tensor] | None = None) -> Tensor:
    """argmax_a Q(state, a) as a (N, 1) long tensor, without touching BatchNorm running statistics.

    The seed acted with the network in train mode, so every single-screen forward pass moved the
    BatchNorm running mean and variance towards that one screen. Here the network acts in eval mode (its
    running statistics normalise the input, as at evaluation time) and goes back to the mode it was in.
    With `values` given, max_a Q(state, a) is appended to it (a tensor on the net's device: no sync).
    """
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            q = net(state)
            if values is not None:
                values.append(q.max(dim=1).values)
            return q.argmax(dim=1, keepdim=True)
    finally:
        net.train(was_training)


def select_action(
    net: nn.Module,
    state: Tensor,
    eps: float,
    n_actions: int,
    rng: random.Random,
    values: list[Tensor] | None = None,
) -> Tensor:
    """With probability `eps` a uniformly random action, else the greedy one; shape (1, 1), dtype long.

    With `values` given, a greedy choice appends its max_a Q(state, a) (see `greedy_action`).
    """
    if rng.random() > eps:
        return greedy_action(net, state, values)
    return torch.tensor([[rng.randrange(n_actions)]], device=state.device, dtype=torch.long)
