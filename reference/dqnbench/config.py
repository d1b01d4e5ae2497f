"""One typed configuration for training; the `dqnbench train` CLI is generated from it.

Every field carries an attribute docstring. `field_docs()` reads them from this file's source, so the
docstring you read here is the `--help` text you see on the command line.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import json
import time
import types
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from dqnbench import registry

Device = Literal["auto", "cpu", "cuda"]
OptimizerName = Literal["rmsprop", "adam"]
StateMode = Literal["difference", "stack"]


@dataclass(frozen=True, kw_only=True)
class DQNConfig:
    """Hyper-parameters and run options. Defaults are the seed notebook's."""

    env_id: str = "CartPole-v1"
    """Gymnasium environment id; it must render `rgb_array` frames and expose CartPole's `state`."""

    episodes: int = 50
    """Number of episodes to train for (the seed used 50)."""

    max_env_steps: int | None = None
    """Stop after this many environment steps in total, whatever the episode count (None: no limit)."""

    seed: int = 0
    """Seeds torch, the replay sampler, exploration and the environment."""

    device: Device = "auto"
    """Where the networks live: auto (CUDA when available), cpu, or cuda (fails when absent)."""

    impl: str = "reference"
    """Which implementation trains: a name registered under the `dqnbench.implementations` entry points: the
    tutorial-faithful `reference`, the optimised `fast` one, or one a package of yours registers."""

    compile: bool = False
    """Compile the fast implementation's networks with torch.compile (impl 'fast' only): 0.82-0.98x the
    reference's time per optimisation step on CPU here (eager fast: 0.85-1.05x), after ~11 s of compilation
    (cold cache) per batch shape; needs a C++ compiler."""

    cuda_graph: bool = False
    """Replay the fast implementation's optimisation step as one CUDA graph (impl 'fast' on CUDA only; not with
    compile): the step of this small network is launch-bound on a GPU, and a graph issues its ~150 kernels
    in one call. Captured at the first batch; the learning rate is fixed from then on."""

    out: Path | None = None
    """Output folder for durations.csv, durations.png, checkpoint.pt and config.json; it must not hold a
    previous run (None: a new folder runs/train-<time>-seed<seed>)."""

    batch_size: int = 128
    """Transitions per optimisation step."""

    gamma: float = 0.999
    """Discount factor of the Bellman target."""

    eps_start: float = 0.9
    """Exploration rate at step 0."""

    eps_end: float = 0.05
    """Exploration rate the schedule decays towards."""

    eps_decay: float = 200.0
    """Time constant, in environment steps, of the exponential epsilon decay."""

    memory_capacity: int = 10000
    """Replay memory size; the oldest transition is evicted first."""

    learning_starts: int = 128
    """Optimise only once the memory holds this many transitions (the seed waited for one batch)."""

    train_every: int = 1
    """Run one optimisation step every this many environment steps."""

    optimizer: OptimizerName = "rmsprop"
    """Optimiser of the policy network."""

    learning_rate: float = 0.01
    """Optimiser learning rate (0.01 is RMSprop's default, which the seed used)."""

    learning_rate_final: float | None = None
    """Anneal the learning rate linearly from learning_rate to this value over max_env_steps, which must be set
    (None: constant learning_rate)."""

    grad_clip: float = 1.0
    """Gradients are clamped element-wise to [-grad_clip, grad_clip] before the step."""

    target_update_episodes: int = 10
    """Copy the policy network into the target network every this many episodes (0: never by episode)."""

    target_update_steps: int = 0
    """Copy the policy network into the target network every this many steps (0: never by step)."""

    double_dqn: bool = False
    """Choose the next action with the policy network and evaluate it with the target (Double DQN)."""

    batch_norm: bool = True
    """Keep the seed network's BatchNorm layers; False replaces them with identities (an ablation: the loss
    reads train-mode batch statistics while targets and actions use the running ones)."""

    bootstrap_truncated: bool = True
    """Bootstrap from the next state on a time-limit truncation; False reproduces the seed's `done`."""

    state: StateMode = "difference"
    """Network input: the seed's `current - previous` screen, or the last `stack_frames` screens."""

    stack_frames: int = 4
    """Screens stacked along the channel axis when `state` is `stack`."""

    screen_height: int = 40
    """Rows of the resized screen patch (the seed's 40); the width follows the crop's aspect."""

    view_fraction: float = 0.6
    """Width of the screen patch as a fraction of the render's, centred on the cart and clamped at the edges
    (the seed's 0.6: the view follows the cart, so its position and speed show only near the edges); 1.0
    shows the whole track."""

    def __post_init__(self) -> None:
        # Values from a JSON file are not typed: without this, optimizer="sgd" would silently train with
        # RMSprop and double_dqn="no" would be true.
        problems = _type_problems(self)
        if problems:
            raise ValueError("invalid DQNConfig: " + "; ".join(problems))
        positive = ("episodes", "batch_size", "memory_capacity", "train_every", "stack_frames", "screen_height")
        for name in positive:
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.view_fraction <= 1.0:
            problems.append(f"view_fraction must lie in (0, 1], got {self.view_fraction}")
        if not 0.0 <= self.gamma <= 1.0:
            problems.append(f"gamma must lie in [0, 1], got {self.gamma}")
        if not 0.0 <= self.eps_end <= self.eps_start <= 1.0:
            problems.append(
                f"need 0 <= eps_end <= eps_start <= 1, got eps_start={self.eps_start}, eps_end={self.eps_end}"
            )
        if self.eps_decay <= 0:
            problems.append(f"eps_decay must be > 0, got {self.eps_decay}")
        if self.grad_clip <= 0:
            problems.append(f"grad_clip must be > 0, got {self.grad_clip}")
        if self.learning_rate <= 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.learning_rate_final is not None:
            if self.learning_rate_final < 0:
                problems.append(
                    f"learning_rate_final must be >= 0 or None, got {self.learning_rate_final}; pass a value in "
                    "[0, learning_rate] to anneal, or None for a constant learning rate"
                )
            if self.max_env_steps is None:
                problems.append(
                    f"learning_rate_final={self.learning_rate_final} needs max_env_steps, the horizon it anneals "
                    "over; set max_env_steps, or learning_rate_final=None for a constant learning rate"
                )
        if self.target_update_episodes < 0 or self.target_update_steps < 0:
            problems.append("target_update_episodes and target_update_steps must be >= 0")
        if self.target_update_episodes == 0 and self.target_update_steps == 0:
            problems.append(
                "target_update_episodes=0 and target_update_steps=0 would never sync the target network; "
                "set one of them"
            )
        if self.learning_starts < self.batch_size:
            problems.append(
                f"learning_starts={self.learning_starts} < batch_size={self.batch_size}: "
                "a batch cannot be sampled from fewer transitions"
            )
        if self.memory_capacity < self.batch_size:
            problems.append(f"memory_capacity={self.memory_capacity} < batch_size={self.batch_size}")
        registered = registry.names()
        if self.impl not in registered:
            problems.append(
                f"impl={self.impl!r} is not a registered implementation (registered: {', '.join(registered)}); "
                "install the package that registers it, or pick one of those"
            )
        if self.compile and self.impl != "fast":
            problems.append(f"compile=True needs impl='fast' (got impl={self.impl!r}); the reference stays eager")
        if self.cuda_graph and self.learning_rate_final is not None:
            problems.append(
                "cuda_graph=True captures the learning rate as a constant, so it cannot follow "
                f"learning_rate_final={self.learning_rate_final}; drop one of them"
            )
        if self.cuda_graph and (self.impl != "fast" or self.compile or self.device == "cpu"):
            problems.append(
                f"cuda_graph=True needs impl='fast', compile=False and a CUDA device (got impl={self.impl!r}, "
                f"compile={self.compile}, device={self.device!r}); drop cuda_graph to train without it"
            )
        if self.max_env_steps is not None and self.max_env_steps < 1:
            problems.append(f"max_env_steps must be >= 1 or None, got {self.max_env_steps}")
        if problems:
            raise ValueError("invalid DQNConfig: " + "; ".join(problems))

    @property
    def in_channels(self) -> int:
        return 3 * self.stack_frames if self.state == "stack" else 3

    def to_json_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}

    def resolved_out(self) -> Path:
        if self.out is not None:
            return self.out
        return Path("runs") / f"train-{time.strftime('%Y%m%d-%H%M%S')}-seed{self.seed}"

    def replace(self, **changes: Any) -> DQNConfig:
        return dataclasses.replace(self, **changes)


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if isinstance(value, bool) and hint is not bool:
        return False  # JSON true/false are not numbers here
    if hint is float:
        return isinstance(value, int | float)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(hint))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    return "None" if hint is type(None) else str(hint.__name__)


def _type_problems(config: DQNConfig) -> list[str]:
    hints = typing.get_type_hints(DQNConfig)
    return [
        f"{f.name} must be {_describe(hints[f.name])}, got {getattr(config, f.name)!r}"
        for f in dataclasses.fields(config)
        if not _matches(getattr(config, f.name), hints[f.name])
    ]


SEED_CONFIG = DQNConfig()
"""The seed notebook's agent, hyper-parameter for hyper-parameter (with gymnasium's truncation fixed)."""

TUNED_CONFIG = DQNConfig(
    # Episodes are not the budget: the run stops at 150k environment steps (the target).
    episodes=100_000,
    max_env_steps=150_000,
    # The fast implementation: its uint8 replay holds 100k transitions in ~1.1 GB where the reference's float
    # copies would take ~35 GB, and its parts pass the whole conformance kit.
    impl="fast",
    # A stack of the last 4 screens keeps the pole's position and shows its angular velocity over 3 steps;
    # the seed's single difference loses where the pole is and measures motion over one 1-pixel step.
    state="stack",
    stack_frames=4,
    # No BatchNorm: with it, the loss reads batch statistics while acting and targets read running ones, and
    # the same settings stayed at a 100-episode mean of ~25 for 55k steps (README.md, Learning).
    batch_norm=False,
    # Adam at 1e-4 instead of RMSprop at its default 0.01, which makes the Q-values diverge once rewards
    # start to accumulate (README.md, Learning, compares 2.5e-4, 1e-4 and 5e-5), annealed linearly to 3e-5 at
    # 150k steps: at a constant 1e-4, runs learned and then fell back while their TD loss grew.
    optimizer="adam",
    learning_rate=1e-4,
    learning_rate_final=3e-5,
    # A horizon of ~100 steps: with 0.999, Q reaches 500+ and every target error is scaled by that.
    gamma=0.99,
    # Explore for ~30k steps (eps ~= 0.07 at 30k) instead of 200 steps (the seed is greedy after one episode).
    eps_start=1.0,
    eps_end=0.02,
    eps_decay=10_000.0,
    # 100k transitions: failures stay in memory long after episodes start to last; filled by random play first.
    memory_capacity=100_000,
    learning_starts=2_000,
    # One update of 64 every 2 steps: each transition is replayed ~32 times, not ~128 (the seed: 128 every
    # step). Batch 64 reached 195 on seeds 0 and 1, batch 32 on seed 1 only (README.md, Learning).
    batch_size=64,
    train_every=2,
    # A target fixed for 5000 steps (2500 updates), by step count: 10 episodes is ~200 steps early and ~5000
    # once episodes last, 500 steps let the values chase themselves, and 2000 (with a constant learning rate)
    # reached 195 on 2 of 3 seeds where 5000 with the annealed rate reached it on 3 of 3.
    target_update_episodes=0,
    target_update_steps=5_000,
    # The policy picks the next action, the target values it: plain max over noisy Q over-estimates.
    double_dqn=True,
)
"""A configuration meant to learn CartPole from pixels; README.md (Learning) names and justifies each deviation."""

NAMED_CONFIGS: dict[str, DQNConfig] = {"seed": SEED_CONFIG, "tuned": TUNED_CONFIG}


@cache
def field_docs() -> dict[str, str]:
    """Attribute docstrings of `DQNConfig`, keyed by field name."""
    tree = ast.parse(inspect.getsource(DQNConfig))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def load_config(source: str | Path) -> DQNConfig:
    """A named configuration (`seed`, `tuned`) or a JSON file of field values laid over the seed's."""
    if str(source) in NAMED_CONFIGS:
        return NAMED_CONFIGS[str(source)]
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"--config {source!r}: neither a named configuration ({', '.join(NAMED_CONFIGS)}) nor an existing JSON file"
        )
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"--config {path}: not valid JSON ({error})") from error
    if not isinstance(values, dict):
        raise ValueError(f"--config {path}: expected a JSON object of DQNConfig fields, got {type(values).__name__}")
    return config_from_dict(values, origin=str(path))


def config_from_dict(values: dict[str, Any], *, origin: str = "config", base: DQNConfig = SEED_CONFIG) -> DQNConfig:
    known = {f.name for f in dataclasses.fields(DQNConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{origin}: unknown DQNConfig field(s) {unknown}; known fields: {sorted(known)}")
    if values.get("out") is not None:
        values = {**values, "out": Path(values["out"])}
    try:
        return dataclasses.replace(base, **values)
    except ValueError as error:
        raise ValueError(f"{origin}: {error}") from error
