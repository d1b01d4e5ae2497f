"""A worked example: a user's own small pixel DQN, written independently of dqnbench, and its adapter.

The first part is "user code" in the common CleanRL-like style: next states always stored with a
`terminated` flag, a deque replay buffer, an agent object that counts steps. Only `ADAPTER` at the end
knows about dqnbench. Check it with:

    python -m pytest --pyargs dqnbench.conformance --dqn-impl=dqnbench.conformance.example:ADAPTER
"""

from __future__ import annotations

import copy
import math
import random
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dqnbench.conformance.adapter import DQNAdapter, TransitionBatch

# --- the user's DQN -------------------------------------------------------------------------------------


def conv_out(size: int, kernel: int = 5, stride: int = 2) -> int:
    return (size - kernel) // stride + 1


class QNetwork(nn.Module):
    def __init__(self, h: int, w: int, n_actions: int, channels: int = 3) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(channels, 16, 5, 2), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 5, 2), nn.BatchNorm2d(32)
        self.conv3, self.bn3 = nn.Conv2d(32, 32, 5, 2), nn.BatchNorm2d(32)
        self.head = nn.Linear(conv_out(conv_out(conv_out(h))) * conv_out(conv_out(conv_out(w))) * 32, n_actions)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        return self.head(x.flatten(1))


def td_targets(target: nn.Module, rewards: Tensor, next_obs: Tensor, terminated: Tensor, gamma: float) -> Tensor:
    with torch.no_grad():
        return rewards + gamma * target(next_obs).max(dim=1).values * (1 - terminated.float())


class Buffer:
    """Keeps (obs, action, reward, next_obs, terminated); samples without replacement."""

    def __init__(self, capacity: int, seed: int) -> None:
        self.items: deque[tuple[Tensor, Tensor, Tensor, Tensor, bool]] = deque(maxlen=capacity)
        self.rng = random.Random(seed)

    def add(self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, terminated: bool) -> None:
        self.items.append((obs.clone(), action.clone(), reward.clone(), next_obs.clone(), terminated))

    def sample(self, n: int) -> list[tuple[Tensor, Tensor, Tensor, Tensor, bool]]:
        return self.rng.sample(list(self.items), n)


def epsilon_at(step: int, start: float = 0.9, end: float = 0.05, decay: float = 200.0) -> float:
    return end + (start - end) * math.exp(-step / decay)


class Agent:
    def __init__(self, q: nn.Module, n_actions: int, seed: int = 0) -> None:
        self.q, self.n_actions, self.steps, self.rng = q, n_actions, 0, random.Random(seed)
        self.last_epsilon = float("nan")

    def greedy(self, obs: Tensor) -> Tensor:
        mode = self.q.training
        self.q.eval()
        with torch.no_grad():
            action = self.q(obs).argmax(dim=1, keepdim=True)
        self.q.train(mode)
        return action

    def act(self, obs: Tensor, eps: float | None = None) -> Tensor:
        eps = epsilon_at(self.steps) if eps is None else eps
        self.last_epsilon = eps
        self.steps += 1
        if self.rng.random() < eps:
            return torch.tensor([[self.rng.randrange(self.n_actions)]])
        return self.greedy(obs)


def learn(q: nn.Module, target: nn.Module, opt: torch.optim.Optimizer, batch: dict[str, Tensor], gamma: float,
          clip: float = 1.0) -> Tensor:  # fmt: skip
    y = td_targets(target, batch["rewards"], batch["next_obs"], batch["terminated"], gamma)
    loss = F.smooth_l1_loss(q(batch["obs"]).gather(1, batch["actions"]).squeeze(1), y)
    opt.zero_grad()
    loss.backward()
    for p in q.parameters():
        p.grad.data.clamp_(-clip, clip)  # type: ignore[union-attr]
    opt.step()
    return loss.detach()


# --- the adapter: the only dqnbench-specific part -------------------------------------------------------


class _Memory:
    """The Buffer behind dqnbench's push/sample: the kit pushes next_state=None for terminated transitions."""

    def __init__(self, capacity: int, seed: int) -> None:
        self.buffer = Buffer(capacity, seed)

    def push(self, state: Tensor, action: Tensor, next_state: Tensor | None, reward: Tensor) -> None:
        # The user's buffer always stores a next observation; a placeholder stands in for a terminal one.
        stored = torch.zeros_like(state) if next_state is None else next_state
        self.buffer.add(state, action, reward, stored, next_state is None)

    def sample(self, n: int) -> list[tuple[Tensor, Tensor, Tensor | None, Tensor]]:
        return [(s, a, None if done else s2, r) for s, a, r, s2, done in self.buffer.sample(n)]

    def __len__(self) -> int:
        return len(self.buffer.items)


def _batch(b: TransitionBatch) -> dict[str, Tensor]:
    return {"obs": b.states, "actions": b.actions, "rewards": b.rewards, "next_obs": b.next_states,
            "terminated": b.terminated}  # fmt: skip


def _epsilon_trace(episode_lengths: Sequence[int]) -> list[float]:
    # Drive the agent as the training loop does; an identity "network" on 2 numbers keeps greedy steps cheap.
    agent = Agent(nn.Identity(), 2)
    rates = []
    for length in episode_lengths:
        # (a new episode begins here: this agent keeps its step count, which is what the check verifies)
        for _ in range(length):
            agent.act(torch.zeros(1, 2))
            rates.append(agent.last_epsilon)
    return rates


def _select_action(net: nn.Module, state: Tensor, eps: float, n_actions: int, rng: random.Random) -> Tensor:
    agent = Agent(net, n_actions)
    agent.rng = rng
    return agent.act(state, eps)


def _make_target(policy: nn.Module) -> nn.Module:
    return copy.deepcopy(policy).eval()


def _sync(policy: nn.Module, target: nn.Module) -> None:
    target.load_state_dict(policy.state_dict())
    target.eval()


def _extract_screen(frame: np.ndarray, cart_x: float) -> Tensor:
    from dqnbench.screen import extract_screen  # this user reuses dqnbench's screen pipeline

    return extract_screen(frame, cart_x)


def _get_screen(env: Any) -> Tensor:
    return _extract_screen(env.render(), float(env.unwrapped.state[0]))


ADAPTER = DQNAdapter(
    name="example user DQN",
    conv2d_size_out=conv_out,
    make_network=QNetwork,
    bellman_targets=lambda target, b, gamma: td_targets(target, b.rewards, b.next_states, b.terminated, gamma),
    make_memory=_Memory,
    epsilon=epsilon_at,
    epsilon_trace=_epsilon_trace,
    greedy_action=lambda net, state: Agent(net, 1).greedy(state),
    select_action=_select_action,
    optimize_step=lambda q, target, opt, b, gamma, clip: learn(q, target, opt, _batch(b), gamma, clip),
    make_target=_make_target,
    sync_target=_sync,
    extract_screen=_extract_screen,
    get_screen=_get_screen,
)
