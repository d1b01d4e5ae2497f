"""Replay memory at capacity 10000: one push into the full memory, and sample + collate of a batch of 128."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import cycle, islice

import pytest
import torch

from dqnbench.bench.facts import current_rss_mb, tensor_bytes
from dqnbench.bench.subjects import BenchSubject
from dqnbench.bench.workload import Step, Workloads, fill, rollout
from dqnbench.config import SEED_CONFIG
from dqnbench.parts import Memory

CAPACITY = SEED_CONFIG.memory_capacity
BATCH_SIZE = SEED_CONFIG.batch_size
QUICK_FILL = 2 * BATCH_SIZE


@dataclass
class FullMemory:
    memory: Memory
    stored: int
    growth_mb: float
    """RSS growth (CPU) or CUDA memory allocated (CUDA) while filling; on CPU it misses memory an earlier
    benchmark freed and the fill reused."""
    tensor_mb: float
    """Bytes of the tensors the filled memory holds (each storage once): what `stored` transitions cost."""
    spare: list[Step]
    """Steps to push in the timed loop: 13 whole episodes, observed screens included."""
    evicted: bool = False
    """Every transition of the fill has been pushed out by spare ones (the push benchmark times only those)."""


def _memory_in_use_mb(device: torch.device) -> float:
    return torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else current_rss_mb()


@pytest.fixture
def full_memory(subject: BenchSubject, device: torch.device, screens, quick: bool, workloads: Workloads) -> FullMemory:
    """The implementation's memory filled to capacity (a quick run fills two batches' worth only), built once."""

    def build() -> FullMemory:
        subject.require("make_memory")
        assert subject.make_memory is not None
        steps = rollout(screens)
        spare = list(islice(steps, 13 * 20))
        stored = QUICK_FILL if quick else CAPACITY
        before = _memory_in_use_mb(device)
        memory = subject.make_memory(CAPACITY, SEED_CONFIG.seed)
        fill(memory, steps, stored)
        growth = _memory_in_use_mb(device) - before
        return FullMemory(memory, stored, growth, tensor_bytes(memory) / 2**20, spare)

    return workloads.get(("full-memory", subject.name, device, quick), build)


def _facts(full: FullMemory) -> dict[str, object]:
    return {
        "capacity": CAPACITY,
        "stored": full.stored,
        "memory_growth_mb": full.growth_mb,
        "memory_tensor_mb": full.tensor_mb,
    }


def test_replay_push(timed, full_memory: FullMemory) -> None:
    pending = cycle(full_memory.spare)
    memory = full_memory.memory
    # Evict every transition the fill made before timing: the reference frees an evicted transition's tensors
    # (~250 us here) but not a spare one's, which the cycle keeps alive, so timing that first pass would mix
    # two populations of rounds and put the median wherever they meet.
    if not full_memory.evicted:
        for _ in range(full_memory.stored):
            next(pending).feed(memory)
        full_memory.evicted = True
    # Each call is one env step's worth: the screens the loop observed and the push.
    timed("replay-push", lambda: next(pending).feed(memory), batch_size=1, **_facts(full_memory))


def test_replay_sample(timed, full_memory: FullMemory) -> None:
    memory = full_memory.memory
    timed(
        f"replay-sample-b{BATCH_SIZE}",
        lambda: memory.sample_batch(BATCH_SIZE),
        batch_size=BATCH_SIZE,
        **_facts(full_memory),
    )
