"""The fast screen processing is the reference's, bit for bit: Pillow's resize re-done in torch."""

import numpy as np
import pytest
import torch
from PIL import Image

from dqnbench import screen as reference
from dqnbench.envs import make_env
from dqnbench.fast import screen as fast
from dqnbench.fast.resize import PilBicubicResize, pil_bicubic_weights


def test_float_round_trip_of_the_seed_gives_every_uint8_back():
    # The seed divides by 255 and ToPILImage multiplies by 255 and truncates: were that ever u - 1, storing
    # uint8 screens and resizing uint8 directly would not be exact.
    u = np.arange(256, dtype=np.uint8)
    back = ((u.astype(np.float32) / 255) * 255).astype(np.uint8)
    np.testing.assert_array_equal(back, u, err_msg="float32 u / 255 * 255 truncated to uint8 differs from u")


@pytest.mark.parametrize(("size", "out"), [((160, 360), (40, 90)), ((320, 720), (40, 90)), ((37, 51), (13, 29))])
def test_resize_equals_pillow_on_random_images(size, out):
    rng = np.random.default_rng(sum(size))
    resize = PilBicubicResize(*size, *out)
    for _ in range(5):
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        expected = np.asarray(Image.fromarray(image).resize(out[::-1], Image.Resampling.BICUBIC))
        got = resize(torch.from_numpy(image).permute(2, 0, 1)).permute(1, 2, 0).to(torch.uint8).numpy()
        np.testing.assert_array_equal(got, expected, err_msg=f"PilBicubicResize{size}->{out} vs PIL")


def test_pillow_weights_sum_to_one_in_fixed_point():
    weights = pil_bicubic_weights(360, 90)
    sums = weights.sum(1)
    assert ((sums - (1 << 22)).abs() <= 8).all(), f"row sums off 2**22 by up to {int((sums - (1 << 22)).abs().max())}"


def test_resize_names_the_expected_shape():
    with pytest.raises(ValueError, match=r"PilBicubicResize\(3, 160, 360\).*got an image of shape \(3, 10, 10\)"):
        PilBicubicResize(160, 360, 40, 90)(torch.zeros(3, 10, 10, dtype=torch.uint8))


def test_extract_screen_is_bit_exact_on_random_cartpole_states():
    env = make_env()
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    try:
        for i in range(200):
            # Beyond the termination bounds too, so the crop is clamped at both edges.
            state = np.array([rng.uniform(-2.6, 2.6), 0.0, rng.uniform(-0.4, 0.4), 0.0])
            env.unwrapped.state = state
            frame = env.render()
            expected = reference.extract_screen(frame, state[0])
            got = fast.extract_screen(frame, state[0])
            torch.testing.assert_close(
                got, expected, rtol=0, atol=0, msg=lambda m, i=i, s=state: f"extract_screen, state {i} {s}: {m}"
            )
    finally:
        env.close()


def test_get_screen_matches_the_reference_on_a_large_render():
    frame = np.full((800, 1200, 3), 255, dtype=np.uint8)
    frame[560:620, 500:700] = [202, 152, 101]
    frame[600, :] = 0
    torch.testing.assert_close(fast.extract_screen(frame, 0.1), reference.extract_screen(frame, 0.1), rtol=0, atol=0)


def test_get_screen_refuses_an_env_without_rgb_frames():
    class NoFrames:
        unwrapped = None

        def render(self):
            return None

    with pytest.raises(RuntimeError, match="render_mode='rgb_array'"):
        fast.get_screen(NoFrames())
