"""Environments: gymnasium CartPole rendering headless, and an adapter for legacy gym-style envs."""

from __future__ import annotations

import os
from typing import Any

# pygame opens a window unless told otherwise; dqnbench never shows one.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
# SDL installs SIGINT/SIGTERM handlers of its own, so `kill PID` no longer stopped a training run (and
# Ctrl-C only reached Python by luck); Python's own handling keeps results complete on an interrupt.
os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")

import gymnasium as gym


class LegacyEnvAdapter(gym.Env):  # type: ignore[type-arg]
    """Gives a legacy gym-style env (reset -> obs, step -> 4-tuple, render(mode=...)) gymnasium's API.

    The legacy `done` is split with the `TimeLimit.truncated` info key the old TimeLimit wrapper set:
    a time-limit end is a truncation, any other end a termination.
    """

    def __init__(self, env: Any) -> None:
        self.env = env
        self.action_space = env.action_space
        self.observation_space = env.observation_space
        self.render_mode = "rgb_array"

    @property
    def unwrapped(self) -> Any:  # type: ignore[override]
        return getattr(self.env, "unwrapped", self.env)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None:
            if hasattr(self.env, "seed"):
                self.env.seed(seed)
            self.action_space.seed(seed)
        return self.env.reset(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        result = self.env.step(action)
        if len(result) != 4:
            raise TypeError(
                f"LegacyEnvAdapter: {type(self.env).__name__}.step returned {len(result)} values, expected the "
                "legacy (obs, reward, done, info); pass a gymnasium env directly instead"
            )
        obs, reward, done, info = result
        truncated = bool(done and info.get("TimeLimit.truncated", False))
        return obs, float(reward), bool(done) and not truncated, truncated, dict(info)

    def render(self) -> Any:
        try:
            return self.env.render(mode="rgb_array")
        except TypeError:
            return self.env.render()

    def close(self) -> None:
        self.env.close()


def is_legacy_env(env: Any) -> bool:
    """True for envs that do not implement gymnasium's API (they are not `gymnasium.Env` instances)."""
    return not isinstance(env, gym.Env)


def as_gymnasium(env: Any) -> gym.Env:  # type: ignore[type-arg]
    return LegacyEnvAdapter(env) if is_legacy_env(env) else env


def make_env(env_id: str = "CartPole-v1") -> gym.Env:  # type: ignore[type-arg]
    """A gymnasium env rendering `rgb_array` frames, time limit kept (its truncation is reported)."""
    try:
        return gym.make(env_id, render_mode="rgb_array")
    except gym.error.Error as error:
        raise ValueError(f"make_env({env_id!r}): gymnasium could not make it ({error})") from error
