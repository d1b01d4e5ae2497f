"""Environments: a legacy gym-style env through the adapter, and gymnasium envs left as they are."""

import numpy as np
import pytest
from gymnasium import spaces

from dqnbench.envs import LegacyEnvAdapter, as_gymnasium, is_legacy_env, make_env
from dqnbench.screen import get_screen


class FakeLegacyEnv:
    """The old gym API: reset -> obs, step -> (obs, reward, done, info), render(mode=...), seed(...).

    Ends after `limit` steps with the old TimeLimit's `TimeLimit.truncated` flag, or earlier at `fall_at`.
    """

    def __init__(self, limit: int = 3, fall_at: int | None = None) -> None:
        self.action_space = spaces.Discrete(2)
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(4,))
        self.limit, self.fall_at = limit, fall_at
        self.steps, self.seeded_with, self.closed = 0, None, False
        self.state = np.zeros(4)
        self.x_threshold = 2.4

    def seed(self, seed):
        self.seeded_with = seed

    def reset(self):
        self.steps = 0
        return np.full(4, 0.5)

    def step(self, action):
        self.steps += 1
        fell = self.steps == self.fall_at
        timed_out = self.steps >= self.limit and not fell
        info = {"TimeLimit.truncated": True} if timed_out else {}
        return np.full(4, float(self.steps)), 1.0, fell or timed_out, info

    def render(self, mode="human"):
        if mode != "rgb_array":
            raise ValueError(f"FakeLegacyEnv.render: only rgb_array is faked, got mode={mode!r}")
        return np.full((400, 600, 3), 255, dtype=np.uint8)

    def close(self):
        self.closed = True


def _run(env) -> list[tuple[bool, bool]]:
    """(terminated, truncated) of every step until the episode ends."""
    ends = []
    while True:
        _, reward, terminated, truncated, info = env.step(0)
        assert reward == 1.0
        assert isinstance(info, dict)
        ends.append((terminated, truncated))
        if terminated or truncated:
            return ends


def test_a_legacy_env_is_recognised_and_wrapped_but_a_gymnasium_env_is_not():
    legacy = FakeLegacyEnv()
    assert is_legacy_env(legacy)
    assert isinstance(as_gymnasium(legacy), LegacyEnvAdapter)
    env = make_env()
    assert not is_legacy_env(env)
    assert as_gymnasium(env) is env
    env.close()


def test_reset_returns_obs_and_info_and_seeds_the_legacy_env():
    legacy = FakeLegacyEnv()
    obs, info = as_gymnasium(legacy).reset(seed=7)
    np.testing.assert_array_equal(obs, np.full(4, 0.5))
    assert info == {}
    assert legacy.seeded_with == 7


def test_a_time_limit_end_is_a_truncation():
    env = as_gymnasium(FakeLegacyEnv(limit=3))
    env.reset()
    assert _run(env) == [(False, False), (False, False), (False, True)]


def test_any_other_end_is_a_termination():
    env = as_gymnasium(FakeLegacyEnv(limit=5, fall_at=2))
    env.reset()
    assert _run(env) == [(False, False), (True, False)]


def test_render_asks_the_legacy_env_for_rgb_array_and_get_screen_works_through_it():
    legacy = FakeLegacyEnv()
    env = as_gymnasium(legacy)
    env.reset()
    assert env.render().shape == (400, 600, 3)
    assert tuple(get_screen(env).shape) == (1, 3, 40, 90)
    assert env.unwrapped is legacy
    env.close()
    assert legacy.closed


def test_an_env_that_does_not_return_the_legacy_4_tuple_is_explained():
    # A gymnasium-style env (5-tuple) wrapped by mistake must not be silently mis-read.
    env = LegacyEnvAdapter(make_env())
    env.reset(seed=0)
    with pytest.raises(TypeError, match=r"returned 5 values, expected the legacy \(obs, reward, done, info\)"):
        env.step(0)
    env.close()


def test_make_env_names_an_unknown_env_id():
    with pytest.raises(ValueError, match=r"make_env\('NoSuchEnv-v0'\)"):
        make_env("NoSuchEnv-v0")
