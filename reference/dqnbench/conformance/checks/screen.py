"""Screen checks: golden patches from renders and from a live CartPole."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dqnbench.conformance import golden
from dqnbench.conformance.adapter import DQNAdapter
from dqnbench.conformance.checks.core import (
    SCREEN_ATOL,
    as_tensor,
    fail,
    invoke,
    mismatch,
    register_check,
)


def _screen_cause(got: Tensor, expected: Tensor) -> str | None:
    if tuple(got.shape) != tuple(expected.shape):
        return "crop or resize differ from the seed's: rows 40%-80%, a 60%-wide window on the cart, resize to 40 rows"
    if float(got.max()) > 1.5:
        return "pixel values were not divided by 255"
    if bool(torch.isclose(got.flip(1), expected, atol=SCREEN_ATOL).all()):
        return "colour channels reversed (RGB vs BGR)"
    return None


def _compare_patch(call: str, raw: Any, expected: Tensor) -> None:
    got = as_tensor(call, raw).to(torch.float32)
    problem = mismatch(got, expected, atol=SCREEN_ATOL, rtol=0, what="pixels")
    if problem:
        raise fail(call, problem, _screen_cause(got, expected))


def _golden_patch(uint8: np.ndarray) -> Tensor:
    return torch.from_numpy(uint8.astype(np.float32) / 255)


def _check_frames(adapter: DQNAdapter, frames: Sequence[np.ndarray], states: np.ndarray, patches: np.ndarray) -> None:
    assert adapter.extract_screen is not None
    for frame, state, patch in zip(frames, states, patches, strict=True):
        given = frame.copy()
        call = f"extract_screen(<{frame.shape[0]}x{frame.shape[1]} frame>, cart_x={float(state[0]):g})"
        _compare_patch(call, invoke(call, adapter.extract_screen, given, float(state[0])), _golden_patch(patch))
        if not np.array_equal(given, frame):
            raise fail(call, "the frame passed in was modified", "the extraction writes into the caller's frame")


@register_check("extract_screen")
def check_screen_patches(adapter: DQNAdapter) -> str:
    """extract_screen reproduces the golden patches of 400x600 renders (cart centred and clamped at both edges)."""
    data = golden.load().screens
    _check_frames(adapter, list(data["frames"]), data["cart_states"], data["patches"])
    return f"{len(data['frames'])} golden 400x600 patches within atol=1/255"


@register_check("extract_screen")
def check_screen_large_render(adapter: DQNAdapter) -> str:
    """extract_screen handles an 800x1200 render (the seed notes gym sometimes returns one) like the reference."""
    data = golden.load().screens
    _check_frames(adapter, [data["large_frame"]], data["large_cart_state"][None], data["large_patch"][None])
    return "the 800x1200 golden patch within atol=1/255"


@register_check("get_screen")
def check_get_screen(adapter: DQNAdapter) -> str:
    """get_screen(env) equals the reference's patch of the same live render, for several cart positions."""
    assert adapter.get_screen is not None
    from dqnbench.envs import make_env
    from dqnbench.screen import extract_screen

    env = make_env("CartPole-v1")
    try:
        env.reset(seed=0)
        cartpole: Any = env.unwrapped
        for state in golden.CART_STATES[::2]:
            cartpole.state = np.array(state)
            call = f"get_screen(env) with the cart at x={state[0]:g}"
            raw = invoke(call, adapter.get_screen, env)
            expected = extract_screen(np.asarray(env.render()), state[0], cartpole.x_threshold, golden.SCREEN_HEIGHT)
            _compare_patch(call, raw, expected)
    finally:
        env.close()
    return f"{len(golden.CART_STATES[::2])} live renders match the reference's patch within atol=1/255"
