"""Cyclic experience replay, as in the seed, with its own seeded sampler."""

from __future__ import annotations

import random
from typing import NamedTuple

from torch import Tensor


class Transition(NamedTuple):
    """One step of experience; `next_state` is None when the episode terminated (no bootstrap)."""

    state: Tensor
    action: Tensor
    next_state: Tensor | None
    reward: Tensor


def _detached_copy(tensor: Tensor | None) -> Tensor | None:
    # The caller keeps mutating its tensors (e.g. a screen buffer updated in place); storing a view
    # would silently rewrite history.
    return None if tensor is None else tensor.detach().clone()


class ReplayMemory:
    """A fixed-capacity ring of transitions: once full, each push overwrites the oldest.

    `sample` draws without replacement from a `random.Random(seed)` owned by the memory, so sampling is
    reproducible and independent of the global RNG.
    """

    def __init__(self, capacity: int, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"ReplayMemory(capacity={capacity}): capacity must be >= 1")
        self.capacity = capacity
        self._items: list[Transition] = []
        self._next = 0
        self._rng = random.Random(seed)

    def push(self, state: Tensor, action: Tensor, next_state: Tensor | None, reward: Tensor) -> None:
        transition = Transition(
            _detached_copy(state),  # type: ignore[arg-type]
            _detached_copy(action),  # type: ignore[arg-type]
            _detached_copy(next_state),
            _detached_copy(reward),  # type: ignore[arg-type]
        )
        if len(self._items) < self.capacity:
            self._items.append(transition)
        else:
            self._items[self._next] = transition
        self._next = (self._next + 1) % self.capacity

    def sample(self, batch_size: int) -> list[Transition]:
        if batch_size > len(self._items):
            raise ValueError(
                f"ReplayMemory.sample(batch_size={batch_size}): the memory holds only {len(self._items)} "
                "transitions; wait until len(memory) >= batch_size"
            )
        return self._rng.sample(self._items, batch_size)

    def oldest_first(self) -> list[Transition]:
        """The stored transitions from oldest to newest."""
        return self._items[self._next :] + self._items[: self._next]

    def __len__(self) -> int:
        return len(self._items)
