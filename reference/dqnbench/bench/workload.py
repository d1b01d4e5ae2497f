"""The data benchmarks run on: rendered CartPole screens and frames, transitions as the training loop makes
them, and one full training step.

Everything is seeded, so two runs time the same work. Screens come from real renders of random CartPole
states (the cart anywhere on the track), so per-frame costs that depend on the picture are represented.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from dqnbench.bench.subjects import REFERENCE_SUBJECT, BenchSubject
from dqnbench.config import SEED_CONFIG, DQNConfig
from dqnbench.envs import make_env
from dqnbench.learner import ReplayBatch
from dqnbench.parts import Memory, OptimizeFn
from dqnbench.policy import epsilon
from dqnbench.train import Experience, StateBuilder, make_optimizer

SCREEN_HEIGHT = 40
SCREEN_WIDTH = 90
N_ACTIONS = 2


def random_cartpole_states(count: int, seed: int = 0) -> np.ndarray:
    """(count, 4) CartPole states with the cart anywhere on the visible track and the pole within its limits."""
    rng = np.random.default_rng(seed)
    low = np.array([-2.4, -2.0, -0.2, -2.0])
    return rng.uniform(low, -low, size=(count, 4))


def set_state(env: Any, state: np.ndarray) -> None:
    env.unwrapped.state = state.copy()


@dataclass(frozen=True)
class Frame:
    """One rendered (H, W, 3) uint8 frame and the cart position it shows."""

    pixels: np.ndarray
    cart_x: float


def posed_env(count: int, seed: int = 0) -> Iterator[tuple[Any, np.ndarray]]:
    """A CartPole env set, in turn, to each of `count` random states: yields (env, state), closes it after."""
    env = make_env()
    env.reset(seed=seed)
    try:
        for state in random_cartpole_states(count, seed):
            set_state(env, state)
            yield env, state
    finally:
        env.close()


def render_frames(count: int, seed: int = 0) -> list[Frame]:
    return [Frame(np.asarray(env.render()), float(state[0])) for env, state in posed_env(count, seed)]


def render_screens(subject: BenchSubject, count: int, device: torch.device, seed: int = 0) -> list[Tensor]:
    """`count` screens of random states on `device`, through the subject's `get_screen` when it has one.

    A subject without one (a user's adapter may supply only a network) gets the reference's screens, which
    are what its network and memory would be fed in `dqnbench train`.
    """
    get_screen = subject.get_screen or REFERENCE_SUBJECT.get_screen
    assert get_screen is not None
    return [get_screen(env, SCREEN_HEIGHT).to(device) for env, _ in posed_env(count, seed)]


Transition = tuple[Tensor, Tensor, Tensor | None, Tensor]

W = TypeVar("W")


class Workloads:
    """What benchmarks time, built once per session: a filled replay memory, a training step, a compiled step.

    With `--passes` a benchmark runs once per pass, and the implementations take turns in each, so building
    per test would refill a 10000-transition memory or recompile a step every pass. `close()` closes what was
    built that can be closed (a training step's environment).
    """

    def __init__(self) -> None:
        self._built: dict[Hashable, Any] = {}

    def get(self, key: Hashable, build: Callable[[], W]) -> W:
        """What `build()` made for `key` the first time it was asked for (a build that raised is retried)."""
        if key not in self._built:
            self._built[key] = build()
        built: W = self._built[key]
        return built

    def close(self) -> None:
        for built in self._built.values():
            close = getattr(built, "close", None)
            if callable(close):
                close()
        self._built.clear()


@dataclass(frozen=True)
class Step:
    """What `dqnbench.train` hands the memory for one env step: the screens it rendered, then the push."""

    observed: tuple[tuple[Tensor, bool], ...]
    """(screen, first) for each `memory.observe` call before the push (two right after a reset)."""
    transition: Transition

    def feed(self, memory: Memory) -> None:
        for screen, first in self.observed:
            memory.observe(screen, first=first)
        memory.push(*self.transition)


def rollout(screens: list[Tensor], *, episode_length: int = 20, seed: int = 0) -> Iterator[Step]:
    """Endless steps shaped as `dqnbench.train` makes them, cycling through `screens`.

    States are screen differences built by the training loop's `StateBuilder`, each next state is the
    following transition's state (the same tensor, as in the loop), every screen is observed before its
    push, and every `episode_length`-th transition is final (`next_state` None).
    """
    rng = random.Random(seed)
    device = screens[0].device
    builder = StateBuilder(SEED_CONFIG)
    index = 0

    def next_screen() -> Tensor:
        nonlocal index
        index += 1
        return screens[index % len(screens)]

    while True:
        first = next_screen()
        state = builder.reset(first)
        observed: tuple[tuple[Tensor, bool], ...] = ((first, True),)
        for t in range(1, episode_length + 1):
            screen = next_screen()
            next_state = builder.push(screen)
            action = torch.tensor([[rng.randrange(N_ACTIONS)]], device=device)
            reward = torch.tensor([1.0], device=device)
            transition = (state, action, None if t == episode_length else next_state, reward)
            yield Step((*observed, (screen, False)), transition)
            state, observed = next_state, ()


def fill(memory: Memory, steps: Iterator[Step], count: int) -> None:
    for _ in range(count):
        next(steps).feed(memory)


def network(subject: BenchSubject, device: torch.device) -> nn.Module:
    """The subject's Q-network for the seed's 40x90 difference screens, on `device`."""
    subject.require("make_network")
    assert subject.make_network is not None
    return subject.make_network(SCREEN_HEIGHT, SCREEN_WIDTH, N_ACTIONS, 3).to(device)


OPTIMIZE_MEMORY = 1000
"""Transitions in the memory the optimisation benchmark samples its batch from."""


def learner(
    subject: BenchSubject, device: torch.device, config: DQNConfig = SEED_CONFIG
) -> tuple[nn.Module, OptimizeFn]:
    """The subject's policy network on `device` and its optimisation step, with the target and optimiser for it."""
    subject.require("make_network", "make_optimize")
    assert subject.make_optimize is not None
    policy = network(subject, device)
    target = subject.make_target(policy)
    return policy, subject.make_optimize(policy, target, make_optimizer(policy.parameters(), config), config)


def optimize_call(subject: BenchSubject, device: torch.device, screens: list[Tensor]) -> Callable[[], Tensor]:
    """One optimisation step of the subject's parts on one batch of 128 sampled from a filled memory, as a call.

    The same batch every call, so calls differ only by the networks' and optimiser's state.
    """
    _, optimize = learner(subject, device)
    batch = sampled_batch(subject, screens)
    return lambda: optimize(batch)


def sampled_batch(subject: BenchSubject, screens: list[Tensor], size: int = SEED_CONFIG.batch_size) -> ReplayBatch:
    """`size` transitions sampled from the subject's memory after `OPTIMIZE_MEMORY` steps of `rollout(screens)`."""
    subject.require("make_memory")
    assert subject.make_memory is not None
    memory = subject.make_memory(OPTIMIZE_MEMORY, SEED_CONFIG.seed)
    fill(memory, rollout(screens), OPTIMIZE_MEMORY)
    return memory.sample_batch(size)


class TrainStep:
    """One step of `dqnbench.train`'s loop with the subject's parts: act, env step, screen, push, optimize.

    The memory starts filled with `warm` transitions made from `screens` (see `rollout`), so every step
    optimises, as in the loop after `learning_starts`; an episode's end resets the env inside the step that
    ended it, as the loop does.
    """

    def __init__(
        self,
        subject: BenchSubject,
        device: torch.device,
        *,
        screens: list[Tensor],
        warm: int,
        config: DQNConfig = SEED_CONFIG,
    ) -> None:
        subject.require("make_network", "make_memory", "make_optimize", "get_screen")
        assert subject.make_memory is not None
        assert subject.make_optimize is not None
        assert subject.get_screen is not None
        self.config = config
        self.env = make_env(config.env_id)
        self.env.reset(seed=config.seed)
        torch.manual_seed(config.seed)
        self.policy, self.optimize = learner(subject, device, config)
        self.memory = subject.make_memory(config.memory_capacity, config.seed)
        fill(self.memory, rollout(screens), warm)
        self.experience = Experience(
            self.env, subject.get_screen, self.memory, config, device, random.Random(config.seed)
        )
        self.state = self.experience.start_episode()
        # Past the exploration ramp, as most of a run is: acting is mostly greedy.
        self.steps = int(5 * config.eps_decay)

    def __call__(self) -> Tensor:
        config = self.config
        eps = epsilon(self.steps, config.eps_start, config.eps_end, config.eps_decay)
        self.state, terminated, truncated = self.experience.step(self.policy, self.state, eps)
        self.steps += 1
        loss = self.optimize(self.memory.sample_batch(config.batch_size))
        if terminated or truncated:
            self.env.reset()
            self.state = self.experience.start_episode()
        return loss

    def close(self) -> None:
        self.env.close()
