"""Implementations under benchmark: the reference, dqnbench's fast path, and a user's conformance adapter.

A benchmark subject has the pieces the training loop plugs in (`dqnbench.parts.TrainingParts`) plus the
processing-only screen step. Pieces an implementation does not supply are None, and the benchmarks that
need them skip with the missing piece named (`MissingPiece`), as the conformance kit does.

A user's `DQNAdapter` (`--dqn-impl=package.module:object`) is turned into the same shape: its memory's
`sample` output (transitions, a `Batch` or a `TransitionBatch`) is collated into a `Batch` with the
reference's `collate` where needed, and its `optimize_step` receives a `TransitionBatch` built from that
`Batch`. Those conversions are timed with the user's code, which is how the training loop would call it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dqnbench import registry
from dqnbench.config import DQNConfig
from dqnbench.conformance.adapter import DQNAdapter, OptimizeStepFn, TransitionBatch, load_adapter
from dqnbench.learner import Batch, collate, make_target
from dqnbench.parts import REFERENCE_IMPLEMENTATION, Memory, OptimizeFactory, OptimizeFn, TrainingParts, bind_optimize
from dqnbench.registry import Implementation

NetworkFactory = Callable[[int, int, int, int], nn.Module]
MemoryFactory = Callable[[int, int], Memory]
GetScreen = Callable[[Any, int], Tensor]
ExtractScreen = Callable[[np.ndarray, float], Tensor]


ADAPTER_FIELD = {"make_optimize": "optimize_step"}
"""Subject pieces whose `DQNAdapter` field has another name."""


class MissingPiece(LookupError):
    """A benchmark needs a piece the implementation does not supply; benchmarks skip on it."""


@dataclass(frozen=True)
class BenchSubject:
    """One implementation as a benchmark parameter; `name` is its test id."""

    name: str
    make_network: NetworkFactory | None
    """(height, width, n_actions, in_channels) -> Q-network."""
    make_memory: MemoryFactory | None
    """(capacity, seed) -> memory with push / sample_batch / len."""
    make_optimize: OptimizeFactory | None
    """(policy, target, optimizer, config) -> one optimisation step on a `Batch`."""
    get_screen: GetScreen | None
    """(env, height) -> (1, 3, height, W) screen, rendering included."""
    extract_screen: ExtractScreen | None
    """(frame (H, W, 3) uint8, cart_x) -> (1, 3, 40, W) screen: crop and resize only."""
    make_target: Callable[[nn.Module], nn.Module] = make_target
    """(policy) -> frozen target network."""
    benchmarks: frozenset[str] | None = None
    """Benchmark functions this subject is timed in (None: all). A variant that changes some pieces of another
    subject is timed only where those pieces run; elsewhere its figures would repeat the other's."""
    devices: frozenset[str] | None = None
    """Device types this subject runs on (None: all); its cases on other devices skip, saying so."""

    def require(self, *pieces: str) -> None:
        """Raise `MissingPiece` naming (as a `DQNAdapter` field) every requested piece left as None."""
        missing = [ADAPTER_FIELD.get(piece, piece) for piece in pieces if getattr(self, piece) is None]
        if missing:
            raise MissingPiece(
                f"implementation {self.name!r} does not supply {', '.join(missing)}; "
                "supply it in its DQNAdapter to benchmark this"
            )

    @classmethod
    def from_parts(cls, parts: TrainingParts, extract_screen: ExtractScreen | None) -> BenchSubject:
        return cls(
            name=parts.name,
            make_network=parts.make_network,
            make_memory=parts.make_memory,
            make_optimize=parts.make_optimize,
            get_screen=parts.get_screen,
            extract_screen=extract_screen,
        )

    @classmethod
    def from_adapter(cls, adapter: DQNAdapter, name: str | None = None) -> BenchSubject:
        """The benchmark view of a conformance adapter (missing pieces stay None)."""
        memory = adapter.make_memory
        optimize = adapter.optimize_step
        get_screen = adapter.get_screen
        return cls(
            name=name or adapter.name,
            make_network=adapter.make_network,
            make_memory=None if memory is None else (lambda capacity, seed: BatchingMemory(memory(capacity, seed))),
            make_optimize=None if optimize is None else _adapter_optimize(optimize),
            get_screen=None if get_screen is None else (lambda env, height: _screen_at_height(get_screen, env, height)),
            extract_screen=adapter.extract_screen,
            make_target=adapter.make_target or make_target,
        )


def _screen_at_height(get_screen: Callable[[Any], Tensor], env: Any, height: int) -> Tensor:
    if height != 40:
        raise ValueError(f"a DQNAdapter's get_screen renders the seed's 40-row patch; the benchmark asked for {height}")
    return get_screen(env)


class BatchingMemory:
    """An adapter's replay memory with the training loop's `sample_batch`, collating what `sample` returns."""

    def __init__(self, memory: Any) -> None:
        self.memory = memory

    def observe(self, screen: Tensor, *, first: bool) -> None:
        """The adapter protocol's memories take states only; the screens the loop renders are not needed."""

    def push(self, state: Tensor, action: Tensor, next_state: Tensor | None, reward: Tensor) -> None:
        self.memory.push(state, action, next_state, reward)

    def sample_batch(self, batch_size: int) -> Batch:
        return as_batch(self.memory.sample(batch_size))

    def __len__(self) -> int:
        return len(self.memory)


def as_batch(sampled: Any) -> Batch:
    """A `Batch` from any `sample` output the adapter protocol allows."""
    if isinstance(sampled, Batch):
        return sampled
    if isinstance(sampled, TransitionBatch):
        return sampled.seed_batch(final=sampled.terminated)
    if isinstance(sampled, Sequence):
        return collate(list(sampled))
    raise TypeError(
        f"memory.sample returned a {type(sampled).__name__}; the adapter protocol allows a sequence of "
        "transitions, a dqnbench.learner.Batch or a TransitionBatch"
    )


def transition_batch(batch: Batch) -> TransitionBatch:
    """The seed-layout `Batch` as a `TransitionBatch`: final rows get a zero next state and count as terminated."""
    next_states = torch.zeros_like(batch.states)
    next_states[batch.non_final_mask] = batch.non_final_next_states
    terminated = ~batch.non_final_mask
    return TransitionBatch(
        states=batch.states,
        actions=batch.actions,
        rewards=batch.rewards,
        next_states=next_states,
        terminated=terminated,
        truncated=torch.zeros_like(terminated),
    )


def _adapter_optimize(optimize_step: OptimizeStepFn) -> OptimizeFactory:
    def seed_step(
        policy: nn.Module,
        target: nn.Module,
        optimizer: torch.optim.Optimizer,
        batch: Batch,
        *,
        gamma: float,
        grad_clip: float,
        double_dqn: bool,
    ) -> Tensor:
        return optimize_step(policy, target, optimizer, transition_batch(batch), gamma, grad_clip)

    return bind_optimize(seed_step)


def implementation_subject(implementation: Implementation) -> BenchSubject:
    """An implementation's training parts where it has them (the pieces the training loop runs), its adapter's
    otherwise; frame processing from its adapter."""
    adapter = implementation.adapter
    if implementation.parts is None:
        return BenchSubject.from_adapter(implementation.require_adapter(), name=implementation.name)
    extract = None if adapter is None else adapter.extract_screen
    subject = BenchSubject.from_parts(implementation.parts, extract_screen=extract)
    return replace(subject, name=implementation.name)


def registered_subject(name: str) -> BenchSubject:
    """The implementation registered as `name` (`dqnbench.registry`)."""
    return implementation_subject(registry.load(name))


REFERENCE_SUBJECT = implementation_subject(REFERENCE_IMPLEMENTATION)
"""The tutorial-faithful reference: the training loop's parts and the seed's crop + PIL resize."""


def fast_subject() -> BenchSubject:
    """dqnbench's fast path, as registered (`dqnbench.fast.IMPLEMENTATION`)."""
    return registered_subject("fast")


def _fast_step_variant(name: str, devices: frozenset[str] | None = None, **options: Any) -> BenchSubject:
    """The fast path with config `options` for its optimisation step, the only piece they change: timed in the
    optimisation and training-step benchmarks alone."""
    fast = fast_subject()
    make_optimize = fast.make_optimize
    assert make_optimize is not None

    def make_variant_optimize(
        policy: nn.Module, target: nn.Module, optimizer: torch.optim.Optimizer, config: DQNConfig
    ) -> OptimizeFn:
        return make_optimize(policy, target, optimizer, config.replace(impl="fast", **options))

    return replace(
        fast,
        name=name,
        make_optimize=make_variant_optimize,
        benchmarks=frozenset({"test_optimize", "test_train_step"}),
        devices=devices,
    )


def fast_compiled_subject() -> BenchSubject:
    """The fast path with `compile=True` (`dqnbench train --impl fast --compile`). Its `first_call_ms` includes
    the compilation; the timed rounds are the steady state.
    """
    return _fast_step_variant("fast-compiled", compile=True)


def fast_graphed_subject() -> BenchSubject:
    """The fast path with `cuda_graph=True` (`dqnbench train --impl fast --cuda-graph`), on CUDA only: its
    optimisation step replayed as one CUDA graph. Its `first_call_ms` includes the capture (three eager warm-up
    steps and the recording).
    """
    return _fast_step_variant("fast-graphed", frozenset({"cuda"}), device="cuda", cuda_graph=True)


def user_subject(spec: str) -> BenchSubject:
    """The implementation `--dqn-impl=package.module:object` names, through its conformance adapter."""
    return BenchSubject.from_adapter(load_adapter(spec))
