"""The bug zoo: deliberately wrong DQN implementations that the conformance kit must reject.

Each mutant is the reference adapter (`dqnbench.conformance.adapter.REFERENCE`) with exactly one piece
replaced by a small wrong function (for the Bellman targets and the optimize step: the reference's own
function with one helper of `dqnbench.learner` swapped for the call), and names the check(s) expected
among the failures. Run the kit on one:

    python -m pytest --pyargs dqnbench.conformance --dqn-impl=tests.bugzoo:truncation_as_termination

(from the repository root: `python -m` puts it on sys.path, so that `tests.bugzoo` is importable).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dqnbench import learner, nets, policy, screen
from dqnbench.conformance.adapter import REFERENCE, DQNAdapter, TransitionBatch
from dqnbench.replay import ReplayMemory, Transition

REFERENCE_BELLMAN, REFERENCE_OPTIMIZE = REFERENCE.bellman_targets, REFERENCE.optimize_step
assert REFERENCE_BELLMAN is not None and REFERENCE_OPTIMIZE is not None


@dataclass(frozen=True)
class Mutant:
    """One known bug: the adapter that has it and the checks that must catch it."""

    adapter: DQNAdapter
    bug: str
    caught_by: tuple[str, ...]
    """Names of the checks that must all be among the failures."""
    cause: str | None
    """A fragment every failure's "likely cause" must contain; None: no failure may name a cause."""

    @property
    def name(self) -> str:
        return self.adapter.name.removeprefix("bugzoo.")


def mutant(name: str, bug: str, caught_by: Sequence[str], cause: str | None, **pieces: Any) -> Mutant:
    """The reference adapter with `pieces` replaced."""
    if len(pieces) != 1:
        raise ValueError(f"mutant({name!r}): replace exactly one piece, got {sorted(pieces)}")
    return Mutant(replace(REFERENCE, name=f"bugzoo.{name}", **pieces), bug, tuple(caught_by), cause)


# --- Bellman targets and the optimize step: the reference's, with one function of dqnbench.learner swapped ---


def _reference_with(piece: Callable[..., Any], **replacements: Callable[..., Any]) -> Callable[..., Any]:
    """The reference `piece`, run with `replacements` patched into `dqnbench.learner` for the call's duration."""

    def mutated(*args: Any) -> Any:
        with mock.patch.multiple(learner, **replacements):
            return piece(*args)

    return mutated


def _next_values(
    target_net: nn.Module,
    batch: learner.Batch,
    policy_net: nn.Module | None = None,
    *,
    best: Callable[[Tensor], Tensor],
    track_grad: bool = False,
) -> Tensor:
    values = torch.zeros_like(batch.rewards)
    with torch.set_grad_enabled(track_grad):
        values[batch.non_final_mask] = best(target_net(batch.non_final_next_states))
    return values


# BUG: no torch.no_grad() / detach around the target network's forward pass.
_values_with_graph = partial(_next_values, best=lambda q: q.max(dim=1).values, track_grad=True)
# BUG: one max over every transition and action, not one per transition.
_values_max_over_batch = partial(_next_values, best=torch.max)


def _gamma_on_reward(rewards: Tensor, values: Tensor, non_final_mask: Tensor, gamma: float) -> Tensor:
    return gamma * (rewards + torch.where(non_final_mask, values, 0.0))  # BUG: gamma * (r + V(s'))


def _targets_from_dones(target_net: nn.Module, batch: TransitionBatch, gamma: float) -> Tensor:
    # BUG: the legacy `done` (terminated or truncated) decides what is final, so time-outs are not bootstrapped.
    return REFERENCE_BELLMAN(target_net, replace(batch, terminated=batch.dones), gamma)


def _td_loss_gather_rows(policy_net: nn.Module, batch: learner.Batch, targets: Tensor) -> Tensor:
    # BUG: gather along dim 0 picks Q[action, 0] (a row chosen by the action), not Q[i, action].
    return F.smooth_l1_loss(policy_net(batch.states).gather(0, batch.actions), targets.unsqueeze(1))


# --- Replay memories: the reference ring with one method overridden -------------------------------------


class EvictsNewest(ReplayMemory):
    def push(self, state: Tensor, action: Tensor, next_state: Tensor | None, reward: Tensor) -> None:
        if len(self) == self.capacity:
            self._next = (self._next - 1) % self.capacity  # BUG: overwrites the newest transition, not the oldest
        super().push(state, action, next_state, reward)


class SamplesWithReplacement(ReplayMemory):
    def sample(self, batch_size: int) -> list[Transition]:
        return self._rng.choices(self._items, k=batch_size)  # BUG: a batch may hold the same transition twice


class IgnoresPushesWhenFull(ReplayMemory):
    def push(self, state: Tensor, action: Tensor, next_state: Tensor | None, reward: Tensor) -> None:
        if len(self) < self.capacity:  # BUG: the write position never wraps, so a full memory stops learning
            super().push(state, action, next_state, reward)


class SamplesFromGlobalRng(ReplayMemory):
    def sample(self, batch_size: int) -> list[Transition]:
        return random.sample(self._items, batch_size)  # BUG: the global RNG, not the one seeded from `seed`


class ReadsNextStateShifted(ReplayMemory):
    def sample(self, batch_size: int) -> list[Transition]:
        picks = self._rng.sample(range(len(self._items)), batch_size)
        size = len(self._items)
        # BUG: the next state is read from the following slot (thu-ml/tianshou#82)
        return [self._items[i]._replace(next_state=self._items[(i + 1) % size].next_state) for i in picks]


class StoresAliases(ReplayMemory):
    def push(self, state: Tensor, action: Tensor, next_state: Tensor | None, reward: Tensor) -> None:
        super().push(state, action, next_state, reward)
        # BUG: keeps the caller's tensors, which the caller goes on mutating.
        self._items[(self._next - 1) % self.capacity] = Transition(state, action, next_state, reward)


# --- Network ---------------------------------------------------------------------------------------------


def _relu_before_batchnorm(height: int, width: int, n_actions: int, in_channels: int) -> nn.Module:
    net = nets.DQN(height, width, n_actions, in_channels)
    layers = list(net.features)
    for conv in range(0, len(layers), 3):  # BUG: conv, ReLU, BatchNorm instead of conv, BatchNorm, ReLU
        layers[conv + 1], layers[conv + 2] = layers[conv + 2], layers[conv + 1]
    net.features = nn.Sequential(*layers)
    return net


def channels_last_native_batchnorm(height: int, width: int, n_actions: int, in_channels: int = 3) -> nn.Module:
    # BUG: dqnbench.fast's network until 2026-11-26: channels-last for oneDNN, with PyTorch's channels-last
    # BatchNorm, whose training statistics drift on mostly-zero screens (gradients ~1e-2 off).
    net = nets.DQN(height, width, n_actions, in_channels)
    return net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


# --- Acting ---------------------------------------------------------------------------------------------


def _greedy_in_current_mode(net: nn.Module, state: Tensor) -> Tensor:
    with torch.no_grad():
        return net(state).argmax(dim=1, keepdim=True)  # BUG: in train mode BatchNorm learns from this one screen


def _select_action_global_rng(net: nn.Module, state: Tensor, eps: float, n_actions: int, rng: random.Random) -> Tensor:
    # BUG: draws from the global `random` module, so a seeded run is not reproducible.
    return policy.select_action(net, state, eps, n_actions, random)  # type: ignore[arg-type]


def _epsilon_counted_first(episode_lengths: Sequence[int]) -> list[float]:
    return [policy.epsilon(step + 1) for step in range(sum(episode_lengths))]  # BUG: counter bumped before use


def _epsilon_per_episode(episode_lengths: Sequence[int]) -> list[float]:
    return [policy.epsilon(step) for length in episode_lengths for step in range(length)]  # BUG: reset each episode


def _target_in_train_mode(policy_net: nn.Module) -> nn.Module:
    return copy.deepcopy(policy_net).requires_grad_(False)  # BUG: never switched to eval mode


def _sync_parameters_only(policy_net: nn.Module, target_net: nn.Module) -> None:
    # BUG: named_parameters() leaves out the BatchNorm running statistics (buffers).
    target_net.load_state_dict(dict(policy_net.named_parameters()), strict=False)


# --- Bugs that only show once the target differs from the policy, or the bootstrap term dominates ---------


def _step_with(
    *, double_dqn: bool = False, sync_first: bool = False, from_policy: bool = False, gamma: Callable[[float], float]
) -> Callable[..., Tensor]:
    """The reference step (`learner.optimize_step`) with one of the bugs below switched on."""

    def step(
        policy_net: nn.Module,
        target_net: nn.Module,
        optimizer: torch.optim.Optimizer,
        batch: TransitionBatch,
        discount: float,
        grad_clip: float,
    ) -> Tensor:
        if sync_first:
            learner.sync_target(policy_net, target_net)  # BUG: the target is synced at every step
        # BUG (from_policy): bootstraps from an eval-mode copy of the policy, not from the target.
        bootstrap = copy.deepcopy(policy_net).eval() if from_policy else target_net
        return learner.optimize_step(
            policy_net,
            bootstrap,
            optimizer,
            batch.seed_batch(final=batch.terminated),
            gamma=gamma(discount),
            grad_clip=grad_clip,
            double_dqn=double_dqn,
        )

    return step


def _as_passed(discount: float) -> float:
    return discount


class SamplesNewest(ReplayMemory):
    def sample(self, batch_size: int) -> list[Transition]:
        if batch_size > len(self):
            raise ValueError(f"sample({batch_size}) from a memory of {len(self)}")
        newest = [self._items[(self._next - 1 - k) % len(self._items)] for k in range(batch_size)]
        return newest  # BUG: always the last batch_size transitions pushed


class SamplesRecentWindow(ReplayMemory):
    def sample(self, batch_size: int) -> list[Transition]:
        window = min(len(self), max(batch_size, len(self) // 2))  # BUG: only the newest half is ever drawn
        recent = [self._items[(self._next - 1 - k) % len(self._items)] for k in range(window)]
        return self._rng.sample(recent, batch_size)


def _select_action_flat_random(net: nn.Module, state: Tensor, eps: float, n_actions: int, rng: random.Random) -> Tensor:
    if rng.random() > eps:
        return policy.greedy_action(net, state)
    return torch.tensor([rng.randrange(n_actions)], dtype=torch.long)  # BUG: shape (1,), collate needs (1, 1)


def _batchnorm_setting(**setting: float) -> Callable[[int, int, int, int], nn.Module]:
    def make(height: int, width: int, n_actions: int, in_channels: int) -> nn.Module:
        net = nets.DQN(height, width, n_actions, in_channels)
        for layer in net.modules():
            if isinstance(layer, nn.BatchNorm2d):
                for name, value in setting.items():
                    setattr(layer, name, value)  # BUG: not PyTorch's (and the seed's) default
        return net

    return make


def _greedy_argmin(net: nn.Module, state: Tensor) -> Tensor:
    was_training = net.training
    net.eval()
    with torch.no_grad():
        choice = net(state).argmin(dim=1, keepdim=True)  # BUG: the worst action
    net.train(was_training)
    return choice


MUTANTS: tuple[Mutant, ...] = (
    mutant(
        "truncation_as_termination",
        "a time-limit truncation is not bootstrapped (done used instead of terminated)",
        ["check_bellman_truncation_bootstraps", "check_bellman_targets"],
        "was `done` used instead of `terminated`",
        bellman_targets=_targets_from_dones,
    ),
    mutant(
        "missing_detach",
        "the targets keep the target network's graph, so gradients flow into it",
        ["check_bellman_no_gradient"],
        "missing detach",
        bellman_targets=_reference_with(REFERENCE_BELLMAN, next_state_values=_values_with_graph),
    ),
    mutant(
        "optimize_missing_detach",
        "the optimize step's targets keep the target network's graph",
        ["check_optimize_no_gradient_into_target"],
        "missing detach",
        optimize_step=_reference_with(REFERENCE_OPTIMIZE, next_state_values=_values_with_graph),
    ),
    mutant(
        "max_over_batch",
        "max over every transition and action instead of per transition",
        ["check_bellman_targets"],
        "max was taken over the batch",
        bellman_targets=_reference_with(REFERENCE_BELLMAN, next_state_values=_values_max_over_batch),
    ),
    mutant(
        "gamma_on_reward",
        "gamma multiplies the reward too: gamma * (r + max Q')",
        ["check_bellman_targets"],
        "gamma was applied to the reward",
        bellman_targets=_reference_with(REFERENCE_BELLMAN, bellman_targets=_gamma_on_reward),
    ),
    mutant(
        "gather_wrong_dim",
        "Q(s, a) gathered along the batch dimension",
        ["check_optimize_loss"],
        "gathered along dim 0",
        optimize_step=_reference_with(REFERENCE_OPTIMIZE, td_loss=_td_loss_gather_rows),
    ),
    mutant(
        "no_gradient_clamp",
        "gradients are not clamped before the optimiser step",
        ["check_optimize_gradients_clamped"],
        "clamp is missing",
        optimize_step=_reference_with(REFERENCE_OPTIMIZE, clamp_gradients=lambda net, limit: None),
    ),
    mutant(
        "target_aliased",
        "the target network is the policy network itself",
        ["check_target_not_aliased"],
        "aliased",
        make_target=lambda policy_net: policy_net,
    ),
    mutant(
        "target_train_mode",
        "the target network is left in train mode",
        ["check_target_eval_mode"],
        "train mode",
        make_target=_target_in_train_mode,
    ),
    mutant(
        "sync_skips_batchnorm",
        "syncing copies parameters but not BatchNorm running statistics",
        ["check_target_sync"],
        "running statistics were not copied",
        sync_target=_sync_parameters_only,
    ),
    mutant(
        "epsilon_off_by_one",
        "the step counter is incremented before epsilon is computed",
        ["check_epsilon_trace"],
        "off by one step",
        epsilon_trace=_epsilon_counted_first,
    ),
    mutant(
        "epsilon_reset_each_episode",
        "the step counter restarts at every episode",
        ["check_epsilon_trace"],
        "reset every episode",
        epsilon_trace=_epsilon_per_episode,
    ),
    mutant(
        "batchnorm_moves_while_acting",
        "acting in train mode updates BatchNorm running statistics",
        ["check_acting_keeps_batchnorm_stats", "check_greedy_action_argmax"],
        "train mode",
        greedy_action=_greedy_in_current_mode,
    ),
    mutant(
        "select_action_global_rng",
        "random actions come from the global RNG, not the one given",
        ["check_select_action_epsilon_greedy"],
        "rng argument",
        select_action=_select_action_global_rng,
    ),
    mutant(
        "memory_evicts_newest",
        "a full memory overwrites its newest transition",
        ["check_replay_eviction_order"],
        "newest transition is evicted",
        make_memory=EvictsNewest,
    ),
    mutant(
        "memory_samples_with_replacement",
        "a batch may contain the same transition twice",
        ["check_replay_distinct_samples"],
        "with replacement",
        make_memory=SamplesWithReplacement,
    ),
    mutant(
        "memory_stores_aliases",
        "the memory keeps the caller's tensors instead of copies",
        ["check_replay_no_aliasing"],
        "alias",
        make_memory=StoresAliases,
    ),
    mutant(
        "conv_size_off_by_one",
        "the conv output size forgets the +1 of the first kernel position",
        ["check_conv2d_size_out"],
        "off by",
        conv2d_size_out=lambda size, kernel_size, stride: (size - kernel_size) // stride,
    ),
    mutant(
        "relu_before_batchnorm",
        "each block applies ReLU before BatchNorm",
        ["check_network_golden_outputs"],
        None,
        make_network=_relu_before_batchnorm,
    ),
    mutant(
        "channels_last_batchnorm_drift",
        "channels-last BatchNorm sums its training statistics one value at a time in float32",
        ["check_network_gradients_on_screen_differences"],
        "BatchNorm statistics summed inaccurately",
        make_network=channels_last_native_batchnorm,
    ),
    mutant(
        "screen_half_world",
        "the cart column is computed from half the world width",
        ["check_screen_patches"],
        None,
        extract_screen=lambda frame, cart_x: screen.extract_screen(frame, cart_x, x_threshold=1.2),
    ),
    mutant(
        "target_synced_every_step",
        "the step copies the policy into the target before computing the targets",
        ["check_optimize_bootstraps_from_target", "check_optimize_no_gradient_into_target"],
        "sync at every step",
        optimize_step=_step_with(sync_first=True, gamma=_as_passed),
    ),
    mutant(
        "bootstrap_from_policy",
        "the next-state values come from the policy network (in eval mode), not the target",
        ["check_optimize_bootstraps_from_target"],
        "bootstrapped from the policy network",
        optimize_step=_step_with(from_policy=True, gamma=_as_passed),
    ),
    mutant(
        "double_dqn_declared_plain",
        "Double DQN targets where plain DQN is declared",
        ["check_optimize_bootstraps_from_target"],
        "Double DQN",
        optimize_step=_step_with(double_dqn=True, gamma=_as_passed),
    ),
    mutant(
        "discount_hard_coded",
        "the step uses gamma 0.93 whatever it is passed",
        ["check_optimize_discount"],
        "hard-coded to 0.93",
        optimize_step=_step_with(gamma=lambda discount: 0.93),
    ),
    mutant(
        "discount_off_by_003",
        "the step uses gamma - 0.03 (0.87 for 0.9)",
        ["check_optimize_discount"],
        "gamma -0.03",
        optimize_step=_step_with(gamma=lambda discount: discount - 0.03),
    ),
    mutant(
        "memory_samples_newest",
        "sample returns the newest batch_size transitions",
        ["check_replay_uniform_sampling"],
        "favours the newest",
        make_memory=SamplesNewest,
    ),
    mutant(
        "memory_samples_recent_window",
        "sample draws only from the newest half of the memory",
        ["check_replay_uniform_sampling"],
        "favours the newest",
        make_memory=SamplesRecentWindow,
    ),
    mutant(
        "select_action_random_shape",
        "random actions have shape (1,) instead of (1, 1)",
        ["check_select_action_epsilon_greedy"],
        "random branch",
        select_action=_select_action_flat_random,
    ),
    mutant(
        "batchnorm_momentum_099",
        "BatchNorm momentum 0.99 (Keras' convention) instead of 0.1",
        ["check_network_batchnorm_statistics"],
        "momentum is 0.99",
        make_network=_batchnorm_setting(momentum=0.99),
    ),
    mutant(
        "batchnorm_eps_1e3",
        "BatchNorm eps 1e-3 instead of 1e-5",
        ["check_network_golden_outputs"],
        "eps=0.001",
        make_network=_batchnorm_setting(eps=1e-3),
    ),
    mutant(
        "memory_ignores_pushes_when_full",
        "a full memory drops new transitions instead of evicting the oldest (medipixel/rl_algorithms#94)",
        ["check_replay_eviction_order", "check_replay_cycling"],
        None,
        make_memory=IgnoresPushesWhenFull,
    ),
    mutant(
        "memory_global_rng",
        "sampling draws from the global RNG (rlberry-py/rlberry#119)",
        ["check_replay_seeded_sampling"],
        "global RNG",
        make_memory=SamplesFromGlobalRng,
    ),
    mutant(
        "memory_next_state_shifted",
        "the next state is read from the following slot (thu-ml/tianshou#82)",
        ["check_replay_cycling"],
        "next states must stay with their transition",
        make_memory=ReadsNextStateShifted,
    ),
    mutant(
        "greedy_argmin",
        "greedy actions take the arg min of Q",
        ["check_greedy_action_argmax"],
        "argmin",
        greedy_action=_greedy_argmin,
    ),
)
"""Every mutant, each with one known bug."""

BY_NAME: dict[str, Mutant] = {m.name: m for m in MUTANTS}


def __getattr__(name: str) -> DQNAdapter:
    """`tests.bugzoo:<mutant name>` is that mutant's adapter, for ``--dqn-impl``."""
    if name in BY_NAME:
        return BY_NAME[name].adapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}; mutants: {sorted(BY_NAME)}")
