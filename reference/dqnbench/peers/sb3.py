"""Stable-Baselines3's DQN as a conformance peer: SB3's own pieces behind the adapter protocol.

    pip install 'dqnbench[sb3]'
    python -m pytest --pyargs dqnbench.conformance --dqn-impl=dqnbench.peers.sb3:SB3

What runs is SB3's code, not a re-implementation of it: the Q-network is SB3's `QNetwork` built by its
`CnnPolicy`, the optimize step is `DQN.train` itself, action selection is `DQN.predict` /
`BasePolicy.predict`, the target is built as `DQNPolicy._build` builds it and synced with `polyak_update`
as `DQN._on_step` does, transitions go through SB3's `ReplayBuffer` (with its time-limit handling), and
the exploration trace comes from a real `DQN.learn` run. Only the four lines of TD target in `DQN.train`
(which SB3 does not expose as a function) are repeated here, verbatim, for `bellman_targets`.

Two choices make the comparison about SB3's machinery rather than about architecture:

* `SB3` plugs the seed's conv+BatchNorm stack into SB3 through its documented extension point
  (``features_extractor_class``) with ``net_arch=[]``, so the network has the seed's layers and shapes.
  `SB3_NATURE_CNN` is the same adapter with SB3's stock `NatureCNN` extractor instead.
* The protocol passes `grad_clip` to the optimize step; SB3 clips the gradient *norm*, so it is passed as
  ``max_grad_norm``.

SB3 has no screen extraction for pixel CartPole and no conv-size formula (NatureCNN measures its output
with a forward pass), so those pieces are not supplied and their checks are reported as skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn

from dqnbench import nets
from dqnbench.conformance.adapter import DeclaredDifference, DQNAdapter, TransitionBatch
from dqnbench.replay import Transition

try:
    import stable_baselines3
    from stable_baselines3 import DQN
    from stable_baselines3.common.buffers import ReplayBuffer
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, NatureCNN
    from stable_baselines3.common.type_aliases import ReplayBufferSamples
    from stable_baselines3.common.utils import LinearSchedule, get_parameters_by_name, polyak_update
    from stable_baselines3.dqn.policies import CnnPolicy, QNetwork
except ModuleNotFoundError as error:
    raise ModuleNotFoundError(
        f"dqnbench.peers.sb3 needs Stable-Baselines3, which could not be imported ({error}); "
        "install it with: pip install 'dqnbench[sb3]'",
        name=error.name,
    ) from error

EPS_START, EPS_END = 0.9, 0.05
"""The seed's exploration constants, given to SB3's `LinearSchedule`."""
EXPLORATION_TOTAL_TIMESTEPS = 4000
"""SB3's schedule is a function of training progress; a 4000-step run with SB3's default
``exploration_fraction=0.1`` ramps epsilon down over 400 steps, the length whose linear ramp takes as many
extra random actions as the seed's exponential decay of 200 steps (both areas are 200 x (start - end))."""
EXPLORATION_FRACTION = 0.1
TAU = 1.0
"""SB3's default ``tau``: a hard target update."""


class SeedCNN(BaseFeaturesExtractor):
    """The seed's three conv+BatchNorm+ReLU blocks as an SB3 features extractor (flattened output)."""

    def __init__(self, observation_space: spaces.Box) -> None:
        channels, height, width = observation_space.shape
        super().__init__(observation_space, features_dim=nets.head_input_size(height, width))
        self.cnn = nets.DQN(height, width, 1, channels).features

    def forward(self, observations: Tensor) -> Tensor:
        return torch.flatten(self.cnn(observations), start_dim=1)


def _screen_space(in_channels: int, height: int, width: int) -> spaces.Box:
    # Float screens already in [0, 1]: SB3 must neither divide by 255 nor transpose them.
    return spaces.Box(0.0, 1.0, shape=(in_channels, height, width), dtype=np.float32)


def _cnn_policy(
    observation_space: spaces.Space[Any], action_space: spaces.Discrete, extractor: type[BaseFeaturesExtractor]
) -> CnnPolicy:
    return CnnPolicy(
        observation_space,
        action_space,
        lr_schedule=lambda _: 1e-4,  # SB3's default; the kit brings its own optimizer
        net_arch=[],  # one linear layer after the extractor, as in the seed (policies.py:134-138)
        features_extractor_class=extractor,
        features_extractor_kwargs={"normalized_image": True} if extractor is NatureCNN else None,
        normalize_images=False,
    )


def _make_network(
    height: int, width: int, n_actions: int, in_channels: int, *, extractor: type[BaseFeaturesExtractor]
) -> nn.Module:
    return _cnn_policy(_screen_space(in_channels, height, width), spaces.Discrete(n_actions), extractor).q_net


def _as_qnetwork(net: nn.Module, piece: str) -> QNetwork:
    if not isinstance(net, QNetwork):
        raise TypeError(
            f"dqnbench.peers.sb3.{piece}: got a {type(net).__name__}, expected an SB3 QNetwork; "
            "build the network with this adapter's make_network"
        )
    return net


def _make_target(policy_net: nn.Module) -> nn.Module:
    q_net = _as_qnetwork(policy_net, "make_target")
    extractor = type(q_net.features_extractor)
    fresh = _cnn_policy(q_net.observation_space, q_net.action_space, extractor)
    # DQNPolicy._build (policies.py:164-166): a new QNetwork loaded with the policy's state, in eval mode.
    target = fresh.make_q_net()
    target.load_state_dict(q_net.state_dict())
    target.set_training_mode(False)
    return target


def _sync_target(policy_net: nn.Module, target_net: nn.Module) -> None:
    # DQN._on_step (dqn.py:182-185) with its BatchNorm statistics list from DQN._setup_model (dqn.py:152-154).
    polyak_update(policy_net.parameters(), target_net.parameters(), TAU)
    policy_stats, target_stats = (get_parameters_by_name(net, ["running_"]) for net in (policy_net, target_net))
    polyak_update(policy_stats, target_stats, 1.0)


def _replay_samples(batch: TransitionBatch, handle_timeout_termination: bool = True) -> ReplayBufferSamples:
    """`batch` stored in, and read back from, an SB3 `ReplayBuffer` in its order, as `DQN.train` receives it.

    Each step is added as SB3's `DummyVecEnv` reports it: ``done = terminated or truncated`` and
    ``info["TimeLimit.truncated"] = truncated and not terminated`` (dummy_vec_env.py:66); the buffer's
    ``handle_timeout_termination`` (SB3's default) then removes time-outs from `dones` (buffers.py:322).
    """
    size = batch.rewards.shape[0]
    buffer = ReplayBuffer(
        size,
        spaces.Box(-np.inf, np.inf, shape=tuple(batch.states.shape[1:]), dtype=np.float32),
        spaces.Discrete(int(batch.actions.max()) + 1),
        device=batch.states.device,
        handle_timeout_termination=handle_timeout_termination,
    )
    for i in range(size):
        terminated, truncated = bool(batch.terminated[i]), bool(batch.truncated[i])
        buffer.add(
            batch.states[i : i + 1].detach().cpu().numpy(),
            batch.next_states[i : i + 1].detach().cpu().numpy(),
            batch.actions[i].detach().cpu().numpy(),
            batch.rewards[i : i + 1].detach().cpu().numpy(),
            np.array([terminated or truncated]),
            [{"TimeLimit.truncated": truncated and not terminated}],
        )
    # `sample` draws indices at random; reading them in order keeps row i of the batch at row i.
    return buffer._get_samples(np.arange(size))


class SB3Memory:
    """SB3's `ReplayBuffer` behind the seed's ``push(state, action, next_state, reward)`` / ``sample`` layout.

    The buffer is created at the first push, when the shapes are known; ``next_state=None`` is stored as
    SB3 stores a terminal step: ``done=True`` and a placeholder next observation (never bootstrapped).
    """

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity = capacity
        self._buffer: ReplayBuffer | None = None
        self._shapes: tuple[torch.Size, torch.Size, torch.Size] | None = None
        # SB3 samples from the global NumPy RNG (buffers.py:114); DQN(seed=...) seeds it through set_random_seed.
        np.random.seed(seed)

    def push(self, state: Tensor, action: Tensor, next_state: Tensor | None, reward: Tensor) -> None:
        if self._buffer is None:
            self._shapes = (state.shape, action.shape, reward.shape)
            self._buffer = ReplayBuffer(
                self.capacity,
                spaces.Box(-np.inf, np.inf, shape=tuple(state.shape), dtype=np.float32),
                spaces.Discrete(2),  # only its dtype (int64) and size (one number per action) matter to the buffer
                device=state.device,
            )
        final = next_state is None
        self._buffer.add(
            state.detach().cpu().numpy()[None],
            (torch.zeros_like(state) if next_state is None else next_state).detach().cpu().numpy()[None],
            action.detach().cpu().numpy(),
            reward.detach().cpu().numpy(),
            np.array([final]),
            [{}],
        )

    def sample(self, batch_size: int) -> list[Transition]:
        if self._buffer is None or self._shapes is None:
            raise ValueError(f"SB3Memory.sample(batch_size={batch_size}): the memory holds 0 transitions")
        data = self._buffer.sample(batch_size)
        state_shape, action_shape, reward_shape = self._shapes
        return [
            Transition(
                data.observations[i].reshape(state_shape),
                data.actions[i].reshape(action_shape),
                None if bool(data.dones[i]) else data.next_observations[i].reshape(state_shape),
                data.rewards[i].reshape(reward_shape),
            )
            for i in range(batch_size)
        ]

    def __len__(self) -> int:
        return 0 if self._buffer is None else self._buffer.size()


def _bellman_targets(
    target_net: nn.Module, batch: TransitionBatch, gamma: float, *, handle_timeout_termination: bool = True
) -> Tensor:
    replay_data = _replay_samples(batch, handle_timeout_termination)
    discounts = gamma
    with torch.no_grad():  # DQN.train, dqn.py:203-211, verbatim
        next_q_values = target_net(replay_data.next_observations)
        next_q_values, _ = next_q_values.max(dim=1)
        next_q_values = next_q_values.reshape(-1, 1)
        target_q_values = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q_values
    return target_q_values.squeeze(1)


class _Logger:
    """Keeps what `DQN.train` logs; the loss is read back from it."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def record(self, key: str, value: Any, exclude: Any = None) -> None:
        self.values[key] = value


class _FixedSampler:
    def __init__(self, samples: ReplayBufferSamples) -> None:
        self.samples = samples

    def sample(self, batch_size: int, env: Any = None) -> ReplayBufferSamples:
        return self.samples


class _PolicyView:
    """What `DQN.train` reads from `self.policy`: the kit's network and optimizer in a DQNPolicy's place."""

    def __init__(self, q_net: nn.Module, q_net_target: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.q_net, self.q_net_target, self.optimizer = q_net, q_net_target, optimizer

    def set_training_mode(self, mode: bool) -> None:
        self.q_net.train(mode)  # DQNPolicy.set_training_mode switches the online network only (policies.py:210)

    def parameters(self) -> Iterator[nn.Parameter]:
        return itertools.chain(self.q_net.parameters(), self.q_net_target.parameters())


class _TrainView:
    """Exactly the attributes `DQN.train` uses, so the unmodified method runs on the kit's objects.

    If a new SB3 release reads another attribute, `DQN.train` raises AttributeError naming it.
    """

    def __init__(
        self,
        policy_net: nn.Module,
        target_net: nn.Module,
        optimizer: torch.optim.Optimizer,
        samples: ReplayBufferSamples,
        gamma: float,
        max_grad_norm: float,
    ) -> None:
        self.policy = _PolicyView(policy_net, target_net, optimizer)
        self.q_net, self.q_net_target = policy_net, target_net
        self.replay_buffer = _FixedSampler(samples)
        self._vec_normalize_env = None
        self.gamma, self.max_grad_norm = gamma, max_grad_norm
        self._n_updates = 0
        self.logger = _Logger()

    def _update_learning_rate(self, optimizers: Any) -> None:
        """No-op: the kit's optimizer keeps its own learning rate (SB3 would apply its lr schedule)."""


def _optimize_step(
    policy_net: nn.Module,
    target_net: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: TransitionBatch,
    gamma: float,
    grad_clip: float,
) -> Tensor:
    view = _TrainView(policy_net, target_net, optimizer, _replay_samples(batch), gamma, max_grad_norm=grad_clip)
    DQN.train(cast(DQN, view), gradient_steps=1, batch_size=batch.rewards.shape[0])
    return torch.tensor(float(view.logger.values["train/loss"]), device=batch.rewards.device)


def _greedy_action(net: nn.Module, state: Tensor) -> Tensor:
    actions, _ = _as_qnetwork(net, "greedy_action").predict(state.detach().cpu().numpy(), deterministic=True)
    return torch.as_tensor(actions, device=state.device, dtype=torch.long).reshape(-1, 1)


class _PredictView:
    """The attributes `DQN.predict` reads: the exploration rate, the policy and the action space."""

    def __init__(self, q_net: QNetwork, exploration_rate: float, n_actions: int) -> None:
        self.policy, self.exploration_rate, self.action_space = q_net, exploration_rate, spaces.Discrete(n_actions)


def _select_action(net: nn.Module, state: Tensor, eps: float, n_actions: int, rng: Any) -> Tensor:
    # `rng` cannot be honoured: DQN.predict draws the coin from the global NumPy RNG and the random action
    # from the action space's own generator (dqn.py:253-261).
    view = _PredictView(_as_qnetwork(net, "select_action"), eps, n_actions)
    actions, _ = DQN.predict(cast(DQN, view), state.detach().cpu().numpy(), deterministic=False)
    return torch.as_tensor(actions, device=state.device, dtype=torch.long).reshape(1, 1)


def _epsilon(steps_done: int) -> float:
    schedule = LinearSchedule(EPS_START, EPS_END, EXPLORATION_FRACTION)
    # BaseAlgorithm._update_current_progress_remaining (base_class.py:285).
    return float(schedule(1.0 - steps_done / EXPLORATION_TOTAL_TIMESTEPS))


class _EpisodesEnv(gym.Env[np.ndarray, np.int64]):
    """Episodes of the given lengths, each ending in termination; the observation is a constant."""

    def __init__(self, episode_lengths: Sequence[int]) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self._lengths = list(episode_lengths)
        self._episode = self._step = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._step = 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._step += 1
        terminated = self._step >= self._lengths[self._episode % len(self._lengths)]
        self._episode += terminated
        return np.zeros(1, dtype=np.float32), 0.0, terminated, False, {}


class _RecordingDQN(DQN):
    """SB3's DQN, noting the exploration rate in force at every action it chooses."""

    rates: list[float]

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        self.rates.append(self.exploration_rate)
        return super().predict(*args, **kwargs)


class _StopAfter(BaseCallback):
    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def _on_step(self) -> bool:
        return self.num_timesteps < self.steps


def _epsilon_trace(episode_lengths: Sequence[int]) -> list[float]:
    total = sum(episode_lengths)
    if min(episode_lengths, default=0) < 1 or total > EXPLORATION_TOTAL_TIMESTEPS:
        raise ValueError(
            f"dqnbench.peers.sb3 epsilon_trace(episode_lengths={list(episode_lengths)}): every length must be "
            f">= 1 and their sum <= {EXPLORATION_TOTAL_TIMESTEPS} (the run the schedule is defined over)"
        )
    model = _RecordingDQN(
        "MlpPolicy",
        _EpisodesEnv(episode_lengths),
        # learning_starts=0 so every action goes through predict (during SB3's warm-up, default 100 steps,
        # actions are uniform whatever the rate); no gradient steps: only the acting loop matters here.
        learning_starts=0,
        gradient_steps=0,
        buffer_size=total + 1,
        exploration_initial_eps=EPS_START,
        exploration_final_eps=EPS_END,
        exploration_fraction=EXPLORATION_FRACTION,
        policy_kwargs={"net_arch": [4]},
        seed=0,
        device="cpu",
    )
    model.rates = []
    model.learn(EXPLORATION_TOTAL_TIMESTEPS, callback=_StopAfter(total))
    return model.rates


SB3 = DQNAdapter(
    name=f"stable-baselines3 {stable_baselines3.__version__}",
    make_network=partial(_make_network, extractor=SeedCNN),
    bellman_targets=_bellman_targets,
    make_memory=SB3Memory,
    epsilon=_epsilon,
    epsilon_trace=_epsilon_trace,
    greedy_action=_greedy_action,
    select_action=_select_action,
    optimize_step=_optimize_step,
    make_target=_make_target,
    sync_target=_sync_target,
    declared_differences=(
        DeclaredDifference(
            ("check_optimize_gradients_clamped",),
            "clips the gradient norm (max_grad_norm, clip_grad_norm_), not each element",
        ),
        DeclaredDifference(
            ("check_epsilon_schedule", "check_epsilon_trace"),
            "a linear exploration schedule over a fraction of training, not the seed's exponential decay",
        ),
        DeclaredDifference(("check_replay_distinct_samples",), "samples indices with replacement (np.random.randint)"),
    ),
)
"""SB3's DQN pieces, with the seed's conv stack as the Q-network's features extractor."""

ADAPTER = SB3
"""`--dqn-impl=dqnbench.peers.sb3` selects `SB3`."""

SB3_NATURE_CNN = replace(SB3, name=f"{SB3.name} NatureCNN", make_network=partial(_make_network, extractor=NatureCNN))
"""The same, with SB3's stock `CnnPolicy` extractor (NatureCNN): needs screens of at least 36 x 36."""

SB3_WITHOUT_TIMEOUT_HANDLING = replace(
    SB3,
    name=f"{SB3.name} handle_timeout_termination=False",
    bellman_targets=partial(_bellman_targets, handle_timeout_termination=False),
)
"""SB3 with ``replay_buffer_kwargs={"handle_timeout_termination": False}``: time-outs become terminal."""
