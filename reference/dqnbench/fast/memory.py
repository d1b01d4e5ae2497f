"""Replay memories in preallocated tensors: sampling is one gather, not a Python loop over transitions.

Both sample exactly the transitions `dqnbench.replay.ReplayMemory` with the same seed samples (same ring
order, same `random.Random(seed).sample` draw), so training with them follows the reference step for step.

- `StateMemory` stores the pushed states as they are (any float states; what the conformance kit pushes).
- `ScreenMemory` stores each rendered screen once, as uint8, and rebuilds states when it samples: the
  seed's screens are multiples of 1/255 (ToPILImage quantises them), so a uint8 screen loses nothing, and a
  state is computed the way the loop computes it (`a.float() / 255 - b.float() / 255` for the seed's
  difference, the screens side by side for a stack). It needs the screens, which the training loop passes to
  `observe` (see `dqnbench.parts.Memory`); ten thousand transitions take ~108 MB instead of ~864 MB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from dqnbench.fast.pixels import scale_to_unit_
from dqnbench.fast.sampling import ReferenceSampler
from dqnbench.fast.threads import single_threaded
from dqnbench.learner import Batch, bellman_targets, best_next_values


class _Ring:
    """The ring of actions, rewards and final flags, and the reference's sampling order."""

    def __init__(self, capacity: int, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"{type(self).__name__}(capacity={capacity}): capacity must be >= 1")
        self.capacity = capacity
        self._size = 0
        self._next = 0
        self._sampler = ReferenceSampler(seed)
        self._actions: Tensor | None = None
        self._rewards: Tensor | None = None
        # Host bookkeeping lives in numpy arrays, read by torch through shared views: one element written per
        # push costs ~0.1 µs in numpy against ~4 µs through a tensor.
        self._final = np.zeros(capacity, dtype=np.bool_)

    def _claim(self, action: Tensor, reward: Tensor, final: bool) -> int:
        """Store action, reward and the final flag in the next slot (the oldest once full); return the slot."""
        if self._actions is None or self._rewards is None:
            self._actions = torch.empty((self.capacity, *action.shape[1:]), dtype=action.dtype, device=action.device)
            self._rewards = torch.empty((self.capacity, *reward.shape[1:]), dtype=reward.dtype, device=reward.device)
        slot = self._next
        self._actions[slot] = action.detach().reshape(self._actions.shape[1:])
        self._rewards[slot] = reward.detach().reshape(self._rewards.shape[1:])
        self._final[slot] = final
        self._size = min(self._size + 1, self.capacity)
        self._next = (self._next + 1) % self.capacity
        return slot

    def _draw(self, batch_size: int) -> Tensor:
        """`batch_size` slots as the reference draws them, as a CPU int64 tensor."""
        if batch_size > self._size:
            raise ValueError(
                f"{type(self).__name__}.sample(batch_size={batch_size}): the memory holds only {self._size} "
                "transitions; wait until len(memory) >= batch_size"
            )
        # random.sample only uses the population's length, so drawing from range(len) picks the same
        # slots, in the same order, as ReplayMemory drawing from its list; ReferenceSampler draws what it would.
        return torch.from_numpy(self._sampler.sample(self._size, batch_size))

    def _fields(self, index: Tensor, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """Actions, float rewards and the non-final mask (on `device`) of the slots in `index`, a CPU tensor.

        One index tensor for every ring: indexing with the Python list of slots converts it each time.
        """
        assert self._actions is not None and self._rewards is not None
        on_device = index.to(self._actions.device)
        # index_select and numpy rather than tensor[index]: ~10 µs less per batch of 128 here.
        rewards = self._rewards.index_select(0, on_device).to(torch.float32).reshape(len(index))
        continues = torch.from_numpy(~self._final[index.numpy()]).to(device)
        return self._actions.index_select(0, on_device), rewards, continues

    def _batch(self, slots: Tensor, states: Tensor, next_states: Tensor) -> Batch:
        """A Batch of `slots`, given their states and next states (rows of final transitions are dropped)."""
        actions, rewards, continues = self._fields(slots, states.device)
        return Batch(states, actions, rewards, continues, next_states[continues])

    def __len__(self) -> int:
        return self._size

    def observe(self, screen: Tensor, *, first: bool) -> None:
        """Screens are not needed by memories that store the states they are pushed."""


class StateMemory(_Ring):
    """The seed's replay memory over preallocated state tensors: push copies, sample gathers."""

    def __init__(self, capacity: int, seed: int = 0) -> None:
        super().__init__(capacity, seed)
        self._states: Tensor | None = None
        self._next_states: Tensor | None = None

    def push(self, state: Tensor, action: Tensor, next_state: Tensor | None, reward: Tensor) -> None:
        if self._states is None or self._next_states is None:
            shape = (self.capacity, *state.shape[1:])
            self._states = torch.empty(shape, dtype=state.dtype, device=state.device)
            self._next_states = torch.zeros(shape, dtype=state.dtype, device=state.device)
        if state.shape[1:] != self._states.shape[1:]:
            raise ValueError(
                f"StateMemory.push: state of shape {tuple(state.shape)} does not match the stored states "
                f"(N, {', '.join(map(str, self._states.shape[1:]))}); push states of one shape per memory"
            )
        slot = self._claim(action, reward, final=next_state is None)
        # Copies into the ring, never aliases: the caller may keep changing its tensors.
        self._states[slot] = state.detach().reshape(self._states.shape[1:])
        if next_state is not None:
            self._next_states[slot] = next_state.detach().reshape(self._next_states.shape[1:])

    def sample_batch(self, batch_size: int) -> Batch:
        slots = self._draw(batch_size)
        assert self._states is not None and self._next_states is not None
        index = slots.to(self._states.device)
        return self._batch(slots, self._states[index], self._next_states[index])

    def sample(self, batch_size: int) -> Batch:
        return self.sample_batch(batch_size)


def _states(screens: Tensor, stack: bool) -> Tensor:
    """States from (B, n, C, H, W) float screens, as the training loop builds them from its last screens."""
    return screens.flatten(1, 2) if stack else screens[:, -1] - screens[:, -2]


@dataclass(frozen=True)
class DenseBatch:
    """A minibatch with a next state in every row, so no shape depends on the data (no device sync)."""

    states: Tensor
    actions: Tensor
    rewards: Tensor
    continues: Tensor
    """(B,) bool: bootstrap from this row's next state."""
    next_states: Tensor
    """(B, C, H, W); rows that do not continue are ignored."""

    def targets(self, target: nn.Module, gamma: float, policy: nn.Module | None = None) -> Tensor:
        """r + gamma * max_a Q_target(s', a) where the row continues, r where it is final.

        The target evaluates every row (the final ones' values are then dropped), so it must be in eval mode,
        where rows are independent. With `policy` given, Double DQN (`best_next_values`).
        """
        values = best_next_values(target, self.next_states, policy)
        return bellman_targets(self.rewards, values, self.continues, gamma)


@dataclass(frozen=True)
class ScreenBatch:
    """A sampled batch kept as uint8 screens; `materialize` makes the float `Batch` where the learner runs.

    Per transition, `screens` holds its state's screens and then the one after them, so the state and the
    next state share what they have in common: a quarter of the bytes of one float state. The optimisation
    step builds the float states, on its device, after `to(device)` has moved the uint8.
    """

    screens: Tensor
    """(B, span + 1, C, H, W) uint8."""
    actions: Tensor
    rewards: Tensor
    non_final_mask: Tensor
    stack: bool
    """States are the screens side by side (a stack), or the difference of the last two (the seed's)."""

    def to(self, device: torch.device | str) -> ScreenBatch:
        screens, actions, rewards, mask = (
            t.to(device, non_blocking=True) for t in (self.screens, self.actions, self.rewards, self.non_final_mask)
        )
        return ScreenBatch(screens, actions, rewards, mask, self.stack)

    def _float_states(self, channels_last: bool) -> tuple[Tensor, Tensor]:
        """Each transition's state and next state (also for final transitions), as float32 in the layout asked for:
        channels-last (the fast network's) or contiguous (the reference's)."""
        # float32(u) / 255, as ToTensor converts it; `to` keeps the screens' memory order.
        screens = scale_to_unit_(self.screens.to(torch.float32))
        layout = torch.channels_last if channels_last else torch.contiguous_format
        if self.stack:
            # The ring holds stacked screens as (C, H, W), so these flattens are views and `contiguous` is one
            # transposing copy each.
            states = _states(screens[:, :-1], True).contiguous(memory_format=layout)
            return states, _states(screens[:, 1:], True).contiguous(memory_format=layout)
        batch, count, channels, height, width = screens.shape
        # Both differences in one operation (each state's and its next state's), written as two blocks of the
        # layout: from the ring's (H, W, C) screens, channels-last ones without any transposing copy.
        if channels_last:
            differences = screens.new_empty((count - 1, batch, height, width, channels)).permute(1, 0, 4, 2, 3)
        else:
            differences = screens.new_empty((count - 1, batch, channels, height, width)).transpose(0, 1)
        torch.sub(screens[:, 1:], screens[:, :-1], out=differences)
        return differences[:, 0], differences[:, 1]

    def dense(self) -> DenseBatch:
        """The batch with a next state in every row, states in channels-last layout: unlike `materialize`,
        nothing waits for the device."""
        states, following = self._float_states(channels_last=True)
        return DenseBatch(states, self.actions, self.rewards, self.non_final_mask, following)

    def materialize(self) -> Batch:
        # Contiguous, as the reference's states are: a network given channels-last input sums in another order.
        states, following = self._float_states(channels_last=False)
        return Batch(
            states=states,
            actions=self.actions,
            rewards=self.rewards,
            non_final_mask=self.non_final_mask,
            non_final_next_states=following if bool(self.non_final_mask.all()) else following[self.non_final_mask],
        )


def _screen_ring(size: int, screen_shape: torch.Size, device: torch.device, *, channels_last: bool) -> Tensor:
    """(size, C, H, W) uint8 screens, held in memory as (H, W, C) when `channels_last`, else as (C, H, W)."""
    channels, height, width = screen_shape
    if not channels_last:
        return torch.empty((size, channels, height, width), dtype=torch.uint8, device=device)
    return torch.empty((size, height, width, channels), dtype=torch.uint8, device=device).permute(0, 3, 1, 2)


class ScreenMemory(_Ring):
    """Replay over uint8 screens stored once; states are rebuilt from them when sampled.

    The loop calls `observe(screen, first=...)` with every screen it renders (first=True right after a
    reset), then `push` for the transition that screen ends. The state recipe, the seed's difference of the
    last two screens or a stack of the last k, is read from the first pushed state and checked against it.
    """

    def __init__(self, capacity: int, seed: int = 0) -> None:
        super().__init__(capacity, seed)
        self._screens: Tensor | None = None  # ring of uint8 screens, indexed by screen id % len
        self._staging: Tensor | None = None  # one float screen laid out as the ring's, reused by every store
        self._next_id = 0
        self._window: list[int] = []  # screen ids of the current state
        self._pending: list[int] | None = None  # the state's ids plus the newest screen, awaiting its push
        self._ids: np.ndarray | None = None  # per transition: its state's screen ids and then the next screen's
        self._stack: int | None = None  # screens per state; None until the first push; 0 for the difference

    @property
    def _span(self) -> int:
        return 2 if not self._stack else self._stack

    def observe(self, screen: Tensor, *, first: bool) -> None:
        if screen.dim() != 4 or screen.shape[0] != 1:
            raise ValueError(
                f"ScreenMemory.observe: screen of shape {tuple(screen.shape)}, expected (1, C, H, W) as get_screen "
                "returns it; pass each screen with its batch and channel dimensions"
            )
        if first:
            self._pending = None
        elif not self._window:
            raise RuntimeError("ScreenMemory.observe(first=False) before any observe(first=True): reset first")
        screen_id = self._store(screen)
        if first:
            self._window = [screen_id]
        else:
            self._pending = [*self._window, screen_id]

    def _store(self, screen: Tensor) -> int:
        if self._screens is None:
            # Room for every screen a full ring of transitions refers to: one per transition, the screens
            # before the oldest one's and the newest one; `_grow` adds more after time-limit endings.
            # (H, W, C) screens make the seed's difference states channels-last in one pass (`ScreenBatch.dense`);
            # a stack recipe, learnt at the first push, lays the ring out as (C, H, W) instead (`_recipe`).
            self._screens = _screen_ring(self.capacity + 16, screen.shape[1:], screen.device, channels_last=True)
        if screen.shape[1:] != self._screens.shape[1:]:
            raise ValueError(
                f"ScreenMemory.observe: screen of shape {tuple(screen.shape)}, but this memory holds screens of "
                f"(1, {', '.join(map(str, self._screens.shape[1:]))}); observe screens of one size per memory"
            )
        if self._oldest_live_id() <= self._next_id - self._screens.shape[0]:
            self._grow()
        slot = self._screens[self._next_id % self._screens.shape[0]]
        # Scaled and rounded in a float buffer laid out as the ring is, so that the uint8 store is a plain cast
        # and the (C, H, W) -> (H, W, C) transpose happens while reading floats: 17 against 22 µs a screen here
        # when it happened while writing bytes.
        if self._staging is None:
            self._staging = torch.empty_strided(slot.shape, slot.stride(), dtype=torch.float32, device=slot.device)
        torch.mul(screen.detach()[0], 255, out=self._staging).round_()
        slot.copy_(self._staging)
        self._next_id += 1
        return self._next_id - 1

    def _oldest_live_id(self) -> int:
        if self._ids is None or self._size == 0:
            return min(self._window, default=self._next_id)
        oldest = self._next if self._size == self.capacity else 0
        return min(int(self._ids[oldest, 0]), *self._window)

    def _grow(self) -> None:
        assert self._screens is not None
        self._reallocate(self._screens.shape[0] + max(self._screens.shape[0] // 100, 16), self._channels_last)

    @property
    def _channels_last(self) -> bool:
        assert self._screens is not None
        return not self._screens.is_contiguous()

    def _reallocate(self, size: int, channels_last: bool) -> None:
        """A new ring of `size` screens in the given layout, holding every screen still referred to."""
        assert self._screens is not None
        old = self._screens
        new = _screen_ring(size, old.shape[1:], old.device, channels_last=channels_last)
        ids = torch.arange(self._oldest_live_id(), self._next_id)
        new[ids % size] = old[ids % old.shape[0]]
        self._screens = new
        self._staging = None  # `_store` lays out a new one as this ring is

    def _recipe(self, state: Tensor) -> None:
        """Learn how the loop builds states from the first pushed one; refuse states this memory cannot rebuild."""
        assert self._screens is not None
        channels = self._screens.shape[1]
        candidates = ([0] if state.shape[1] == channels else []) + (
            [state.shape[1] // channels] if state.shape[1] % channels == 0 else []
        )
        for stack in candidates:
            self._stack = stack
            ids = ([self._window[0]] * self._span + self._window)[-self._span :]
            state_screens = self._gather(np.array([ids]))
            rebuilt = _states(scale_to_unit_(state_screens.to(torch.float32)), bool(stack))
            if torch.equal(rebuilt, state.to(self._screens.device)):
                if stack:
                    # Stacks are flattened (k, C) channels: from (C, H, W) screens that is a view (`_float_states`).
                    self._reallocate(self._screens.shape[0], channels_last=False)
                return
        self._stack = None
        raise ValueError(
            f"ScreenMemory.push: the first state (shape {tuple(state.shape)}) is neither the difference of the "
            "last two observed screens nor a stack of them; ScreenMemory rebuilds states from the screens passed "
            "to observe(), so use StateMemory for states built any other way"
        )

    def _gather(self, ids: np.ndarray) -> Tensor:
        """(B, n) screen ids -> (B, n, C, H, W) uint8 screens (a copy: the ring goes on changing)."""
        assert self._screens is not None
        index = torch.from_numpy((ids % self._screens.shape[0]).ravel()).to(self._screens.device)
        if not self._channels_last:
            return self._screens.index_select(0, index).view(*ids.shape, *self._screens.shape[1:])
        pixels = self._screens.permute(0, 2, 3, 1).index_select(0, index)  # whole (H, W, C) screens
        return pixels.view(*ids.shape, *pixels.shape[1:]).movedim(-1, -3)

    def push(self, state: Tensor, action: Tensor, next_state: Tensor | None, reward: Tensor) -> None:
        if self._pending is None:
            raise RuntimeError(
                "ScreenMemory.push without a new screen: call observe(screen, first=False) with the screen "
                "that follows the action before pushing its transition"
            )
        if self._stack is None:
            self._recipe(state)
        span = self._span
        # A fresh episode's state repeats its first screen (the seed's zero difference, a stack of copies).
        window = ([self._pending[0]] * span + self._pending)[-span - 1 :]
        if self._ids is None:
            self._ids = np.zeros((self.capacity, span + 1), dtype=np.int64)
        slot = self._claim(action, reward, final=next_state is None)
        self._ids[slot] = window
        self._window, self._pending = window[1:], None
        if next_state is None:
            # Nothing refers to the screen after a final step: the next episode's first screen reuses its slot.
            self._next_id -= 1

    def sample_batch(self, batch_size: int) -> ScreenBatch:
        slots = self._draw(batch_size)
        assert self._ids is not None and self._screens is not None
        with single_threaded(self._screens.device):
            actions, rewards, continues = self._fields(slots, self._screens.device)
            return ScreenBatch(self._gather(self._ids[slots.numpy()]), actions, rewards, continues, bool(self._stack))

    def sample(self, batch_size: int) -> Batch:
        return self.sample_batch(batch_size).materialize()
