"""Many CartPoles at once on one device: batched physics, drawn screens, a uint8 replay ring, one learner.

This is the throughput path for a GPU: N environments step together as (N, 4) tensors (gymnasium's CartPole
equations, Euler integration, its termination bounds and 500-step time limit), `CartPoleRaster` draws their
N screens in one call, transitions go into a device-resident ring of uint8 screens, and each vector step runs
one optimisation step (`td_update`). Nothing leaves the device inside the loop and no shape depends on the data
(next states are kept for final rows too and masked), so the host never waits for the device.

It trains the seed's agent (difference states, the seed's hyper-parameters) but is not the reference's loop:
N environments explore at once and the ring samples with `torch.randperm` on the device. `gpu_check.py`
times it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dqnbench.config import DQNConfig
from dqnbench.fast.graphs import GraphedStep
from dqnbench.fast.learner import FoldedTarget, td_update, use_foreach
from dqnbench.fast.memory import DenseBatch
from dqnbench.fast.parts import make_network
from dqnbench.fast.raster import CartPoleRaster
from dqnbench.learner import make_target, sync_target
from dqnbench.policy import epsilon

GRAVITY, CART_MASS, POLE_MASS, HALF_LENGTH, FORCE, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
X_LIMIT, THETA_LIMIT, TIME_LIMIT = 2.4, 12 * 2 * math.pi / 360, 500
TARGET_SYNC_STEPS = 1000
"""Optimisation steps between target syncs when the config syncs by episodes (N envs finish many at once)."""


class VectorCartPole:
    """N gymnasium CartPole-v1 environments as tensors; finished ones restart on the next `step`."""

    def __init__(self, n: int, *, device: torch.device | str = "cpu", seed: int = 0) -> None:
        if n < 1:
            raise ValueError(f"VectorCartPole(n={n}): need at least one environment")
        self.n, self.device = n, torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.state = self._initial(n)
        self.steps = torch.zeros(n, dtype=torch.long, device=self.device)

    def _initial(self, n: int) -> Tensor:
        # gymnasium's reset: every state variable uniform in [-0.05, 0.05].
        return torch.rand(n, 4, generator=self.generator, device=self.device, dtype=torch.float64) * 0.1 - 0.05

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Advance every environment by its action (N,) in {0, 1}; return (terminated, truncated) masks."""
        x, x_dot, theta, theta_dot = self.state.unbind(1)
        force = torch.where(actions.bool(), FORCE, -FORCE)
        cos, sin = torch.cos(theta), torch.sin(theta)
        total = CART_MASS + POLE_MASS
        temp = (force + POLE_MASS * HALF_LENGTH * theta_dot**2 * sin) / total
        theta_acc = (GRAVITY * sin - cos * temp) / (HALF_LENGTH * (4.0 / 3.0 - POLE_MASS * cos**2 / total))
        x_acc = temp - POLE_MASS * HALF_LENGTH * theta_acc * cos / total
        self.state = torch.stack(
            [x + TAU * x_dot, x_dot + TAU * x_acc, theta + TAU * theta_dot, theta_dot + TAU * theta_acc], dim=1
        )
        self.steps += 1
        terminated = (self.state[:, 0].abs() > X_LIMIT) | (self.state[:, 2].abs() > THETA_LIMIT)
        return terminated, (self.steps >= TIME_LIMIT) & ~terminated

    def restart(self, done: Tensor) -> None:
        """Reset the environments where `done` is True."""
        self.state = torch.where(done[:, None], self._initial(self.n), self.state)
        self.steps = torch.where(done, 0, self.steps)


class VectorReplay:
    """A device ring of transitions stored as their three uint8 screens (previous, current, next)."""

    def __init__(self, capacity: int, screen_shape: tuple[int, ...], device: torch.device, seed: int = 0) -> None:
        self.capacity, self.device = capacity, device
        # Only slots below `size` are ever read, so the (large) screen ring needs no zero fill.
        self.screens = torch.empty((capacity, 3, *screen_shape), dtype=torch.uint8, device=device)
        self.actions = torch.zeros((capacity, 1), dtype=torch.long, device=device)
        self.rewards = torch.zeros(capacity, device=device)
        self.final = torch.zeros(capacity, dtype=torch.bool, device=device)
        self.size = self.next = 0
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def push(self, screens: Tensor, actions: Tensor, rewards: Tensor, final: Tensor) -> None:
        """Store N transitions: screens (N, 3, C, H, W) uint8, actions (N,), rewards (N,), final (N,)."""
        slots = (torch.arange(screens.shape[0], device=self.device) + self.next) % self.capacity
        self.screens[slots] = screens
        self.actions[slots, 0] = actions
        self.rewards[slots] = rewards
        self.final[slots] = final
        self.next = (self.next + screens.shape[0]) % self.capacity
        self.size = min(self.size + screens.shape[0], self.capacity)

    def sample(self, batch_size: int) -> DenseBatch:
        if batch_size > self.size:
            raise ValueError(f"VectorReplay.sample(batch_size={batch_size}): the ring holds only {self.size}")
        index = torch.randperm(self.size, generator=self.generator, device=self.device)[:batch_size]
        screens = self.screens[index].to(torch.float32).div_(255)  # as ToTensor converts uint8
        return DenseBatch(
            states=screens[:, 1] - screens[:, 0],
            actions=self.actions[index],
            rewards=self.rewards[index],
            continues=~self.final[index],
            next_states=screens[:, 2] - screens[:, 1],
        )


@dataclass
class VectorTrainer:
    """Trains the seed's DQN on `envs` CartPoles stepping together; `run(steps)` does that many vector steps.

    With `config.cuda_graph`, each optimisation step is a CUDA graph replay (`dqnbench.fast.graphs`)."""

    config: DQNConfig
    envs: int = 16
    device: torch.device = torch.device("cpu")  # noqa: RUF009 - an immutable default

    def __post_init__(self) -> None:
        torch.manual_seed(self.config.seed)
        self.env = VectorCartPole(self.envs, device=self.device, seed=self.config.seed)
        self.raster = CartPoleRaster(self.config.screen_height, device=self.device)
        height, width = self.raster.shape
        self.policy: nn.Module = make_network(height, width, 2).to(self.device)
        self.target = make_target(self.policy)
        self.folded = FoldedTarget(self.target)
        self.optimizer = torch.optim.RMSprop(self.policy.parameters(), lr=self.config.learning_rate)
        use_foreach(self.optimizer)
        self.graphed = (
            GraphedStep(
                self.policy, self.folded, self.optimizer, gamma=self.config.gamma, grad_clip=self.config.grad_clip
            )
            if self.config.cuda_graph
            else None
        )
        self.memory = VectorReplay(
            max(self.config.memory_capacity, self.config.batch_size), (3, height, width), self.device, self.config.seed
        )
        self.generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        first = self._pixels(self.env.state)
        self.previous, self.current = first, first.clone()
        self.env_steps = 0
        self.optimize_steps = 0

    def _pixels(self, states: Tensor) -> Tensor:
        return self.raster.screens(states).mul_(255).to(torch.uint8)

    def _act(self, state: Tensor) -> Tensor:
        eps = epsilon(self.env_steps // self.envs, self.config.eps_start, self.config.eps_end, self.config.eps_decay)
        self.policy.eval()
        with torch.no_grad():
            greedy = self.policy(state).argmax(dim=1)
        self.policy.train()
        explore = torch.rand(self.envs, generator=self.generator, device=self.device) < eps
        random_actions = torch.randint(0, 2, (self.envs,), generator=self.generator, device=self.device)
        return torch.where(explore, random_actions, greedy)

    def step(self) -> Tensor | None:
        """One vector step: act, step, draw, store, and one optimisation step once the ring holds a batch."""
        state = (self.current.float() / 255) - (self.previous.float() / 255)
        actions = self._act(state)
        terminated, truncated = self.env.step(actions)
        done = terminated | truncated
        stepped = self.env.state
        self.env.restart(done)
        # One drawing call for the screens after the step and those after the restarts (kernel launches, not
        # pixels, are what a step costs on a GPU).
        following, restarted = self._pixels(torch.cat([stepped, self.env.state])).chunk(2)
        final = terminated if self.config.bootstrap_truncated else done
        rewards = torch.ones(self.envs, device=self.device)
        self.memory.push(torch.stack([self.previous, self.current, following], dim=1), actions, rewards, final)
        # A finished environment starts again from a fresh screen, taken twice (the seed's zero first state).
        keep = done[:, None, None, None]
        self.previous = torch.where(keep, restarted, self.current)
        self.current = torch.where(keep, restarted, following)
        self.env_steps += self.envs
        loss = None
        if self.memory.size >= max(self.config.learning_starts, self.config.batch_size):
            batch = self.memory.sample(self.config.batch_size)
            if self.graphed is None:
                targets = batch.targets(self.folded, self.config.gamma)
                loss = td_update(
                    self.policy, self.optimizer, batch.states, batch.actions, targets, self.config.grad_clip
                )
            else:
                loss = self.graphed.dense(batch)
            self.optimize_steps += 1
            if self.optimize_steps % (self.config.target_update_steps or TARGET_SYNC_STEPS) == 0:
                sync_target(self.policy, self.target)
        return loss

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()
