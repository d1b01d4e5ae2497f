"""The render-free screens stay within 1/255 on average of the rendered reference."""

import numpy as np
import pytest
import torch

from dqnbench.envs import make_env
from dqnbench.fast.raster import CartPoleRaster
from dqnbench.fast.screen import raster_screen
from dqnbench.screen import get_screen

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


def test_raster_is_within_one_grey_level_on_average_over_1000_states():
    states = _random_states(STATES, seed=7)
    env = make_env()
    env.reset(seed=0)
    try:
        rendered = []
        for state in states:
            env.unwrapped.state = state
            rendered.append(get_screen(env))
    finally:
        env.close()
    expected = torch.cat(rendered)
    got = CartPoleRaster().screens(torch.from_numpy(states))
    assert got.shape == expected.shape, f"raster shape {tuple(got.shape)} != rendered {tuple(expected.shape)}"
    error = (got - expected).abs()
    mean, worst_frame = float(error.mean()), float(error.mean(dim=(1, 2, 3)).max())
    worst = int(error.flatten().argmax())
    where = np.unravel_index(worst, error.shape)
    detail = (
        f"over {STATES} random states: mean abs difference {mean * 255:.3f}/255 (bound {MEAN_BOUND * 255:.0f}/255), "
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
        expected = CartPoleRaster().screens(torch.as_tensor(env.unwrapped.state, dtype=torch.float64)[None])
        torch.testing.assert_close(raster_screen(env), expected, rtol=0, atol=0)
    finally:
        env.close()


def test_raster_batches_equal_single_states():
    states = torch.from_numpy(_random_states(8, seed=1))
    raster = CartPoleRaster()
    one_by_one = torch.cat([raster.screens(s[None]) for s in states])
    torch.testing.assert_close(raster.screens(states), one_by_one, rtol=0, atol=0)


def test_raster_rejects_states_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"expected \(N, 4\) states .* got shape \(4,\)"):
        CartPoleRaster().screens(torch.zeros(4))
