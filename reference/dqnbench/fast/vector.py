"""Many CartPoles at once on one device: batched physics, drawn screens, a uint8 replay ring, one learner.

This is the throughput path for a GPU: N environments step together as (N, 4) tensors (gymnasium's CartPole
equations, Euler integration, its termination bounds and 500-step time limit), `CartPoleRaster` draws their
N screens in one call, transitions go into a device-resident ring of uint8 screens, and each vector step runs
one optimisation step. Nothing leaves the device inside the loop, no shape depends on the data (next states are
kept for final rows too and masked; the ring samples with random keys over all its slots) and every buffer is
updated in place, with its counters on the device, so the host never waits for the device and, with
`config.cuda_graph`, the whole vector step (act, step, draw, store, sample, learn) is one CUDA graph.

It trains the seed's agent (difference states, the seed's hyper-parameters) but is not the reference's loop:
N environments explore at once, and random numbers come from torch's default generator (seeded with the
config's seed), the one a CUDA graph replays safely. `gpu_check.py` times it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dqnbench.config import DQNConfig
from dqnbench.fast.graphs import WARMUP_STEPS, StaticStep, make_capturable
from dqnbench.fast.learner import FoldedTarget, use_foreach
from dqnbench.fast.memory import DenseBatch, ScreenBatch
from dqnbench.fast.parts import make_network
from dqnbench.fast.pixels import scale_to_unit_
from dqnbench.fast.raster import CartPoleRaster
from dqnbench.learner import make_target, sync_target
from dqnbench.policy import epsilon

GRAVITY, CART_MASS, POLE_MASS, HALF_LENGTH, FORCE, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
X_LIMIT, THETA_LIMIT, TIME_LIMIT = 2.4, 12 * 2 * math.pi / 360, 500
TARGET_SYNC_STEPS = 1000
"""Optimisation steps between target syncs when the config syncs by episodes (N envs finish many at once)."""

UNSUPPORTED_OPTIONS = {
    "env_id": "it steps its own tensor CartPole-v1",
    "optimizer": "it optimises with RMSprop, the seed's optimiser",
    "learning_rate_final": "its learning rate is constant",
    "double_dqn": "its target is the seed's max over the target network",
    "batch_norm": "its network is the seed's, with BatchNorm",
    "state": "its states are the seed's screen differences",
    "train_every": "it runs one optimisation step per vector step",
    "compile": "it runs eagerly or, with cuda_graph, as one CUDA graph",
}
"""Config options `VectorTrainer` does not implement, and what it does instead: a config changing one is refused."""


class VectorCartPole:
    """N gymnasium CartPole-v1 environments as tensors, updated in place; finished ones restart on `restart`.

    Random restarts come from `generator`, or from torch's default generator when it is None.
    """

    def __init__(self, n: int, *, device: torch.device | str = "cpu", seed: int | None = 0) -> None:
        if n < 1:
            raise ValueError(f"VectorCartPole(n={n}): need at least one environment")
        self.n, self.device = n, torch.device(device)
        self.generator = None if seed is None else torch.Generator(device=self.device).manual_seed(seed)
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
        self.state.copy_(
            torch.stack(
                [x + TAU * x_dot, x_dot + TAU * x_acc, theta + TAU * theta_dot, theta_dot + TAU * theta_acc], dim=1
            )
        )
        self.steps.add_(1)
        terminated = (self.state[:, 0].abs() > X_LIMIT) | (self.state[:, 2].abs() > THETA_LIMIT)
        return terminated, (self.steps >= TIME_LIMIT) & ~terminated

    def restart(self, done: Tensor) -> None:
        """Reset the environments where `done` is True."""
        self.state.copy_(torch.where(done[:, None], self._initial(self.n), self.state))
        self.steps.masked_fill_(done, 0)


class VectorReplay:
    """A device ring of transitions stored as their three uint8 screens (previous, current, next).

    `write` stores and `sample` draws using counters kept on the device (`stored`, `next_slot`); `count`
    advances the host's copy of them (`size`, `next`), which only says whether a batch can be drawn yet.
    `push` is both. Random keys come from `generator`, or from torch's default generator when seed is None.
    """

    def __init__(
        self, capacity: int, screen_shape: tuple[int, ...], device: torch.device, seed: int | None = 0
    ) -> None:
        self.capacity, self.device = capacity, device
        # Only stored slots are ever read, so the (large) screen ring needs no zero fill.
        self.screens = torch.empty((capacity, 3, *screen_shape), dtype=torch.uint8, device=device)
        self.actions = torch.zeros((capacity, 1), dtype=torch.long, device=device)
        self.rewards = torch.zeros(capacity, device=device)
        self.final = torch.zeros(capacity, dtype=torch.bool, device=device)
        self.stored = torch.zeros((), dtype=torch.long, device=device)
        self.next_slot = torch.zeros((), dtype=torch.long, device=device)
        self.slots = torch.arange(capacity, device=device)
        self.size = self.next = 0
        self.generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)

    def write(self, screens: Tensor, actions: Tensor, rewards: Tensor, final: Tensor) -> None:
        """Store N transitions: screens (N, 3, C, H, W) uint8, actions (N,), rewards (N,), final (N,)."""
        n = screens.shape[0]
        slots = (self.slots[:n] + self.next_slot) % self.capacity
        self.screens[slots] = screens
        self.actions[slots, 0] = actions
        self.rewards[slots] = rewards
        self.final[slots] = final
        self.next_slot.add_(n).remainder_(self.capacity)
        self.stored.add_(n).clamp_(max=self.capacity)

    def count(self, n: int) -> None:
        self.next = (self.next + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def push(self, screens: Tensor, actions: Tensor, rewards: Tensor, final: Tensor) -> None:
        self.write(screens, actions, rewards, final)
        self.count(screens.shape[0])

    def sample(self, batch_size: int) -> DenseBatch:
        """`batch_size` distinct stored transitions, uniformly: the smallest of one random key per stored slot."""
        if batch_size > self.size:
            raise ValueError(f"VectorReplay.sample(batch_size={batch_size}): the ring holds only {self.size}")
        keys = torch.rand(self.capacity, generator=self.generator, device=self.device)
        keys.masked_fill_(self.slots >= self.stored, 2.0)  # never drawn: above every key in [0, 1)
        index = keys.topk(batch_size, largest=False, sorted=False).indices
        # (previous, current, next) screens: the seed's difference states, as ScreenMemory's batches make them.
        batch = ScreenBatch(self.screens[index], self.actions[index], self.rewards[index], ~self.final[index], False)
        return batch.dense()


@dataclass
class VectorTrainer:
    """Trains the seed's DQN on `envs` CartPoles stepping together; `run(steps)` does that many vector steps.

    With `config.cuda_graph` (CUDA only), once the ring holds a batch the whole vector step is captured as one
    CUDA graph and replayed: its first steps run on a side stream first (cuDNN and cuBLAS set up, the
    optimiser's state created outside the graph), and count as training steps like every replay.
    """

    config: DQNConfig
    envs: int = 16
    device: torch.device = torch.device("cpu")  # noqa: RUF009 - an immutable default

    def __post_init__(self) -> None:
        defaults = DQNConfig()
        ignored = [
            f"{name}={getattr(self.config, name)!r} ({why})"
            for name, why in UNSUPPORTED_OPTIONS.items()
            if getattr(self.config, name) != getattr(defaults, name)
        ]
        episodes, steps = self.config.target_update_episodes, self.config.target_update_steps
        if not (episodes == 0 or (episodes == defaults.target_update_episodes and steps == 0)):
            ignored.append(
                f"target_update_episodes={episodes} with target_update_steps={steps} (it syncs by optimisation "
                "steps only: target_update_episodes=0 with target_update_steps=N, or both at their defaults for "
                f"every {TARGET_SYNC_STEPS})"
            )
        if ignored:
            raise ValueError(
                f"VectorTrainer: the config sets options it does not implement: {'; '.join(ignored)}; leave them at "
                "their defaults, or train with `dqnbench train`, which implements them all"
            )
        if self.config.cuda_graph and self.device.type != "cuda":
            raise ValueError(
                f"VectorTrainer: cuda_graph needs a CUDA device, got device={self.device}; "
                "pass device=torch.device('cuda') or a config with cuda_graph=False"
            )
        torch.manual_seed(self.config.seed)  # the default generator: environments, exploration and sampling
        self.env = VectorCartPole(self.envs, device=self.device, seed=None)
        self.raster = CartPoleRaster(self.config.screen_height, device=self.device)
        height, width = self.raster.shape
        self.policy: nn.Module = make_network(height, width, 2).to(self.device)
        self.target = make_target(self.policy)
        self.folded = FoldedTarget(self.target)
        self.optimizer = torch.optim.RMSprop(self.policy.parameters(), lr=self.config.learning_rate)
        use_foreach(self.optimizer)
        if self.config.cuda_graph:
            make_capturable(self.optimizer, self.device)
        self.learner = StaticStep(
            self.policy,
            self.folded,
            self.optimizer,
            batch_size=self.config.batch_size,
            state_shape=(3, height, width),
            gamma=self.config.gamma,
            grad_clip=self.config.grad_clip,
        )
        self.memory = VectorReplay(
            max(self.config.memory_capacity, self.config.batch_size), (3, height, width), self.device, seed=None
        )
        first = self._pixels(self.env.state)
        self.previous, self.current = first, first.clone()
        self.vector_steps = torch.zeros((), dtype=torch.long, device=self.device)
        self.env_steps = 0
        self.optimize_steps = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.loss: Tensor | None = None

    def _pixels(self, states: Tensor) -> Tensor:
        return self.raster.screens(states).mul_(255).to(torch.uint8)

    def _act(self, state: Tensor) -> Tensor:
        c = self.config
        eps = epsilon(self.vector_steps, c.eps_start, c.eps_end, c.eps_decay)
        self.policy.eval()
        with torch.no_grad():
            greedy = self.policy(state).argmax(dim=1)
        self.policy.train()
        explore = torch.rand(self.envs, device=self.device, dtype=torch.float64) < eps
        random_actions = torch.randint(0, 2, (self.envs,), device=self.device)
        return torch.where(explore, random_actions, greedy)

    def _collect(self) -> None:
        """Act, step, draw and store one transition per environment, in place."""
        state = scale_to_unit_(self.current.float()) - scale_to_unit_(self.previous.float())
        actions = self._act(state)
        terminated, truncated = self.env.step(actions)
        done = terminated | truncated
        stepped = self.env.state.clone()
        self.env.restart(done)
        # One drawing call for the screens after the step and those after the restarts (kernel launches, not
        # pixels, are what a step costs on a GPU).
        following, restarted = self._pixels(torch.cat([stepped, self.env.state])).chunk(2)
        final = terminated if self.config.bootstrap_truncated else done
        rewards = torch.ones(self.envs, device=self.device)
        self.memory.write(torch.stack([self.previous, self.current, following], dim=1), actions, rewards, final)
        # A finished environment starts again from a fresh screen, taken twice (the seed's zero first state).
        keep = done[:, None, None, None]
        self.previous.copy_(torch.where(keep, restarted, self.current))
        self.current.copy_(torch.where(keep, restarted, following))
        self.vector_steps.add_(1)

    def _learn(self) -> Tensor:
        self.learner.load_dense(self.memory.sample(self.config.batch_size))
        return self.learner()

    def _learning(self) -> bool:
        """Whether this vector step ends with an optimisation step (the ring will hold enough once it stores)."""
        return self.memory.size + self.envs >= max(self.config.learning_starts, self.config.batch_size)

    def step(self) -> Tensor | None:
        """One vector step: act, step, draw, store, and one optimisation step once the ring holds a batch."""
        learning = self._learning()
        if learning and self.config.cuda_graph:
            return self._replay()
        return self._eager_step(learning)

    def _eager_step(self, learning: bool) -> Tensor | None:
        self._collect()
        self.memory.count(self.envs)  # sample() checks the host's count, so it follows the store
        loss = self._learn() if learning else None
        self._counted(learning)
        return loss

    def _counted(self, learned: bool) -> None:
        """The host's bookkeeping after a vector step ran: steps taken, and the target synced on schedule."""
        self.env_steps += self.envs
        if not learned:
            return
        self.optimize_steps += 1
        if self.optimize_steps % (self.config.target_update_steps or TARGET_SYNC_STEPS) == 0:
            sync_target(self.policy, self.target)
            self.folded.refresh()

    def _replay(self) -> Tensor:
        if self.graph is None or self.loss is None:
            self.graph, self.loss = self._capture()
        self.graph.replay()
        self.memory.count(self.envs)
        self._counted(True)
        return self.loss.clone()

    def _capture(self) -> tuple[torch.cuda.CUDAGraph, Tensor]:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self._eager_step(learning=True)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # Recorded, not run: the host's counts advance only when the graph is replayed.
        with torch.cuda.graph(graph):
            self._collect()
            loss = self._learn()
        return graph, loss

    def run(self, steps: int) -> None:
        """`steps` calls of `step` (the one that captures the graph makes WARMUP_STEPS more vector steps)."""
        for _ in range(steps):
            self.step()
