"""Tianshou's DQN as a conformance peer: its `DQN` algorithm, `DiscreteQLearningPolicy` and `ReplayBuffer`.

    pip install 'dqnbench[tianshou]'
    dqnbench check --dqn-impl=dqnbench.peers.tianshou

What runs is Tianshou's code: transitions go into a `ReplayBuffer`, the targets are Tianshou's n-step return
(`Algorithm.compute_nstep_return` with `DQN._target_q`, horizon 1), the step is `DQN._update_with_batch`
stepping the kit's optimizer through Tianshou's `Algorithm.Optimizer`, actions come from
`DiscreteQLearningPolicy` (``forward`` and ``add_exploration_noise``), and the target is Tianshou's lagged
network (`_add_lagged_network`, `full_parameter_update`). Tianshou does not prescribe a network, so the kit's
reference network is used (`make_network` is not supplied); it has no epsilon schedule of its own (the
user's training loop sets ``eps_training``) and no screen extraction.

By design Tianshou's `DQN` computes Double-DQN targets by default (``is_double=True``) and an MSE loss
unless ``huber_loss_delta`` is given, and its buffer samples indices with replacement: the adapter keeps
those defaults and declares them.
"""

from __future__ import annotations

import random
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

try:
    from tianshou.algorithm import DQN
    from tianshou.algorithm.modelfree.dqn import DiscreteQLearningPolicy
    from tianshou.algorithm.optim import OptimizerFactory
    from tianshou.data import Batch, ReplayBuffer
except ModuleNotFoundError as error:
    raise ModuleNotFoundError(
        f"dqnbench.peers.tianshou needs Tianshou, which could not be imported ({error}); "
        "install it with: pip install 'dqnbench[tianshou]'",
        name=error.name,
    ) from error

from dqnbench.conformance.adapter import DeclaredDifference, DQNAdapter, TransitionBatch


class _Model(nn.Module):
    """Tianshou's model protocol, ``(obs, state, info) -> (Q-values, state)``, around a plain Q-network."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> tuple[Tensor, Any]:
        return self.net(torch.as_tensor(obs, dtype=torch.float32)), state


class _GivenOptimizer(OptimizerFactory):  # type: ignore[misc]
    """Hands Tianshou the optimizer the kit passes (Tianshou builds its own from a factory otherwise)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        super().__init__()
        self.optimizer = optimizer

    def _create_optimizer_for_params(self, params: Any) -> torch.optim.Optimizer:
        return self.optimizer


def _n_actions(net: nn.Module, observation: Tensor) -> int:
    was_training = net.training
    net.eval()
    with torch.no_grad():
        n = int(net(observation[:1]).shape[-1])
    net.train(was_training)
    return n


def _policy(net: nn.Module, n_actions: int) -> DiscreteQLearningPolicy:
    return DiscreteQLearningPolicy(model=_Model(net), action_space=gym.spaces.Discrete(n_actions))


def _algorithm(policy_net: nn.Module, n_actions: int, gamma: float, optimizer: torch.optim.Optimizer) -> DQN:
    # target_update_freq > 0 gives DQN a lagged (target) network; the defaults otherwise: is_double=True, MSE.
    return DQN(
        policy=_policy(policy_net, n_actions), optim=_GivenOptimizer(optimizer), gamma=gamma, target_update_freq=1
    )


def _load_lagged(algorithm: DQN, target_net: nn.Module) -> None:
    """The kit's target network's values in Tianshou's lagged network."""
    with torch.no_grad():
        _lagged(algorithm).load_state_dict(target_net.state_dict())


def _lagged(algorithm: DQN) -> nn.Module:
    """The Q-network inside Tianshou's lagged network (`EvalModeModuleWrapper` around our `_Model`)."""
    net: nn.Module = algorithm.model_old.module.net
    return net


def _buffer(batch: TransitionBatch) -> ReplayBuffer:
    buffer = ReplayBuffer(size=len(batch.rewards))
    for i in range(len(batch.rewards)):
        buffer.add(
            Batch(
                obs=batch.states[i].numpy(),
                act=int(batch.actions[i]),
                rew=float(batch.rewards[i]),
                terminated=bool(batch.terminated[i]),
                truncated=bool(batch.truncated[i]),
                obs_next=batch.next_states[i].numpy(),
                info={},
            )
        )
    return buffer


def _returns_batch(algorithm: DQN, batch: TransitionBatch) -> Any:
    buffer = _buffer(batch)
    indices = np.arange(len(batch.rewards))
    return algorithm._preprocess_batch(buffer[indices], buffer, indices)


def _bellman_targets(target_net: nn.Module, batch: TransitionBatch, gamma: float) -> Tensor:
    n_actions = _n_actions(target_net, batch.next_states)
    # Double DQN picks the next action with the online network: that is the target network here too, so the
    # targets are those of the target network alone, as the protocol asks.
    algorithm = _algorithm(target_net, n_actions, gamma, torch.optim.SGD(target_net.parameters(), lr=0.0))
    _load_lagged(algorithm, target_net)
    return torch.as_tensor(_returns_batch(algorithm, batch).returns, dtype=torch.float32).flatten()


def _optimize_step(
    policy_net: nn.Module,
    target_net: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: TransitionBatch,
    gamma: float,
    grad_clip: float,
) -> Tensor:
    algorithm = _algorithm(policy_net, _n_actions(policy_net, batch.states), gamma, optimizer)
    _load_lagged(algorithm, target_net)
    algorithm._iter = 1  # the lagged network is synced at iteration 0; the kit syncs on its own
    was_training = policy_net.training
    with_returns = _returns_batch(algorithm, batch)
    policy_net.train(was_training)
    stats = algorithm._update_with_batch(with_returns)
    return torch.tensor(stats.loss)


def _make_target(policy_net: nn.Module) -> nn.Module:
    algorithm = _algorithm(policy_net, 2, 0.99, torch.optim.SGD(policy_net.parameters(), lr=0.0))
    return _lagged(algorithm)


def _sync_target(policy_net: nn.Module, target_net: nn.Module) -> None:
    algorithm = _algorithm(policy_net, 2, 0.99, torch.optim.SGD(policy_net.parameters(), lr=0.0))
    _load_lagged(algorithm, target_net)
    algorithm._update_lagged_network_weights()
    with torch.no_grad():
        target_net.load_state_dict(_lagged(algorithm).state_dict())


def _greedy_action(net: nn.Module, state: Tensor) -> Tensor:
    policy = _policy(net, _n_actions(net, state))
    with torch.no_grad():
        return torch.as_tensor(policy(Batch(obs=state.numpy(), info={})).act).view(-1, 1).long()


def _select_action(net: nn.Module, state: Tensor, eps: float, n_actions: int, rng: random.Random) -> Tensor:
    policy = _policy(net, n_actions)
    policy.set_eps_inference(eps)
    observation = Batch(obs=state.numpy(), info={})
    with torch.no_grad():
        act = policy.add_exploration_noise(policy(observation).act, observation)
    return torch.as_tensor(act).view(1, 1).long()


class _Memory:
    """The kit's push/sample protocol over Tianshou's `ReplayBuffer` (a terminal next state stored as zeros)."""

    def __init__(self, capacity: int, seed: int) -> None:
        self.buffer = ReplayBuffer(size=capacity, random_seed=seed)

    def push(self, state: Tensor, action: Tensor, next_state: Tensor | None, reward: Tensor) -> None:
        self.buffer.add(
            Batch(
                obs=state[0].numpy().copy(),
                act=int(action),
                rew=float(reward),
                terminated=next_state is None,
                truncated=False,
                obs_next=np.zeros_like(state[0].numpy()) if next_state is None else next_state[0].numpy().copy(),
                info={},
            )
        )

    def sample(self, batch_size: int) -> TransitionBatch:
        batch, _ = self.buffer.sample(batch_size)
        terminated = torch.as_tensor(batch.terminated, dtype=torch.bool)
        return TransitionBatch(
            states=torch.as_tensor(batch.obs),
            actions=torch.as_tensor(batch.act, dtype=torch.long).view(-1, 1),
            rewards=torch.as_tensor(batch.rew, dtype=torch.float32),
            next_states=torch.as_tensor(batch.obs_next),
            terminated=terminated,
            truncated=torch.zeros_like(terminated),
        )

    def __len__(self) -> int:
        return len(self.buffer)


ADAPTER = DQNAdapter(
    name="tianshou",
    bellman_targets=_bellman_targets,
    make_memory=_Memory,
    greedy_action=_greedy_action,
    select_action=_select_action,
    optimize_step=_optimize_step,
    make_target=_make_target,
    sync_target=_sync_target,
    declared_differences=(
        DeclaredDifference(
            ("check_optimize_bootstraps_from_target",), "Double-DQN targets by default (DQN(is_double=True))"
        ),
        DeclaredDifference(("check_optimize_loss",), "MSE loss unless huber_loss_delta is given"),
        DeclaredDifference(("check_optimize_gradients_clamped",), "no gradient clipping unless max_grad_norm is given"),
        DeclaredDifference(("check_replay_distinct_samples",), "ReplayBuffer samples indices with replacement"),
    ),
)
"""Tianshou's DQN pieces (with its defaults) on the kit's reference network."""
