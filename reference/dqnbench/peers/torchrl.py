"""TorchRL's DQN as a conformance peer: its `DQNLoss`, `QValueActor`, `EGreedyModule`, `HardUpdate` and
replay buffer behind the adapter protocol.

    pip install 'dqnbench[torchrl]'
    dqnbench check --dqn-impl=dqnbench.peers.torchrl

What runs is TorchRL's code: the loss and its TD(0) value estimator (`DQNLoss` with the kit's networks loaded
into its functional parameters), greedy and epsilon-greedy actions from `QValueActor` and `EGreedyModule`, the
target copy and sync through `DQNLoss`'s target parameters and `HardUpdate`, and transitions through a
`ReplayBuffer` over a `LazyTensorStorage`. TorchRL does not prescribe a network, so the kit's reference
network is used (`make_network` is not supplied), and it has no screen extraction.

By design TorchRL's `DQNLoss` defaults to an L2 loss, its examples clip the gradient norm, `EGreedyModule`
anneals epsilon linearly, and the default `RandomSampler` draws with replacement: the adapter declares these.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import torch
from torch import Tensor, nn

try:
    from tensordict import TensorDict
    from torchrl.data import Categorical, LazyTensorStorage, ReplayBuffer
    from torchrl.envs.utils import ExplorationType, set_exploration_type
    from torchrl.modules import EGreedyModule, QValueActor
    from torchrl.objectives import DQNLoss, HardUpdate, ValueEstimators
except ModuleNotFoundError as error:
    raise ModuleNotFoundError(
        f"dqnbench.peers.torchrl needs TorchRL, which could not be imported ({error}); "
        "install it with: pip install 'dqnbench[torchrl]'",
        name=error.name,
    ) from error

from dqnbench.conformance.adapter import DeclaredDifference, DQNAdapter, TransitionBatch

EPS_START, EPS_END, ANNEALING_STEPS = 0.9, 0.05, 400
"""The seed's start and end rates, annealed linearly over 400 steps (as many extra random actions as the
seed's 200-step exponential decay)."""


def _actor(net: nn.Module, n_actions: int) -> QValueActor:
    return QValueActor(module=net, in_keys=["observation"], spec=Categorical(n_actions), action_space="categorical")


def _n_actions(net: nn.Module, observation: Tensor) -> int:
    with torch.no_grad():
        return int(copy.deepcopy(net).eval()(observation[:1]).shape[-1])


def _loss(policy_net: nn.Module, n_actions: int, gamma: float) -> DQNLoss:
    loss = DQNLoss(_actor(policy_net, n_actions), delay_value=True, action_space="categorical")
    loss.make_value_estimator(ValueEstimators.TD0, gamma=gamma)
    HardUpdate(loss, value_network_update_interval=1)  # TorchRL expects an updater attached to a delayed target
    return loss


def _load_target(loss: DQNLoss, target_net: nn.Module, n_actions: int) -> None:
    """Put the kit's target network's parameters and buffers into the loss's target parameters."""
    values = TensorDict.from_module(_actor(target_net, n_actions))
    with torch.no_grad():
        loss.target_value_network_params.update_(values.detach())


def _tensordict(batch: TransitionBatch) -> TensorDict:
    size = batch.rewards.shape[0]
    return TensorDict(
        {
            "observation": batch.states,
            "action": batch.actions.view(-1),
            "next": TensorDict(
                {
                    "observation": batch.next_states,
                    "reward": batch.rewards.view(-1, 1),
                    "done": batch.dones.view(-1, 1),
                    "terminated": batch.terminated.view(-1, 1),
                    "truncated": batch.truncated.view(-1, 1),
                },
                batch_size=[size],
            ),
        },
        batch_size=[size],
    )


def _bellman_targets(target_net: nn.Module, batch: TransitionBatch, gamma: float) -> Tensor:
    n_actions = _n_actions(target_net, batch.next_states)
    loss = _loss(copy.deepcopy(target_net), n_actions, gamma)
    _load_target(loss, target_net, n_actions)
    targets = loss.value_estimator.value_estimate(_tensordict(batch), target_params=loss.target_value_network_params)
    return targets.view(-1)


def _optimize_step(
    policy_net: nn.Module,
    target_net: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: TransitionBatch,
    gamma: float,
    grad_clip: float,
) -> Tensor:
    n_actions = _n_actions(policy_net, batch.states)
    loss = _loss(policy_net, n_actions, gamma)  # its parameters are policy_net's own
    _load_target(loss, target_net, n_actions)
    value = loss(_tensordict(batch))["loss"]
    optimizer.zero_grad()
    value.backward()
    # TorchRL's DQN examples clip the gradient norm (cfg.optim.max_grad_norm) before the step.
    torch.nn.utils.clip_grad_norm_(policy_net.parameters(), grad_clip)
    optimizer.step()
    return value.detach()


def _make_target(policy_net: nn.Module) -> nn.Module:
    """The module `DQNLoss`'s target parameters describe, right after the loss is built."""
    n_actions = _n_actions(policy_net, _probe_input(policy_net))
    loss = _loss(policy_net, n_actions, 0.99)
    target = copy.deepcopy(policy_net)
    loss.target_value_network_params.detach().to_module(_actor(target, n_actions))
    return target


def _sync_target(policy_net: nn.Module, target_net: nn.Module) -> None:
    """`HardUpdate.step()` into the loss's target parameters, then those written back into `target_net`."""
    n_actions = _n_actions(policy_net, _probe_input(policy_net))
    loss = _loss(policy_net, n_actions, 0.99)
    _load_target(loss, target_net, n_actions)
    HardUpdate(loss, value_network_update_interval=1).step()
    with torch.no_grad():
        TensorDict.from_module(_actor(target_net, n_actions)).update_(loss.target_value_network_params.detach())


def _probe_input(net: nn.Module) -> Tensor:
    # The kit's networks take (N, C, 40, 90) screens; the number of channels is the first layer's.
    first = next(m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    channels = first.in_channels if isinstance(first, nn.Conv2d) else first.in_features
    return torch.zeros(1, channels, 40, 90)


def _greedy_action(net: nn.Module, state: Tensor) -> Tensor:
    actor = _actor(net, _n_actions(net, state))
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        return actor(TensorDict({"observation": state}, batch_size=[state.shape[0]]))["action"].view(-1, 1).long()


def _egreedy(n_actions: int, steps: int = 0) -> EGreedyModule:
    module = EGreedyModule(
        Categorical(n_actions), eps_init=EPS_START, eps_end=EPS_END, annealing_num_steps=ANNEALING_STEPS
    )
    if steps:
        module.step(steps)
    return module


def _epsilon(steps_done: int) -> float:
    return float(_egreedy(2, steps_done).eps)


def _select_action(net: nn.Module, state: Tensor, eps: float, n_actions: int, rng: random.Random) -> Tensor:
    explore = _egreedy(n_actions)
    explore.eps.fill_(eps)  # the kit's rate, through TorchRL's exploration module
    actor = _actor(net, n_actions)
    with set_exploration_type(ExplorationType.RANDOM), torch.no_grad():
        td = explore(actor(TensorDict({"observation": state}, batch_size=[state.shape[0]])))
    return td["action"].view(1, 1).long()


class _Memory:
    """The kit's push/sample protocol over TorchRL's `ReplayBuffer` (a terminal next state is stored as zeros)."""

    def __init__(self, capacity: int, seed: int) -> None:
        self.buffer = ReplayBuffer(storage=LazyTensorStorage(capacity), generator=torch.Generator().manual_seed(seed))

    def push(self, state: Tensor, action: Tensor, next_state: Tensor | None, reward: Tensor) -> None:
        terminated = next_state is None
        self.buffer.add(
            TensorDict(
                {
                    "observation": state[0].clone(),
                    "action": action.view(()).clone(),
                    "next": TensorDict(
                        {
                            "observation": torch.zeros_like(state[0]) if next_state is None else next_state[0].clone(),
                            "reward": reward.view(1).clone(),
                            "terminated": torch.tensor([terminated]),
                        },
                        batch_size=[],
                    ),
                },
                batch_size=[],
            )
        )

    def sample(self, batch_size: int) -> TransitionBatch:
        td: Any = self.buffer.sample(batch_size)
        terminated = td["next", "terminated"].view(-1)
        return TransitionBatch(
            states=td["observation"],
            actions=td["action"].view(-1, 1),
            rewards=td["next", "reward"].view(-1),
            next_states=td["next", "observation"],
            terminated=terminated,
            truncated=torch.zeros_like(terminated),
        )

    def __len__(self) -> int:
        return len(self.buffer)


ADAPTER = DQNAdapter(
    name="torchrl",
    bellman_targets=_bellman_targets,
    make_memory=_Memory,
    epsilon=_epsilon,
    greedy_action=_greedy_action,
    select_action=_select_action,
    optimize_step=_optimize_step,
    make_target=_make_target,
    sync_target=_sync_target,
    declared_differences=(
        DeclaredDifference(("check_optimize_loss",), "DQNLoss defaults to an L2 (MSE) loss, not Huber"),
        DeclaredDifference(
            ("check_optimize_gradients_clamped",), "clips the gradient norm (clip_grad_norm_), not each element"
        ),
        DeclaredDifference(("check_epsilon_schedule",), "EGreedyModule anneals epsilon linearly, not exponentially"),
        DeclaredDifference(("check_replay_distinct_samples",), "RandomSampler draws with replacement"),
    ),
)
"""TorchRL's DQN pieces on the kit's reference network."""
