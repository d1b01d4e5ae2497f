"""The adapter protocol: how any DQN implementation plugs into the conformance kit.

An implementation is described by one `DQNAdapter`: a frozen dataclass whose fields are the pieces the
kit knows how to check. Every piece is optional. A piece left as None is *not supplied*: each check that
needs it is reported as ``skipped`` with the missing field named, never silently passed. Supply only the
pieces your code has; wrap your functions in small lambdas or functions when their signatures differ.

All callables are called **positionally**, with the arguments in the order shown.

=================  ==========================================================================================
field              signature and contract
=================  ==========================================================================================
conv2d_size_out    ``(size, kernel_size, stride) -> int``: output length of an unpadded ``nn.Conv2d`` along
                   one axis. Checked against what ``nn.Conv2d`` really produces.
make_network       ``(height, width, n_actions, in_channels) -> nn.Module``: a Q-network mapping
                   ``(N, in_channels, height, width)`` float screens to ``(N, n_actions)`` Q-values. Checked on
                   several screen sizes, and, when its parameters have the seed architecture's shapes
                   (3 conv+BatchNorm blocks and a linear head), loaded with the golden weights and compared
                   with the golden outputs. The other network checks use it too (the reference `DQN` when
                   None).
bellman_targets    ``(target_net, batch: TransitionBatch, gamma) -> Tensor (B,)``: the TD targets
                   ``r + gamma * max_a Q_target(s', a)``, with no bootstrap where the episode *terminated*.
                   `batch` carries both flags (`terminated`, `truncated`) and both common layouts
                   (`batch.seed_batch(final=...)` for the ``next_state=None`` layout,
                   `batch.terminated` / `batch.dones` masks), so your code chooses what is final: choosing
                   `batch.dones` (termination *or* truncation) is the classic bug the kit detects. The kit
                   passes a target network whose parameters require gradients, to see whether the targets
                   are detached.
make_memory        ``(capacity, seed) -> memory`` with ``push(state, action, next_state, reward)`` (the seed
                   layout: ``next_state`` is None when the episode terminated), ``sample(batch_size)`` and
                   ``len(memory)``. `sample` may return a sequence of transitions (objects with
                   ``state/action/next_state/reward`` attributes, e.g. `dqnbench.replay.Transition`, or
                   tuples in that order), a `dqnbench.learner.Batch`, or a `TransitionBatch`. Sampling more
                   than ``len(memory)`` transitions must raise.
epsilon            ``(steps_done) -> float``: the exploration rate of the schedule with the seed's constants
                   (start 0.9, end 0.05, decay 200 steps): ``0.05 + 0.85 * exp(-steps_done / 200)``.
epsilon_trace      ``(episode_lengths) -> Sequence[float]``: drive your acting loop's step counter through
                   episodes of these lengths and return the exploration rate used for every action, in
                   order (``sum(episode_lengths)`` values). Detects a counter reset every episode and a
                   counter incremented before the rate is computed (off by one step).
greedy_action      ``(net, state) -> Tensor (N, 1) long``: argmax of Q; must leave BatchNorm running
                   statistics (and the module's train/eval mode) as they were.
select_action      ``(net, state, eps, n_actions, rng: random.Random) -> Tensor (1, 1) long``: epsilon-greedy;
                   random actions must come from `rng`, uniformly.
optimize_step      ``(policy_net, target_net, optimizer, batch: TransitionBatch, gamma, grad_clip) -> Tensor``:
                   one step on the Huber (smooth L1) TD loss of ``Q(s, a)`` against the Bellman targets,
                   gradients clamped element-wise to ``[-grad_clip, grad_clip]``, then ``optimizer.step()``;
                   returns the loss computed before the step. Use the `optimizer` given (the kit records the
                   gradients it receives) and honour `grad_clip` (the kit passes a small one so clamping is
                   certainly active).
make_target        ``(policy_net) -> nn.Module``: a target network equal to the policy network, sharing no
                   storage with it, in eval mode.
sync_target        ``(policy_net, target_net) -> None``: copy parameters *and* buffers (BatchNorm running
                   statistics); the target stays in eval mode and shares no storage with the policy.
extract_screen     ``(frame, cart_x) -> Tensor (1, 3, 40, W)``: the seed's screen patch from a rendered
                   ``(H, W, 3)`` uint8 CartPole frame and the cart position (x_threshold 2.4). Compared with
                   golden patches, one of them from an 800x1200 render.
get_screen         ``(env) -> Tensor (1, 3, 40, W)``: the same, rendering a gymnasium CartPole created with
                   ``render_mode="rgb_array"`` itself.
=================  ==========================================================================================

A worked example (a user's own DQN, adapted and checked) is `dqnbench.conformance.example` and the README; in short::

    # mypkg/conformance_adapter.py
    from dqnbench.conformance.adapter import DQNAdapter
    from mypkg import agent

    ADAPTER = DQNAdapter(
        name="mypkg",
        make_network=lambda h, w, n, c: agent.QNet(h, w, n, c),
        bellman_targets=lambda target, batch, gamma: agent.targets(
            target, batch.rewards, batch.next_states, batch.terminated, gamma
        ),
        epsilon=agent.epsilon_at,
    )

    $ pytest --pyargs dqnbench.conformance --dqn-impl=mypkg.conformance_adapter:ADAPTER

`load_adapter("package.module:object")` resolves such a string (the object may also be a zero-argument
callable returning a `DQNAdapter`); `REFERENCE` is dqnbench's own implementation.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dqnbench import learner, nets, policy, registry, replay, screen


@dataclass(frozen=True)
class TransitionBatch:
    """A minibatch as the environment produced it: every next state present, both episode-end flags.

    Gymnasium returns a next observation even when the episode ends, so `next_states` has a row for every
    transition; whether to bootstrap from it is the implementation's decision (only where not terminated).
    """

    states: Tensor
    """(B, C, H, W) float."""
    actions: Tensor
    """(B, 1) long."""
    rewards: Tensor
    """(B,) float."""
    next_states: Tensor
    """(B, C, H, W) float: the observation after each action."""
    terminated: Tensor
    """(B,) bool: the episode ended in a terminal state (no bootstrap)."""
    truncated: Tensor
    """(B,) bool: the episode was cut by a time limit (bootstrap from the next state)."""

    @property
    def dones(self) -> Tensor:
        """terminated | truncated: the legacy Gym ``done`` flag (not the right bootstrap mask)."""
        return self.terminated | self.truncated

    def next_states_or_none(self, final: Tensor) -> list[Tensor | None]:
        """Per transition, its next state as (1, C, H, W), or None where `final` is True (the seed layout)."""
        return [None if bool(f) else self.next_states[i : i + 1] for i, f in enumerate(final)]

    def seed_batch(self, final: Tensor) -> learner.Batch:
        """This batch in the seed's layout (`dqnbench.learner.Batch`), treating rows where `final` is True as final."""
        if final.shape != self.rewards.shape or final.dtype != torch.bool:
            raise ValueError(
                f"TransitionBatch.seed_batch(final=...): expected a bool mask of shape {tuple(self.rewards.shape)}, "
                f"got {final.dtype} of shape {tuple(final.shape)}; pass batch.terminated"
            )
        continues = ~final
        return learner.Batch(
            states=self.states,
            actions=self.actions,
            rewards=self.rewards,
            non_final_mask=continues,
            non_final_next_states=self.next_states[continues],
        )


NetworkFactory = Callable[[int, int, int, int], nn.Module]
BellmanTargetsFn = Callable[[nn.Module, TransitionBatch, float], Tensor]
MemoryFactory = Callable[[int, int], Any]
OptimizeStepFn = Callable[[nn.Module, nn.Module, torch.optim.Optimizer, TransitionBatch, float, float], Tensor]


@dataclass(frozen=True)
class DQNAdapter:
    """The pieces of one DQN implementation the conformance kit can check (see the module docstring).

    Every piece defaults to None: not supplied, so its checks are skipped with the reason shown.
    """

    name: str
    """Shown in the summary table and written to the JSON result."""
    conv2d_size_out: Callable[[int, int, int], int] | None = None
    """(size, kernel_size, stride) -> output length of an unpadded Conv2d."""
    make_network: NetworkFactory | None = None
    """(height, width, n_actions, in_channels) -> Q-network."""
    bellman_targets: BellmanTargetsFn | None = None
    """(target_net, batch, gamma) -> (B,) TD targets, no bootstrap where terminated."""
    make_memory: MemoryFactory | None = None
    """(capacity, seed) -> replay memory with push / sample / len."""
    epsilon: Callable[[int], float] | None = None
    """(steps_done) -> exploration rate, with the seed's constants (0.9, 0.05, 200)."""
    epsilon_trace: Callable[[Sequence[int]], Sequence[float]] | None = None
    """(episode_lengths) -> exploration rate used at every step of those episodes, in order."""
    greedy_action: Callable[[nn.Module, Tensor], Tensor] | None = None
    """(net, state) -> (N, 1) long argmax actions, BatchNorm statistics untouched."""
    select_action: Callable[[nn.Module, Tensor, float, int, random.Random], Tensor] | None = None
    """(net, state, eps, n_actions, rng) -> (1, 1) long epsilon-greedy action."""
    optimize_step: OptimizeStepFn | None = None
    """(policy_net, target_net, optimizer, batch, gamma, grad_clip) -> loss before the step."""
    make_target: Callable[[nn.Module], nn.Module] | None = None
    """(policy_net) -> an independent copy in eval mode."""
    sync_target: Callable[[nn.Module, nn.Module], None] | None = None
    """(policy_net, target_net) -> None; copies parameters and buffers."""
    extract_screen: Callable[[np.ndarray, float], Tensor] | None = None
    """(frame (H, W, 3) uint8, cart_x) -> (1, 3, 40, W) float screen patch."""
    get_screen: Callable[[Any], Tensor] | None = None
    """(env) -> (1, 3, 40, W) float screen patch of the env's current state."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"DQNAdapter(name={self.name!r}): name must be a non-empty string")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "name" and value is not None and not callable(value):
                raise TypeError(
                    f"DQNAdapter(name={self.name!r}).{f.name} is a {type(value).__name__}, not a callable; "
                    "pass a function (or None when the implementation does not supply this piece)"
                )

    def supplied(self) -> list[str]:
        """Names of the pieces this adapter supplies."""
        return [f.name for f in fields(self) if f.name != "name" and getattr(self, f.name) is not None]


PIECES: tuple[str, ...] = tuple(f.name for f in fields(DQNAdapter) if f.name != "name")
"""Every piece an adapter can supply, in declaration order."""


def _reference_bellman_targets(target_net: nn.Module, batch: TransitionBatch, gamma: float) -> Tensor:
    seed = batch.seed_batch(final=batch.terminated)
    return learner.bellman_targets(
        seed.rewards, learner.next_state_values(target_net, seed), seed.non_final_mask, gamma
    )


def _reference_optimize_step(
    policy_net: nn.Module,
    target_net: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: TransitionBatch,
    gamma: float,
    grad_clip: float,
) -> Tensor:
    return learner.optimize_step(
        policy_net, target_net, optimizer, batch.seed_batch(final=batch.terminated), gamma=gamma, grad_clip=grad_clip
    )


def _reference_epsilon_trace(episode_lengths: Sequence[int]) -> list[float]:
    # dqnbench.train computes epsilon(total_steps) before each action and counts the step after it,
    # across episodes.
    total = sum(episode_lengths)
    return [policy.epsilon(step) for step in range(total)]


REFERENCE = DQNAdapter(
    name="dqnbench.reference",
    conv2d_size_out=nets.conv2d_size_out,
    make_network=nets.DQN,
    bellman_targets=_reference_bellman_targets,
    make_memory=replay.ReplayMemory,
    epsilon=policy.epsilon,
    epsilon_trace=_reference_epsilon_trace,
    greedy_action=policy.greedy_action,
    select_action=policy.select_action,
    optimize_step=_reference_optimize_step,
    make_target=learner.make_target,
    sync_target=learner.sync_target,
    extract_screen=screen.extract_screen,
    get_screen=screen.get_screen,
)
"""dqnbench's own implementation: every piece supplied."""

REFERENCE_SPEC = "dqnbench.conformance.adapter:REFERENCE"
"""The `--dqn-impl` value that selects `REFERENCE` (the default)."""


class AdapterLoadError(ValueError):
    """`load_adapter` could not turn a "package.module:object" string into a `DQNAdapter`."""


def load_adapter(spec: str) -> DQNAdapter:
    """Resolve a registered implementation's name (`dqnbench.registry`) or "package.module:object" to a
    `DQNAdapter`.

    `object` may be a dotted attribute path (``module:Class.ADAPTER``) and may name a `DQNAdapter` or a
    zero-argument callable returning one. Errors name the string and the fix.
    """
    if ":" not in spec and spec in registry.names():
        return registry.load(spec).require_adapter()
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise AdapterLoadError(
            f"--dqn-impl={spec!r}: expected 'package.module:object', e.g. {REFERENCE_SPEC!r}; "
            "put a colon between the module path and the adapter's name"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise AdapterLoadError(
            f"--dqn-impl={spec!r}: module {module_name!r} could not be imported ({error}); "
            "install the package that provides it or run pytest from the folder that contains it"
        ) from error
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            adapters = sorted(
                name for name, value in getattr(target, "__dict__", {}).items() if isinstance(value, DQNAdapter)
            )
            hint = f"the DQNAdapter objects there are {adapters}" if adapters else "define a DQNAdapter there"
            raise AdapterLoadError(
                f"--dqn-impl={spec!r}: {getattr(target, '__name__', module_name)!r} has no attribute {part!r}; {hint}"
            )
        target = getattr(target, part)
    if not isinstance(target, DQNAdapter) and callable(target) and not isinstance(target, type):
        target = target()
    if not isinstance(target, DQNAdapter):
        raise AdapterLoadError(
            f"--dqn-impl={spec!r}: {attribute!r} is a {type(target).__name__}, not a DQNAdapter; "
            "point it at a dqnbench.conformance.adapter.DQNAdapter instance (or a function returning one)"
        )
    return target
