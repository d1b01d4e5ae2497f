"""`dqnbench evaluate RUN`: play a trained run's policy and say how long episodes last and why they end.

A training curve says how long episodes lasted; not why they ended. CartPole ends an episode when the cart
leaves the track (|x| > x_threshold) or the pole falls (|angle| > theta_threshold), or truncates it at the
time limit. Which one dominates tells where to look: a cart that drifts off is a policy that cannot see
where the cart is; a pole that falls is one that cannot balance it.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dqnbench.config import DQNConfig, config_from_dict
from dqnbench.envs import make_env
from dqnbench.parts import screen_for, training_parts
from dqnbench.policy import select_action
from dqnbench.train import StateBuilder, make_policy

ENDINGS = ("pole fell", "cart left the track", "time limit", "terminated")
"""Why an episode ended; `terminated` for an environment that is not CartPole."""


@dataclass(frozen=True)
class Evaluation:
    durations: list[int]
    endings: Counter[str]
    mean_max_q: float = float("nan")
    """Mean of max_a Q(s, a) over the greedy steps played: against the discounted return the policy gets, it
    shows values that have grown or flattened."""
    end_positions: tuple[float, ...] = ()
    """The cart's x when each episode ended (NaN for an environment that is not CartPole): a pole that falls
    near the track's edge (2.4) is a cart that drifted there first."""

    @property
    def mean_duration(self) -> float:
        return sum(self.durations) / len(self.durations)

    def describe(self) -> str:
        parts = [f"{self.endings[ending]} {ending}" for ending in ENDINGS if self.endings[ending]]
        known = [abs(x) for x in self.end_positions if not math.isnan(x)]
        where = f"; the cart ended at median |x| {statistics.median(known):.2f}" if known else ""
        return (
            f"{len(self.durations)} episodes: mean duration {self.mean_duration:.1f} "
            f"(min {min(self.durations)}, max {max(self.durations)}); ended: {', '.join(parts)}{where}; "
            f"mean max-Q {self.mean_max_q:.1f}"
        )


def load_run(run: Path) -> tuple[DQNConfig, dict[str, Any]]:
    """The configuration and checkpoint a `dqnbench train` run wrote to `run`."""
    missing = [name for name in ("config.json", "checkpoint.pt") if not (run / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{run}: no {' and no '.join(missing)}; pass the --out folder of a `dqnbench train` run"
        )
    values = json.loads((run / "config.json").read_text())
    values.pop("out", None)
    config = config_from_dict(values, origin=str(run / "config.json"))
    return config, torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)


def cart_position(env: Any) -> float:
    """The cart's x, or NaN for an environment without a CartPole state."""
    state = getattr(env.unwrapped, "state", None)
    return float("nan") if state is None or not hasattr(env.unwrapped, "x_threshold") else float(state[0])


def ending(env: Any, terminated: bool) -> str:
    if not terminated:
        return "time limit"
    x = cart_position(env)
    if math.isnan(x):
        return "terminated"
    return "cart left the track" if abs(x) > env.unwrapped.x_threshold else "pole fell"


def evaluate(run: Path, *, episodes: int = 20, eps: float = 0.0, seed: int = 10_000) -> Evaluation:
    """Play `episodes` episodes with the run's policy network (epsilon-greedy at `eps`) on the CPU."""
    if episodes < 1 or not 0.0 <= eps <= 1.0:
        raise ValueError(f"evaluate: need episodes >= 1 and 0 <= eps <= 1, got episodes={episodes}, eps={eps}")
    config, checkpoint = load_run(run)
    parts = training_parts(config.impl)
    env = make_env(config.env_id)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    try:
        env.reset(seed=seed)
        get_screen = screen_for(parts.get_screen, config)
        _, _, height, width = get_screen(env).shape
        n_actions = int(env.action_space.n)  # type: ignore[attr-defined]
        policy = make_policy(parts, config, height, width, n_actions)
        policy.load_state_dict(checkpoint["policy"])
        durations, endings, max_q, end_positions = [], Counter[str](), list[torch.Tensor](), []
        for episode in range(episodes):
            env.reset(seed=seed + episode)
            states = StateBuilder(config)
            state = states.reset(get_screen(env))
            duration, terminated, truncated = 0, False, False
            while not (terminated or truncated):
                action = select_action(policy, state, eps, n_actions, rng, max_q)
                _, _, terminated, truncated, _ = env.step(action.item())
                state = states.push(get_screen(env))
                duration += 1
            durations.append(duration)
            endings[ending(env, terminated)] += 1
            end_positions.append(cart_position(env))
    finally:
        env.close()
    mean_max_q = float(torch.cat(max_q).mean()) if max_q else float("nan")
    return Evaluation(durations, endings, mean_max_q, tuple(end_positions))


def _run(args: argparse.Namespace) -> int:
    result = evaluate(args.run_dir, episodes=args.episodes, eps=args.eps, seed=args.seed)
    print(f"{args.run_dir}: {result.describe()}")
    return 0


def register(subparsers: Any) -> None:
    """Add `evaluate` to the `dqnbench` command line."""
    parser = subparsers.add_parser(
        "evaluate",
        help="play a trained run's policy: mean duration and why its episodes end",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN", type=Path, help="the --out folder of a `dqnbench train` run")
    parser.add_argument("--episodes", type=int, default=20, help="episodes to play (default: 20)")
    parser.add_argument("--eps", type=float, default=0.0, help="exploration rate while playing (default: 0, greedy)")
    parser.add_argument("--seed", type=int, default=10_000, help="seeds the env and exploration (default: 10000)")
    parser.set_defaults(run=_run)
