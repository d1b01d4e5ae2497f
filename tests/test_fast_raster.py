"""The render-free screens stay within 1/255 on average of the rendered reference."""

import numpy as np
import pytest
import torch

from dqnbench.envs import make_env
from dqnbench.fast.raster import CartPoleRaster, FrameRaster
from dqnbench.fast.screen import raster, raster_screen
from dqnbench.screen import VIEW_FRACTION, get_screen

STATES = 1000
# Measured over these 1000 states: mean 0.11 grey levels, worst single frame 0.13, worst pixel 39 levels
# (an anti-aliased pole edge pygame blends and the drawing does not). The bounds leave room for nothing more.
MEAN_BOUND = 1 / 255
WORST_PIXEL_BOUND = 48 / 255


def _random_states(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Cart positions past the termination bound (the last screen of an episode) and pole angles to 0.25 rad,
    # beyond CartPole's 0.21 rad termination angle.
    return np.stack(
        [rng.uniform(-2.6, 2.6, n), rng.normal(size=n), rng.uniform(-0.25, 0.25, n), rng.normal(size=n)], axis=1
    )


def _batched(states: np.ndarray, view_fraction: float = VIEW_FRACTION) -> torch.Tensor:
    return CartPoleRaster(view_fraction=view_fraction).screens(torch.from_numpy(states))


def _one_by_one(states: np.ndarray, view_fraction: float = VIEW_FRACTION) -> torch.Tensor:
    drawer = FrameRaster(CartPoleRaster(view_fraction=view_fraction))
    return torch.cat([drawer.screen(float(state[0]), float(state[2])) for state in states])


@pytest.fixture(scope="module", params=[0.6, 1.0], ids=["seed-view", "whole-track"])
def rendered(request) -> tuple[np.ndarray, torch.Tensor, float]:
    """1000 random states, the reference's rendered screens of them, and the view they were cropped to."""
    states = _random_states(STATES, seed=7)
    env = make_env()
    env.reset(seed=0)
    try:
        screens = []
        for state in states:
            env.unwrapped.state = state
            screens.append(get_screen(env, 40, request.param))
    finally:
        env.close()
    return states, torch.cat(screens), request.param


@pytest.mark.parametrize("draw", [_batched, _one_by_one], ids=["CartPoleRaster", "FrameRaster"])
def test_raster_is_within_one_grey_level_on_average_over_1000_states(draw, rendered):
    states, expected, view_fraction = rendered
    got = draw(states, view_fraction)
    assert got.shape == expected.shape, f"raster shape {tuple(got.shape)} != rendered {tuple(expected.shape)}"
    error = (got - expected).abs()
    mean, worst_frame = float(error.mean()), float(error.mean(dim=(1, 2, 3)).max())
    worst = int(error.flatten().argmax())
    where = np.unravel_index(worst, error.shape)
    detail = (
        f"view_fraction {view_fraction}, over {STATES} random states: mean abs difference {mean * 255:.3f}/255 "
        f"(bound {MEAN_BOUND * 255:.0f}/255), "
        f"worst frame mean {worst_frame * 255:.3f}/255, worst pixel {float(error.max()) * 255:.1f}/255 at "
        f"(state, channel, row, column) {tuple(int(i) for i in where)}, state {states[where[0]].tolist()}"
    )
    assert mean <= MEAN_BOUND, detail
    assert float(error.max()) <= WORST_PIXEL_BOUND, detail
    assert torch.equal(got * 255, (got * 255).round()), "raster screens must be multiples of 1/255, as rendered ones"


def test_raster_screen_reads_the_env_state():
    env = make_env()
    env.reset(seed=3)
    try:
        x, _, theta, _ = env.unwrapped.state
        expected = raster().screen(float(x), float(theta))
        torch.testing.assert_close(raster_screen(env), expected, rtol=0, atol=0)
    finally:
        env.close()


def test_one_state_drawing_equals_the_batched_one_up_to_rare_rounding_flips():
    # Same geometry, float32 sums in another order: a pixel may round the other way at .5, nothing more.
    # Measured over these 2000 states: 22 of 21.6 million values differ, each by one grey level.
    states = _random_states(2000, seed=11)
    batched, single = _batched(states), _one_by_one(states)
    error = (single - batched).abs() * 255
    flips = int((error > 0.5).sum())
    assert float(error.max()) <= 1 + 1e-4 and flips <= 100, (
        f"FrameRaster.screen vs CartPoleRaster.screens over 2000 states: {flips} values differ "
        f"(allowed 100), worst {float(error.max()):.2f} grey levels (allowed 1); a geometry change in one drawer "
        "and not the other would show as many more"
    )


@pytest.mark.parametrize("height", [30, 60])
def test_one_state_drawing_equals_the_batched_one_at_other_heights(height):
    # 30 rows also checks the batched drawing itself, whose background was once a non-contiguous view there.
    states = _random_states(200, seed=height)
    batched = CartPoleRaster(height).screens(torch.from_numpy(states))
    drawer = FrameRaster(CartPoleRaster(height))
    single = torch.cat([drawer.screen(float(state[0]), float(state[2])) for state in states])
    torch.testing.assert_close(
        single, batched, rtol=0, atol=1.01 / 255, msg=lambda m: f"FrameRaster vs CartPoleRaster at height {height}: {m}"
    )


def test_one_state_drawing_of_a_cart_outside_the_view_is_the_empty_scene():
    # Far left, the crop is clamped to the left edge and a cart at -40 is out of it entirely.
    drawer = FrameRaster(CartPoleRaster())
    empty = CartPoleRaster().screens(torch.tensor([[-40.0, 0.0, 0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(drawer.screen(-40.0, 0.0), empty, rtol=0, atol=0)


def test_one_state_drawing_needs_a_cpu_raster():
    elsewhere = CartPoleRaster()
    elsewhere.device = torch.device("meta")  # as a CUDA one would say, without needing a GPU
    with pytest.raises(ValueError, match="needs a CPU CartPoleRaster, got one on meta"):
        FrameRaster(elsewhere)


def test_raster_batches_equal_single_states():
    states = torch.from_numpy(_random_states(8, seed=1))
    raster = CartPoleRaster()
    one_by_one = torch.cat([raster.screens(s[None]) for s in states])
    torch.testing.assert_close(raster.screens(states), one_by_one, rtol=0, atol=0)


def test_raster_rejects_states_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"expected \(N, 4\) states .* got shape \(4,\)"):
        CartPoleRaster().screens(torch.zeros(4))
