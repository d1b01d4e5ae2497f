"""Screen extraction faithful to the seed: crop around the cart, bicubic resize to 40 rows.

The pipeline is split so each step can be tested and swapped: `cart_pixel` (where the cart is),
`crop_frame` (rows 40%-80%, a 60%-wide window centred on the cart, clamped at both edges; `view_fraction`
1.0 keeps the whole track, where the cart's position shows) and
`resize_patch` (the seed's float -> PIL -> bicubic -> tensor path, quantisation included).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torchvision.transforms as T
from torch import Tensor

from dqnbench.config import DQNConfig

VIEW_FRACTION = DQNConfig.view_fraction
ROW_START, ROW_STOP = 0.4, 0.8


def cart_pixel(cart_x: float, screen_width: int, x_threshold: float = 2.4) -> int:
    """Column of the cart's centre in a render `screen_width` pixels wide (the seed's get_cart_location)."""
    scale = screen_width / (x_threshold * 2)
    return int(cart_x * scale + screen_width / 2.0)


def crop_window(cart_column: int, screen_width: int, view_fraction: float = VIEW_FRACTION) -> slice:
    """Columns of the `view_fraction`-wide view centred on the cart, clamped so it never leaves the screen."""
    view_width = int(screen_width * view_fraction)
    if cart_column < view_width // 2:
        return slice(0, view_width)
    if cart_column > screen_width - view_width // 2:
        return slice(screen_width - view_width, screen_width)
    return slice(cart_column - view_width // 2, cart_column + view_width // 2)


def crop_rows(screen_height: int) -> slice:
    """Rows 40%-80% of a render `screen_height` pixels tall: the band the cart moves in."""
    return slice(int(screen_height * ROW_START), int(screen_height * ROW_STOP))


def crop_frame(frame: np.ndarray, cart_column: int, view_fraction: float = VIEW_FRACTION) -> np.ndarray:
    """(H, W, 3) uint8 render -> (3, h, w) uint8 patch around the cart (a view, no copy)."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"crop_frame: expected an (H, W, 3) RGB frame, got shape {frame.shape}")
    height, width, _ = frame.shape
    return frame.transpose(2, 0, 1)[:, crop_rows(height), crop_window(cart_column, width, view_fraction)]


def _seed_resize(height: int) -> T.Compose:
    return T.Compose([T.ToPILImage(), T.Resize(height, interpolation=T.InterpolationMode.BICUBIC), T.ToTensor()])


_RESIZERS: dict[int, T.Compose] = {}


def resize_patch(patch: np.ndarray, height: int = 40) -> Tensor:
    """(3, h, w) uint8 patch -> (1, 3, height, w * height / h) float in [0, 1], exactly as the seed did.

    The seed divided by 255, and ToPILImage multiplied back and truncated to uint8 before PIL's bicubic
    resize; the result is therefore always a multiple of 1/255.
    """
    resize = _RESIZERS.setdefault(height, _seed_resize(height))
    scaled = torch.from_numpy(np.ascontiguousarray(patch, dtype=np.float32) / 255)
    return resize(scaled).unsqueeze(0)


def extract_screen(
    frame: np.ndarray,
    cart_x: float,
    x_threshold: float = 2.4,
    height: int = 40,
    view_fraction: float = VIEW_FRACTION,
) -> Tensor:
    """The seed's get_screen on an already rendered frame."""
    return resize_patch(crop_frame(frame, cart_pixel(cart_x, frame.shape[1], x_threshold), view_fraction), height)


def get_screen(env: Any, height: int = 40, view_fraction: float = VIEW_FRACTION) -> Tensor:
    """Render `env` (a CartPole with render_mode='rgb_array') and extract the seed's screen patch."""
    cartpole = env.unwrapped
    frame = env.render()
    if frame is None:
        raise RuntimeError(
            f"get_screen: {type(cartpole).__name__}.render() returned None; "
            "create the environment with render_mode='rgb_array'"
        )
    return extract_screen(frame, float(cartpole.state[0]), float(cartpole.x_threshold), height, view_fraction)
