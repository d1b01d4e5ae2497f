"""The fast screen processing is the reference's, bit for bit: Pillow's resize of the uint8 crop, no float trip."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from dqnbench import screen as reference
from dqnbench.envs import make_env
from dqnbench.fast import screen as fast
from dqnbench.fast.pixels import scale_to_unit_
from dqnbench.fast.resize import pil_bicubic_weights, resize_uint8
from support import DEVICES


def test_float_round_trip_of_the_seed_gives_every_uint8_back():
    # The seed divides by 255 and ToPILImage multiplies by 255 and truncates: were that ever u - 1, storing
    # uint8 screens and resizing uint8 directly would not be exact.
    u = np.arange(256, dtype=np.uint8)
    back = ((u.astype(np.float32) / 255) * 255).astype(np.uint8)
    np.testing.assert_array_equal(back, u, err_msg="float32 u / 255 * 255 truncated to uint8 differs from u")


@pytest.mark.parametrize("device", DEVICES)
def test_pixels_scale_to_the_values_to_tensor_gives_on_the_cpu(device):
    pixels = torch.arange(256, dtype=torch.uint8)
    expected = TF.to_tensor(pixels.view(1, 256, 1).numpy()).flatten()
    got = scale_to_unit_(pixels.to(device).to(torch.float32)).cpu()
    wrong = (got != expected).nonzero().flatten().tolist()
    assert not wrong, (
        f"scale_to_unit_ on {device}: {len(wrong)} of 256 values differ from ToTensor's u / 255, first u = "
        f"{wrong[:5]}; likely a division by a Python number, which CUDA computes as a multiplication by its reciprocal"
    )


@pytest.mark.parametrize(("size", "out"), [((160, 360), (40, 90)), ((320, 720), (40, 90)), ((51, 37), (55, 40))])
def test_resize_patch_equals_the_seeds_on_random_images(size, out):
    # Random pixels (not only CartPole's few colours); the last size has its shorter side horizontal.
    rng = np.random.default_rng(sum(size))
    for _ in range(5):
        patch = rng.integers(0, 256, (3, *size), dtype=np.uint8)
        got = fast.as_screen(resize_uint8(patch.transpose(1, 2, 0)).transpose(2, 0, 1))
        assert tuple(got.shape) == (1, 3, *out) and got.is_contiguous(), f"shape {tuple(got.shape)}, expected {out}"
        torch.testing.assert_close(got, reference.resize_patch(patch), rtol=0, atol=0, msg=lambda m: f"{size}: {m}")


def test_resize_uint8_is_pillow_bicubic():
    image = np.random.default_rng(5).integers(0, 256, (37, 51, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(image).resize((55, 40), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(resize_uint8(image, 40), expected, err_msg="resize_uint8(37x51 -> 40 rows) vs PIL")


def test_pillow_weights_sum_to_one_in_fixed_point():
    weights = pil_bicubic_weights(360, 90)
    sums = weights.sum(1)
    assert ((sums - (1 << 22)).abs() <= 8).all(), f"row sums off 2**22 by up to {int((sums - (1 << 22)).abs().max())}"


@pytest.mark.parametrize("view_fraction", [0.6, 1.0], ids=["seed-view", "whole-track"])
def test_extract_screen_is_bit_exact_on_random_cartpole_states(view_fraction):
    env = make_env()
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    try:
        for i in range(1000):
            # Beyond the termination bounds too, so the crop is clamped at both edges.
            state = np.array([rng.uniform(-2.6, 2.6), 0.0, rng.uniform(-0.4, 0.4), 0.0])
            env.unwrapped.state = state
            frame = env.render()
            expected = reference.extract_screen(frame, state[0], view_fraction=view_fraction)
            got = fast.extract_screen(frame, state[0], view_fraction=view_fraction)
            torch.testing.assert_close(
                got, expected, rtol=0, atol=0, msg=lambda m, i=i, s=state: f"extract_screen, state {i} {s}: {m}"
            )
    finally:
        env.close()


def _scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A frame whose columns are all alike (random row colours), with a few random blobs drawn over it."""
    rows = rng.integers(0, 256, (height, 1, 3), dtype=np.uint8)
    frame = np.ascontiguousarray(np.broadcast_to(rows, (height, width, 3)))
    for _ in range(rng.integers(0, 4)):
        top, left = rng.integers(0, height), rng.integers(0, width)
        blob = frame[top : top + rng.integers(1, 60), left : left + rng.integers(1, 80)]
        blob[...] = rng.integers(0, 256, blob.shape, dtype=np.uint8)
    return frame


@pytest.mark.parametrize("shape", [(400, 600), (800, 1200), (400, 610), (400, 601), (300, 500)])
def test_extract_screen_is_bit_exact_on_scenes_with_a_uniform_background(shape):
    # Blobs anywhere (at the crop's and the frame's edges too, or none at all) exercise every branch of the
    # changed-columns path; 610 and 601 columns cannot take it (a non-integer scale, rows that are not whole
    # 64-bit words) and must fall back to Pillow's full resize, still bit for bit.
    rng = np.random.default_rng(shape[1])
    for i in range(150):
        frame = _scene(rng, *shape)
        cart_x = float(rng.uniform(-2.8, 2.8))
        torch.testing.assert_close(
            fast.extract_screen(frame, cart_x),
            reference.extract_screen(frame, cart_x),
            rtol=0,
            atol=0,
            msg=lambda m, i=i, x=cart_x: f"extract_screen, scene {i} of shape {shape}, cart_x {x:.3f}: {m}",
        )


def test_extract_screen_is_bit_exact_on_frames_without_a_background():
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (400, 600, 3), dtype=np.uint8)
    for frame in (noise, np.asfortranarray(noise), noise[:, ::-1]):
        torch.testing.assert_close(
            fast.extract_screen(frame, 0.3), reference.extract_screen(frame, 0.3), rtol=0, atol=0
        )


def test_extract_screen_names_a_frame_it_cannot_use():
    with pytest.raises(ValueError, match=r"extract_screen: expected an \(H, W, 3\) uint8 RGB frame, got float32"):
        fast.extract_screen(np.zeros((400, 600, 3), dtype=np.float32), 0.0)


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
