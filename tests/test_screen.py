"""Screen extraction: the seed's crop around the cart, clamped at the edges, resized to 3x40x90."""

import numpy as np
import pytest
import torch

from dqnbench.conformance import golden
from dqnbench.envs import make_env
from dqnbench.screen import cart_pixel, crop_frame, crop_window, extract_screen, get_screen, resize_patch


@pytest.fixture
def env():
    env = make_env()
    env.reset(seed=0)
    yield env
    env.close()


def _render_at(env, cart_x: float) -> np.ndarray:
    """A frame with the cart at `cart_x` and the pole upright."""
    env.unwrapped.state = np.array([cart_x, 0.0, 0.0, 0.0])
    return env.render()


def _cart_columns(patch: np.ndarray) -> tuple[int, int]:
    """First and last column of the cart (the black body; the track is a single black row) in a CHW patch."""
    black_per_column = (patch.sum(axis=0) == 0).sum(axis=0)
    columns = np.flatnonzero(black_per_column >= 10)
    assert columns.size, "no cart in the patch"
    return int(columns[0]), int(columns[-1])


@pytest.mark.parametrize(
    ("cart_column", "width", "expected"),
    [
        (300, 600, (120, 480)),  # centred on the cart
        (180, 600, (0, 360)),  # exactly half a view from the left edge
        (179, 600, (0, 360)),  # clamped left
        (-40, 600, (0, 360)),  # cart partly off screen on the left
        (420, 600, (240, 600)),  # exactly half a view from the right edge
        (421, 600, (240, 600)),  # clamped right
        (640, 600, (240, 600)),  # cart partly off screen on the right
        (600, 1200, (240, 960)),
    ],
)
def test_crop_window_is_60_percent_wide_centred_and_clamped(cart_column, width, expected):
    window = crop_window(cart_column, width)
    assert (window.start, window.stop) == expected, f"crop_window({cart_column}, {width})"


@pytest.mark.parametrize(("cart_x", "expected"), [(0.0, 300), (2.4, 600), (-2.4, 0), (1.0, 425), (-0.5, 237)])
def test_cart_pixel_maps_world_to_screen_columns(cart_x, expected):
    assert cart_pixel(cart_x, 600, 2.4) == expected, f"cart_pixel({cart_x}, 600)"


# Between x = -0.96 and 0.96 the window is not clamped (cart columns 180..420 of 600).
@pytest.mark.parametrize("cart_x", [-0.9, 0.0, 0.5, 0.95])
def test_the_cart_is_centred_in_the_patch(env, cart_x):
    frame = _render_at(env, cart_x)
    patch = crop_frame(frame, cart_pixel(cart_x, frame.shape[1]))
    assert patch.shape == (3, 160, 360), "rows 40%-80% and a 60%-wide window of a 400x600 render"
    first, last = _cart_columns(patch)
    centre = (first + last) / 2
    assert abs(centre - 180) <= 1, f"cart at x={cart_x} spans columns {first}..{last} of the patch, centre 180 expected"


@pytest.mark.parametrize(("cart_x", "columns"), [(-2.3, slice(0, 360)), (2.3, slice(240, 600))], ids=["left", "right"])
def test_the_window_is_clamped_at_both_edges(env, cart_x, columns):
    frame = _render_at(env, cart_x)
    patch = crop_frame(frame, cart_pixel(cart_x, frame.shape[1]))
    np.testing.assert_array_equal(patch, frame[160:320, columns].transpose(2, 0, 1))
    first, last = _cart_columns(patch)
    # Near the edge the cart sits off-centre, towards that edge.
    assert (last < 100) if cart_x < 0 else (first > 260), f"cart at x={cart_x} spans columns {first}..{last}"


# Cart positions where all of the cart is on the screen: at |x| > 2.2 part of it is past the edge.
@pytest.mark.parametrize("cart_x", [-2.1, -0.9, 0.0, 1.7, 2.1])
def test_the_whole_track_view_shows_where_the_cart_is(env, cart_x):
    frame = _render_at(env, cart_x)
    column = cart_pixel(cart_x, frame.shape[1])
    patch = crop_frame(frame, column, view_fraction=1.0)
    np.testing.assert_array_equal(patch, frame[160:320].transpose(2, 0, 1))
    first, last = _cart_columns(patch)
    assert abs((first + last) / 2 - column) <= 1, f"cart at x={cart_x} spans {first}..{last}, centre {column} expected"
    assert get_screen(env, 40, 1.0).shape == (1, 3, 40, 150), "all 600 columns at the seed's scale: 40 x 150"


def test_get_screen_gives_the_seeds_3x40x90_float_patch(env):
    screen = get_screen(env)
    assert tuple(screen.shape) == (1, 3, 40, 90)
    assert screen.dtype == torch.float32
    assert screen.min().item() >= 0.0
    assert screen.max().item() <= 1.0
    # The seed's float -> PIL -> tensor path quantises to multiples of 1/255.
    torch.testing.assert_close(screen * 255, (screen * 255).round(), rtol=0, atol=1e-4)
    assert screen.std().item() > 0, "blank patch"


def test_get_screen_is_extract_screen_of_the_render(env):
    frame = _render_at(env, 0.3)
    torch.testing.assert_close(get_screen(env), extract_screen(frame, 0.3), rtol=0, atol=0)


@pytest.fixture
def env_800x1200():
    env = make_env()
    # The renderer reads its size when it first draws, so set it before the first render.
    env.unwrapped.screen_width, env.unwrapped.screen_height = 1200, 800
    env.reset(seed=0)
    yield env
    env.close()


def test_an_800x1200_render_gives_the_same_shape(env_800x1200):
    assert env_800x1200.render().shape == (800, 1200, 3)
    assert tuple(get_screen(env_800x1200).shape) == (1, 3, 40, 90)


def test_an_800x1200_hidpi_render_gives_the_same_patch_as_400x600(env):
    # The seed's 800x1200 case is the same scene at twice the scale; gymnasium's larger canvas is not (it keeps
    # the cart 100 px above the bottom edge), so a HiDPI render is the 400x600 frame with every pixel doubled.
    frame = _render_at(env, 0.4)
    hidpi = frame.repeat(2, axis=0).repeat(2, axis=1)
    patch = crop_frame(hidpi, cart_pixel(0.4, hidpi.shape[1]))
    assert patch.shape == (3, 320, 720)
    first, last = _cart_columns(patch)
    assert abs((first + last) / 2 - 360) <= 2, f"cart spans columns {first}..{last} of the HiDPI patch, centre 360"
    torch.testing.assert_close(extract_screen(hidpi, 0.4), extract_screen(frame, 0.4), rtol=0, atol=2 / 255)


def test_resize_patch_keeps_the_aspect_ratio_for_other_heights():
    patch = np.zeros((3, 160, 360), dtype=np.uint8)
    assert tuple(resize_patch(patch, 40).shape) == (1, 3, 40, 90)
    assert tuple(resize_patch(patch, 60).shape) == (1, 3, 60, 135)


def test_crop_frame_refuses_a_frame_that_is_not_hwc_rgb():
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) RGB frame, got shape \(3, 400, 600\)"):
        crop_frame(np.zeros((3, 400, 600), dtype=np.uint8), 300)


def test_get_screen_explains_an_env_made_without_rgb_array_rendering():
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render"), pytest.raises(RuntimeError, match="render_mode='rgb_array'"):
        get_screen(env)
    env.close()


def _as_uint8(screen: torch.Tensor) -> torch.Tensor:
    return (screen * 255).round().to(torch.uint8)


def test_golden_patches_are_reproduced_from_their_frames():
    data = golden.load().screens
    cases = [*zip(data["frames"], data["cart_states"], data["patches"], strict=True)]
    cases.append((data["large_frame"], data["large_cart_state"], data["large_patch"]))
    for frame, state, patch in cases:
        got = _as_uint8(extract_screen(frame, float(state[0])))
        torch.testing.assert_close(
            got,
            torch.from_numpy(patch),
            rtol=0,
            atol=0,
            msg=lambda m, frame=frame, state=state: (
                f"extract_screen(<{frame.shape[0]}x{frame.shape[1]} golden frame>, cart_x={state[0]}): {m}"
            ),
        )


def test_golden_frames_are_what_gymnasium_renders_now(env):
    # Separate from the patch check, so a failure tells a renderer change (pygame, gymnasium) from an
    # extraction change.
    data = golden.load().screens
    for frame, state, patch in zip(data["frames"], data["cart_states"], data["patches"], strict=True):
        env.unwrapped.state = state.copy()
        np.testing.assert_array_equal(env.render(), frame, err_msg=f"render of CartPole state {state.tolist()}")
        torch.testing.assert_close(
            _as_uint8(get_screen(env)),
            torch.from_numpy(patch),
            rtol=0,
            atol=0,
            msg=lambda m, state=state: f"get_screen(env) with CartPole state {state.tolist()}: {m}",
        )
