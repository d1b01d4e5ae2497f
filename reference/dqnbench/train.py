"""The training loop, top to bottom: the seed notebook's algorithm with every piece importable."""

from __future__ import annotations

import itertools
import json
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dqnbench.config import DQNConfig
from dqnbench.envs import make_env
from dqnbench.files import atomic_write, atomic_write_text, refuse_to_overwrite
from dqnbench.learner import make_target, sync_target
from dqnbench.nets import without_batch_norm
from dqnbench.parts import Memory, TrainingParts, screen_for, training_parts
from dqnbench.plots import plot_durations
from dqnbench.policy import epsilon, select_action

CSV_HEADER = "episode,duration,total_steps,epsilon,mean_loss,wall_s,mean_max_q\n"
"""`mean_max_q`: the mean of max_a Q(s, a) over the episode's greedy steps (nan when it took none), to see
Q-values grow where the loss alone cannot say why."""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but torch.cuda.is_available() is False; use --device cpu")
    return torch.device(device)


def make_optimizer(params: object, config: DQNConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.learning_rate)  # type: ignore[arg-type]
    return torch.optim.RMSprop(params, lr=config.learning_rate)  # type: ignore[arg-type]


def learning_rate_at(step: int, config: DQNConfig) -> float:
    """The learning rate at environment step `step`: `learning_rate` when `learning_rate_final` is None, else
    the linear interpolation from `learning_rate` (step 0) to `learning_rate_final` (step `max_env_steps`),
    held at `learning_rate_final` afterwards."""
    if config.learning_rate_final is None or config.max_env_steps is None:
        return config.learning_rate
    fraction = min(max(step / config.max_env_steps, 0.0), 1.0)
    return config.learning_rate + fraction * (config.learning_rate_final - config.learning_rate)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate (what a torch LR scheduler would do, without its state)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


class StateBuilder:
    """Turns successive screens into network inputs: the seed's difference, or a stack of the last k."""

    def __init__(self, config: DQNConfig) -> None:
        self.mode = config.state
        self.screens: deque[Tensor] = deque(maxlen=2 if config.state == "difference" else config.stack_frames)

    def reset(self, screen: Tensor) -> Tensor:
        self.screens.clear()
        # The seed grabbed the first screen twice, so the first difference is all zeros.
        self.screens.extend([screen] * self.screens.maxlen)  # type: ignore[operator]
        return self.current()

    def push(self, screen: Tensor) -> Tensor:
        self.screens.append(screen)
        return self.current()

    def current(self) -> Tensor:
        if self.mode == "difference":
            return self.screens[1] - self.screens[0]
        return torch.cat(list(self.screens), dim=1)


class Experience:
    """Acting and remembering: one environment step of the loop, from action to stored transition.

    The benchmarks replay exactly this (`dqnbench.bench.workload.TrainStep`), so it lives in one place.
    """

    def __init__(
        self,
        env: Any,
        get_screen: Callable[..., Tensor],
        memory: Memory,
        config: DQNConfig,
        device: torch.device,
        rng: random.Random,
    ) -> None:
        self.env = env
        self.get_screen = screen_for(get_screen, config)
        self.memory = memory
        self.config = config
        self.device = device
        self.rng = rng
        self.n_actions = int(env.action_space.n)
        self.states = StateBuilder(config)
        # Sum and count of max_a Q(s, a) over the greedy steps since the last `take_max_q`; a running sum on
        # the device, so acting never waits for it and a loop that never reads it (the benchmarks) holds nothing.
        self.max_q_sum: Tensor | float = 0.0
        self.max_q_count = 0

    def _screen(self, *, first: bool) -> Tensor:
        screen = self.get_screen(self.env).to(self.device)
        self.memory.observe(screen, first=first)
        return screen

    def start_episode(self) -> Tensor:
        """The first state of an episode whose env was just reset."""
        return self.states.reset(self._screen(first=True))

    def step(self, policy_net: nn.Module, state: Tensor, eps: float) -> tuple[Tensor, bool, bool]:
        """Act epsilon-greedily in `state` and store the transition; returns (next state, terminated, truncated)."""
        greedy_values: list[Tensor] = []
        action = select_action(policy_net, state, eps, self.n_actions, self.rng, greedy_values)
        if greedy_values:
            self.max_q_sum = self.max_q_sum + greedy_values[0].sum()
            self.max_q_count += 1
        _, reward, terminated, truncated, _ = self.env.step(action.item())
        next_state = self.states.push(self._screen(first=False))
        final = terminated or (truncated and not self.config.bootstrap_truncated)
        self.memory.push(state, action, None if final else next_state, torch.tensor([reward], device=self.device))
        return next_state, terminated, truncated

    def take_max_q(self) -> float:
        """Mean max-Q of the greedy steps since the last call (NaN when none), and a fresh start."""
        mean = float(self.max_q_sum) / self.max_q_count if self.max_q_count else float("nan")
        self.max_q_sum, self.max_q_count = 0.0, 0
        return mean


@dataclass
class TrainResult:
    durations: list[int] = field(default_factory=list)
    total_steps: int = 0
    wall_s: float = 0.0
    interrupted: bool = False
    out: Path = Path()

    @property
    def mean_last_100(self) -> float:
        last = self.durations[-100:]
        return sum(last) / len(last) if last else 0.0


class Progress:
    """A progress bar redrawn after each episode: episode, duration, 100-episode mean and steps per second.

    On a terminal it redraws one line; elsewhere (CI logs, pipes) it prints one line per episode.
    """

    WIDTH = 20

    def __init__(self, total: int, max_steps: int | None = None) -> None:
        self.total = total
        self.max_steps = max_steps
        self.tty = sys.stderr.isatty()

    def update(self, result: TrainResult, steps_per_s: float) -> None:
        done = len(result.durations)
        # A run bounded by environment steps (the tuned configuration) ends long before its episode count.
        fraction = max(done / self.total, result.total_steps / self.max_steps if self.max_steps else 0.0)
        filled = min(self.WIDTH, int(self.WIDTH * fraction))
        line = (
            f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] episode {done}/{self.total} | "
            f"duration {result.durations[-1]} | mean100 {result.mean_last_100:.1f} | {steps_per_s:.1f} steps/s"
        )
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def make_policy(parts: TrainingParts, config: DQNConfig, height: int, width: int, n_actions: int) -> nn.Module:
    """The implementation's Q-network for `config`'s input, with BatchNorm removed when the config says so."""
    net = parts.make_network(height, width, n_actions, config.in_channels)
    return net if config.batch_norm else without_batch_norm(net)


def available_memory_bytes(device: torch.device) -> int | None:
    """Memory a new allocation can get: MemAvailable on Linux, free CUDA memory on a GPU; None when unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def check_replay_fits(config: DQNConfig, device: torch.device, needed: int) -> None:
    """Refuse a run whose full replay memory would not fit, instead of being killed hours into it."""
    available = available_memory_bytes(device)
    if available is not None and needed > available:
        raise MemoryError(
            f"--memory-capacity {config.memory_capacity} with --impl {config.impl}: a full replay memory takes "
            f"~{needed / 2**30:.1f} GiB, but only {available / 2**30:.1f} GiB is available; lower "
            "--memory-capacity, or use --impl fast (it stores each screen once, as uint8)"
        )


def train(config: DQNConfig, *, progress: bool = True) -> TrainResult:
    """Train a DQN as `config` says and write its results under `config.out` (see DQNConfig.out)."""
    out = config.resolved_out()
    refuse_to_overwrite(out, "output folder", "pass a new --out (results of earlier runs are never replaced)")
    # Fail on a bad device, implementation or env before creating `out`: a half-started folder would make
    # the corrected re-run with the same --out refuse to start.
    device = resolve_device(config.device)
    if config.cuda_graph and device.type != "cuda":
        raise RuntimeError(
            f"--cuda-graph needs CUDA, and this run would train on {device} (torch.cuda.is_available() is "
            f"{torch.cuda.is_available()}); drop --cuda-graph, or run on a GPU machine"
        )
    parts = training_parts(config.impl)
    env = make_env(config.env_id)
    torch.manual_seed(config.seed)
    env.reset(seed=config.seed)
    env.action_space.seed(config.seed)
    n_actions = int(env.action_space.n)  # type: ignore[attr-defined]

    # Size the network from a real screen, as the seed did.
    _, _, height, width = screen_for(parts.get_screen, config)(env).shape
    check_replay_fits(config, device, parts.replay_bytes(config.memory_capacity, (config.in_channels, height, width)))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", json.dumps(config.to_json_dict(), indent=2) + "\n")
    policy_net = make_policy(parts, config, height, width, n_actions).to(device)
    target_net = make_target(policy_net)
    optimizer = make_optimizer(policy_net.parameters(), config)
    optimize = parts.make_optimize(policy_net, target_net, optimizer, config)
    memory = parts.make_memory(config.memory_capacity, config.seed)
    experience = Experience(env, parts.get_screen, memory, config, device, random.Random(config.seed))

    result = TrainResult(out=out)
    csv_rows = [CSV_HEADER]
    bar = Progress(config.episodes, config.max_env_steps) if progress else None
    started = time.perf_counter()
    try:
        for episode in range(config.episodes):
            episode_started, episode_losses = time.perf_counter(), []
            if episode > 0:
                env.reset()
            state = experience.start_episode()
            for t in itertools.count(1):  # noqa: B007 - t is the episode's duration once the loop breaks
                eps = epsilon(result.total_steps, config.eps_start, config.eps_end, config.eps_decay)
                # Act, step the env, render the next screen, store the transition (terminal: no next state).
                state, terminated, truncated = experience.step(policy_net, state, eps)
                result.total_steps += 1

                if len(memory) >= config.learning_starts and result.total_steps % config.train_every == 0:
                    if config.learning_rate_final is not None:  # None: the optimiser keeps its constant rate
                        set_learning_rate(optimizer, learning_rate_at(result.total_steps, config))
                    episode_losses.append(optimize(memory.sample_batch(config.batch_size)))
                if config.target_update_steps and result.total_steps % config.target_update_steps == 0:
                    sync_target(policy_net, target_net)
                out_of_steps = config.max_env_steps is not None and result.total_steps >= config.max_env_steps
                if terminated or truncated or out_of_steps:
                    break

            result.durations.append(t)
            if config.target_update_episodes and episode % config.target_update_episodes == 0:
                sync_target(policy_net, target_net)
            mean_loss = float(torch.stack(episode_losses).mean()) if episode_losses else float("nan")
            wall = time.perf_counter() - started
            max_q = experience.take_max_q()
            csv_rows.append(f"{episode},{t},{result.total_steps},{eps:.6f},{mean_loss:.6g},{wall:.3f},{max_q:.6g}\n")
            atomic_write_text(out / "durations.csv", "".join(csv_rows))
            if bar:
                bar.update(result, t / max(time.perf_counter() - episode_started, 1e-9))
            if out_of_steps:
                break
    except KeyboardInterrupt:
        # Everything up to the last finished episode is already on disk; finish the other files too.
        result.interrupted = True
    finally:
        if bar:
            bar.close()
        env.close()
        result.wall_s = time.perf_counter() - started
        checkpoint = {
            "policy": policy_net.state_dict(),
            "target": target_net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "config": config.to_json_dict(),
            "episodes_done": len(result.durations),
            "total_steps": result.total_steps,
        }
        # Also when no episode finished: the CSV then holds its header, so every promised file exists.
        atomic_write_text(out / "durations.csv", "".join(csv_rows))
        atomic_write(out / "checkpoint.pt", lambda tmp: torch.save(checkpoint, tmp))
        atomic_write(out / "durations.png", lambda tmp: plot_durations(result.durations, tmp))
    return result
