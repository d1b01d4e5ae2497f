"""A DQN written the way CleanRL's ``dqn.py`` / ``dqn_atari.py`` are, without dqnbench, and its adapter.

The algorithm (top half) imports only torch and numpy: a Nature-CNN-like Q-network without BatchNorm,
CleanRL's `linear_schedule`, a uniform replay buffer that samples with replacement and stores
``terminations``, and CleanRL's training step (``td_target = r + gamma * target_max * (1 - terminations)``,
MSE loss, no gradient clipping; Adam in CleanRL's loop). The adapter (bottom half) is the glue a user writes to
run the conformance kit on it; the kit should fail it only where it genuinely differs from the reference, and
`ADAPTER.declared_differences` says where that is::

    dqnbench check --dqn-impl=dqnbench.peers.cleanrl_style
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --- the DQN, CleanRL style ------------------------------------------------------------------------------


class QNetwork(nn.Module):
    """Nature-CNN-like (three convolutions, a 512-unit hidden layer), sized down so 35 x 79 screens still fit."""

    def __init__(self, height: int, width: int, n_actions: int, in_channels: int = 3) -> None:
        super().__init__()
        self.args = (height, width, n_actions, in_channels)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, stride=2),
            nn.ReLU(),
            nn.Conv2d(32, 64, 5, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():  # CleanRL and SB3 measure the flattened size with a forward pass
            flat = self.features(torch.zeros(1, in_channels, height, width)).shape[1]
        self.head = nn.Sequential(nn.Linear(flat, 512), nn.ReLU(), nn.Linear(512, n_actions))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def linear_schedule(start_e: float, end_e: float, duration: int, t: int) -> float:
    slope = (end_e - start_e) / duration
    return max(slope * t + start_e, end_e)


START_E, END_E, EXPLORATION_STEPS = 0.9, 0.05, 400
"""The seed's start and end rates; 400 linear steps take as many extra random actions as its 200-step decay."""


class ReplayBuffer:
    """A ring of arrays sampled uniformly *with* replacement (as SB3's buffer, which CleanRL uses)."""

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity = capacity
        self.rng = np.random.default_rng(seed)
        self.storage: list[tuple[Tensor, Tensor, int, float, bool]] = []
        self.pos = 0

    def add(self, obs: Tensor, next_obs: Tensor, action: int, reward: float, termination: bool) -> None:
        row = (obs.detach().clone(), next_obs.detach().clone(), action, reward, termination)
        if len(self.storage) < self.capacity:
            self.storage.append(row)
        else:
            self.storage[self.pos] = row
        self.pos = (self.pos + 1) % self.capacity

    def __len__(self) -> int:
        return len(self.storage)

    def sample(self, batch_size: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        rows = [self.storage[i] for i in self.rng.integers(0, len(self), size=batch_size)]
        obs, next_obs, actions, rewards, terminations = zip(*rows, strict=True)
        return (
            torch.cat(obs),
            torch.tensor(actions).view(-1, 1),
            torch.tensor(rewards, dtype=torch.float32),
            torch.cat(next_obs),
            torch.tensor(terminations, dtype=torch.float32),
        )


def train_step(
    q_network: nn.Module,
    target_network: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: tuple[Tensor, Tensor, Tensor, Tensor, Tensor],
    gamma: float,
) -> Tensor:
    observations, actions, rewards, next_observations, terminations = data
    with torch.no_grad():
        target_max, _ = target_network(next_observations).max(dim=1)
        td_target = rewards.flatten() + gamma * target_max * (1 - terminations.flatten())
    old_val = q_network(observations).gather(1, actions).squeeze(1)
    loss = F.mse_loss(td_target, old_val)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()


def update_target(q_network: nn.Module, target_network: nn.Module, tau: float = 1.0) -> None:
    for target_param, q_param in zip(target_network.parameters(), q_network.parameters(), strict=True):
        target_param.data.copy_(tau * q_param.data + (1.0 - tau) * target_param.data)


def act(q_network: nn.Module, obs: Tensor, epsilon: float, n_actions: int, rng: random.Random) -> int:
    if rng.random() < epsilon:
        return rng.randrange(n_actions)
    with torch.no_grad():
        return int(torch.argmax(q_network(obs), dim=1)[0])


# --- the adapter: the glue between this DQN and the conformance kit --------------------------------------
# (imported here, below the algorithm, so that the DQN above stays free of dqnbench)

from dqnbench.conformance.adapter import DeclaredDifference, DQNAdapter, TransitionBatch  # noqa: E402


class _Memory:
    """The kit's push/sample protocol over `ReplayBuffer` (terminal: next_state None, stored as a termination)."""

    def __init__(self, capacity: int, seed: int) -> None:
        self.buffer = ReplayBuffer(capacity, seed)

    def push(self, state: Tensor, action: Tensor, next_state: Tensor | None, reward: Tensor) -> None:
        terminated = next_state is None
        self.buffer.add(state, state if next_state is None else next_state, int(action), float(reward), terminated)

    def sample(self, batch_size: int) -> TransitionBatch:
        obs, actions, rewards, next_obs, terminations = self.buffer.sample(batch_size)
        return TransitionBatch(
            obs, actions, rewards, next_obs, terminations.bool(), torch.zeros_like(terminations).bool()
        )

    def __len__(self) -> int:
        return len(self.buffer)


def _data(batch: TransitionBatch) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    return batch.states, batch.actions, batch.rewards, batch.next_states, batch.terminated.float()


def _bellman_targets(target_network: nn.Module, batch: TransitionBatch, gamma: float) -> Tensor:
    with torch.no_grad():
        target_max, _ = target_network(batch.next_states).max(dim=1)
        return batch.rewards + gamma * target_max * (1 - batch.terminated.float())


def _make_target(q_network: nn.Module) -> nn.Module:
    if not isinstance(q_network, QNetwork):
        raise TypeError(f"cleanrl_style make_target: expected a QNetwork, got a {type(q_network).__name__}")
    target_network = QNetwork(*q_network.args)
    target_network.load_state_dict(q_network.state_dict())
    return target_network


def _epsilon_trace(episode_lengths: Sequence[int]) -> list[float]:
    # CleanRL computes epsilon from the global step before each action, across episodes.
    return [linear_schedule(START_E, END_E, EXPLORATION_STEPS, step) for step in range(sum(episode_lengths))]


ADAPTER = DQNAdapter(
    name="cleanrl-style dqn",
    make_network=QNetwork,
    bellman_targets=_bellman_targets,
    make_memory=_Memory,
    epsilon=lambda steps_done: linear_schedule(START_E, END_E, EXPLORATION_STEPS, steps_done),
    epsilon_trace=_epsilon_trace,
    greedy_action=lambda net, state: torch.argmax(net(state), dim=1).view(-1, 1),
    select_action=lambda net, state, eps, n_actions, rng: torch.tensor([[act(net, state, eps, n_actions, rng)]]),
    optimize_step=lambda policy, target, optimizer, batch, gamma, grad_clip: train_step(
        policy, target, optimizer, _data(batch), gamma
    ),
    make_target=_make_target,
    sync_target=update_target,
    declared_differences=(
        DeclaredDifference(("check_optimize_loss",), "MSE loss (CleanRL's choice), not Huber"),
        DeclaredDifference(("check_optimize_gradients_clamped",), "no gradient clipping"),
        DeclaredDifference(
            ("check_epsilon_schedule", "check_epsilon_trace"), "a linear exploration schedule, not exponential"
        ),
        DeclaredDifference(("check_replay_distinct_samples",), "uniform sampling with replacement"),
    ),
)
"""The CleanRL-style DQN's pieces."""
