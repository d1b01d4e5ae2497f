"""Replay-memory checks: capacity, eviction, cycling, sampling, copies, seeding."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dqnbench.conformance.adapter import DQNAdapter, TransitionBatch
from dqnbench.conformance.checks.core import (
    fail,
    invoke,
    register_check,
    seeded,
)

STATE_SHAPE = (1, 3, 2, 2)


@dataclass(frozen=True)
class _Item:
    state: Tensor
    action: Tensor
    next_state: Tensor | None
    reward: Tensor


def _item(i: int) -> _Item:
    """Transition number i: its state is filled with i, every fourth one is terminal."""
    next_state = None if i % 4 == 3 else torch.full(STATE_SHAPE, i + 0.5)
    return _Item(torch.full(STATE_SHAPE, float(i)), torch.tensor([[i % 2]]), next_state, torch.tensor([float(i)]))


def _push(memory: Any, i: int) -> None:
    item = _item(i)
    invoke(f"memory.push(<transition {i}>)", memory.push, item.state, item.action, item.next_state, item.reward)


def _memory(adapter: DQNAdapter, capacity: int, seed: int = 0) -> Any:
    assert adapter.make_memory is not None
    return invoke(f"make_memory({capacity}, {seed})", adapter.make_memory, capacity, seed)


def _rows(sampled: Any) -> list[_Item]:
    """Normalise what `sample` returned (transitions, a learner.Batch or a TransitionBatch) to items."""
    if isinstance(sampled, TransitionBatch):
        nexts = sampled.next_states_or_none(sampled.terminated)
        return [
            _Item(sampled.states[i : i + 1], sampled.actions[i : i + 1], nexts[i], sampled.rewards[i : i + 1])
            for i in range(len(sampled.rewards))
        ]
    if hasattr(sampled, "non_final_mask"):  # dqnbench.learner.Batch
        nexts_iter = iter(sampled.non_final_next_states.split(1))
        return [
            _Item(
                sampled.states[i : i + 1],
                sampled.actions[i : i + 1],
                next(nexts_iter) if bool(m) else None,
                sampled.rewards[i : i + 1],
            )
            for i, m in enumerate(sampled.non_final_mask)
        ]
    rows = []
    for t in sampled:
        fields = (t.state, t.action, t.next_state, t.reward) if hasattr(t, "state") else tuple(t)[:4]
        rows.append(_Item(*fields))
    return rows


def _id(row: _Item) -> int:
    return round(float(torch.as_tensor(row.state).flatten()[0]))


def _sample(memory: Any, batch_size: int) -> list[_Item]:
    call = f"memory.sample({batch_size})"
    rows = _rows(invoke(call, memory.sample, batch_size))
    if len(rows) != batch_size:
        raise fail(call, f"expected {batch_size} transitions, got {len(rows)}", None)
    return rows


def _ids(memory: Any, batch_size: int) -> list[int]:
    return [_id(row) for row in _sample(memory, batch_size)]


HELD_DRAWS = 60
"""Draws of sample(len(memory)) `_held` unions: with replacement, one transition of 7 is missed by all 60 with
probability (6/7)^(7*60) < 1e-28, so a memory sampling with replacement is judged on what it holds, too."""


def _held(memory: Any) -> tuple[list[int], list[_Item]]:
    """The transitions `memory` holds, as seen through sampling, and the rows sampled."""
    size = _length(memory)
    rows: list[_Item] = []
    for _ in range(HELD_DRAWS):
        rows += _sample(memory, size)
        if len({_id(row) for row in rows}) >= size:
            break
    return sorted({_id(row) for row in rows}), rows


def _length(memory: Any) -> int:
    return int(invoke("len(memory)", len, memory))


EVICTS_NEWEST = "the newest transition is evicted instead of the oldest"


@register_check("make_memory")
def check_replay_capacity(adapter: DQNAdapter) -> str:
    """len(memory) grows by one per push up to the capacity and then stays there."""
    capacity = 5
    memory = _memory(adapter, capacity)
    for i in range(3 * capacity):
        _push(memory, i)
        if _length(memory) != min(i + 1, capacity):
            raise fail(
                f"len(memory) after {i + 1} pushes into make_memory({capacity}, 0)",
                f"expected {min(i + 1, capacity)}, got {_length(memory)} (exact)",
                "the memory is not bounded by its capacity"
                if i >= capacity
                else "push does not store every transition",
            )
    return f"len(memory) = min(pushes, {capacity}) for {3 * capacity} pushes"


@register_check("make_memory")
def check_replay_eviction_order(adapter: DQNAdapter) -> str:
    """Once full, every push evicts the oldest transition (first in, first out)."""
    capacity = 5
    memory = _memory(adapter, capacity)
    for i in range(3 * capacity):
        _push(memory, i)
        size = min(i + 1, capacity)
        held, _ = _held(memory)
        expected = list(range(i + 1 - size, i + 1))
        if held != expected:
            newest = [*range(capacity - 1), i]
            cause = EVICTS_NEWEST if held == newest else None
            raise fail(
                f"memory.sample({size}) after pushing transitions 0..{i} into make_memory({capacity}, 0)",
                f"expected transitions {expected}, got {held}",
                cause,
            )
    return f"after each of {3 * capacity} pushes the memory holds exactly the {capacity} newest transitions"


@register_check("make_memory")
def check_replay_cycling(adapter: DQNAdapter) -> str:
    """After many wraps of the ring every stored transition keeps its own action, next state and reward."""
    capacity, pushes = 7, 31
    memory = _memory(adapter, capacity)
    for i in range(pushes):
        _push(memory, i)
    held, sampled = _held(memory)
    for row in sampled:
        i = _id(row)
        want = _item(i)
        checks = {
            "action": (torch.as_tensor(row.action).flatten(), want.action.flatten()),
            "reward": (torch.as_tensor(row.reward).flatten(), want.reward.flatten()),
        }
        for field, (got, exp) in checks.items():
            if got.tolist() != exp.tolist():
                raise fail(
                    f"memory.sample({capacity}) after {pushes} pushes",
                    f"transition {i}: expected {field} {exp.tolist()}, got {got.tolist()}",
                    "a transition's fields were stored in different slots when the ring wrapped",
                )
        if (row.next_state is None) != (want.next_state is None) or (
            row.next_state is not None and float(torch.as_tensor(row.next_state).flatten()[0]) != i + 0.5
        ):
            raise fail(
                f"memory.sample({capacity}) after {pushes} pushes",
                f"transition {i}: expected next_state {'None' if want.next_state is None else i + 0.5}, "
                f"got {None if row.next_state is None else float(torch.as_tensor(row.next_state).flatten()[0])}",
                "next_state=None (terminal) must be kept as such, and next states must stay with their transition",
            )
    expected = list(range(pushes - capacity, pushes))
    if held != expected:
        raise fail(
            f"memory.sample({capacity}) after {pushes} pushes",
            f"expected transitions {expected}, got {held}",
            EVICTS_NEWEST if held == [*range(capacity - 1), pushes - 1] else None,
        )
    return f"{pushes} pushes through a ring of {capacity}: the newest {capacity} kept, fields intact"


@register_check("make_memory")
def check_replay_distinct_samples(adapter: DQNAdapter) -> str:
    """Samples are drawn without replacement, and asking for more than is stored raises."""
    capacity = 50
    memory = _memory(adapter, capacity)
    for i in range(capacity):
        _push(memory, i)
    for draw, size in enumerate([capacity] + [20] * 20):
        ids = _ids(memory, size)
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise fail(
                f"memory.sample({size}) (draw {draw}) from a memory of {capacity}",
                f"expected {size} distinct transitions, got {len(set(ids))} distinct; repeated: {repeated[:10]}",
                "sampling with replacement (random.choices, np.random.randint): use random.sample",
            )
    try:
        memory.sample(capacity + 1)
    except Exception:
        return f"{21} draws without repeats; sample({capacity + 1}) of {capacity} raises"
    raise fail(
        f"memory.sample({capacity + 1}) from a memory of {capacity}",
        "expected an exception, got a batch",
        None,
    )


@register_check("make_memory")
def check_replay_no_aliasing(adapter: DQNAdapter) -> str:
    """The memory stores copies: the caller changing its tensors in place afterwards changes nothing stored."""
    memory = _memory(adapter, 4)
    item = _item(0)
    invoke(
        "memory.push(state, action, next_state, reward)",
        memory.push,
        item.state,
        item.action,
        item.next_state,
        item.reward,
    )
    assert item.next_state is not None
    for tensor in (item.state, item.action, item.next_state, item.reward):
        tensor.fill_(-7)
    (row,) = _rows(invoke("memory.sample(1)", memory.sample, 1))
    stored = {"state": row.state, "action": row.action, "next_state": row.next_state, "reward": row.reward}
    expected = {"state": 0.0, "action": 0.0, "next_state": 0.5, "reward": 0.0}
    for name, value in stored.items():
        got = float(torch.as_tensor(value).flatten()[0]) if value is not None else None
        if got != expected[name]:
            raise fail(
                f"memory.sample(1) after the caller did {name}.fill_(-7) on the pushed tensor",
                f"expected the stored {name} to stay {expected[name]}, got {got}",
                "push stores a reference (alias) to the caller's tensor: store tensor.detach().clone()",
            )
    return "stored transitions are unaffected by in-place changes to the pushed tensors"


@register_check("make_memory")
def check_replay_seeded_sampling(adapter: DQNAdapter) -> str:
    """Two memories with the same seed and pushes sample the same transitions, whatever the global RNGs do."""
    draws = []
    for global_seed in (1, 2):
        memory = _memory(adapter, 30, seed=3)
        for i in range(30):
            _push(memory, i)
        random.seed(global_seed)
        np.random.seed(global_seed)
        with seeded(global_seed):
            draws.append([_ids(memory, 8) for _ in range(4)])
    if draws[0] != draws[1]:
        raise fail(
            "memory.sample(8) x4 from two make_memory(30, 3) fed the same transitions",
            f"expected equal draws, got {draws[0][0]} vs {draws[1][0]} (first draw)",
            "sampling uses a global RNG (random, numpy or torch) instead of one seeded from the `seed` argument",
        )
    return "same seed, same pushes: same samples, independent of the global random/numpy/torch RNGs"


UNIFORM_CAPACITY, UNIFORM_PUSHES, UNIFORM_BATCH, UNIFORM_DRAWS = 40, 100, 8, 500
UNIFORM_FALSE_ALARM = 1e-6
"""The chance that a uniform sampler fails the chi-square test below. The draws are seeded, so a given
implementation passes or fails every time; this is the chance that a correct one is unlucky in its seed."""


def chi_square_critical(dof: int, false_alarm: float) -> float:
    """The chi-square quantile of 1 - false_alarm (Wilson-Hilferty: within 1% of the exact value for dof >= 10)."""
    z = NormalDist().inv_cdf(1 - false_alarm)
    return float(dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3)


@register_check("make_memory")
def check_replay_uniform_sampling(adapter: DQNAdapter) -> str:
    """Sampling is uniform over everything stored (chi-square test, false-alarm rate 1e-6), after the ring wrapped."""
    memory = _memory(adapter, UNIFORM_CAPACITY, seed=5)
    for i in range(UNIFORM_PUSHES):
        _push(memory, i)
    held = list(range(UNIFORM_PUSHES - UNIFORM_CAPACITY, UNIFORM_PUSHES))
    counts = dict.fromkeys(held, 0)
    for _ in range(UNIFORM_DRAWS):
        for i in _ids(memory, UNIFORM_BATCH):
            counts[i] = counts.get(i, 0) + 1
    expected = UNIFORM_DRAWS * UNIFORM_BATCH / UNIFORM_CAPACITY
    statistic = sum((n - expected) ** 2 / expected for n in counts.values())
    critical = chi_square_critical(UNIFORM_CAPACITY - 1, UNIFORM_FALSE_ALARM)
    call = f"{UNIFORM_DRAWS} x memory.sample({UNIFORM_BATCH}) after {UNIFORM_PUSHES} pushes into make_memory(40, 5)"
    if statistic > critical or set(counts) != set(held):
        never = [i for i in held if counts[i] == 0]
        stranger = sorted(set(counts) - set(held))
        oldest, newest = sum(counts[i] for i in held[:10]), sum(counts[i] for i in held[-10:])
        raise fail(
            call,
            f"expected each of the {UNIFORM_CAPACITY} stored transitions about {expected:.0f} times; chi-square "
            f"{statistic:.1f} > {critical:.1f} (false-alarm rate {UNIFORM_FALSE_ALARM:g}); the 10 oldest drawn "
            f"{oldest} times, the 10 newest {newest}; never drawn: {never[:10]}"
            + (f"; drawn though evicted: {stranger[:10]}" if stranger else ""),
            "sampling favours the newest transitions (a recent window, or the last batch_size pushed)"
            if newest > 2 * oldest and never and not stranger
            else None,
        )
    return f"chi-square {statistic:.1f} <= {critical:.1f} over {UNIFORM_CAPACITY} transitions ({UNIFORM_DRAWS} draws)"
