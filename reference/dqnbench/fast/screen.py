"""Screens for the fast path: the seed's patch bit for bit from a render, or drawn without rendering.

- `extract_screen` / `get_screen`: the reference's crop and Pillow's bicubic resize of the uint8 crop itself
  instead of the float -> PIL -> tensor round trip (the same pixels: ToPILImage's float -> uint8 truncation of
  `u / 255 * 255` gives `u` back for every uint8 `u`, which `tests/test_fast_screen.py` checks for all 256
  values), computed only for the output columns the cart and pole reach (`BackgroundResize`: the rest is the
  resized background, the same in every frame).
- `raster_screen`: `FrameRaster` (`CartPoleRaster`'s drawing of one state) from the environment's state, no
  render at all (within 1/255 on average of the rendered patch, not bit-exact; see `dqnbench.fast.raster`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from dqnbench.fast.raster import CartPoleRaster, FrameRaster
from dqnbench.fast.resize import BackgroundResize
from dqnbench.screen import VIEW_FRACTION, cart_pixel, crop_rows, crop_window

_RASTERS: dict[tuple[int, float, float, float], FrameRaster] = {}


def as_screen(patch: np.ndarray) -> Tensor:
    """(3, h, w) uint8 -> (1, 3, h, w) float32 as ToTensor converts it: float32(u) / 255, contiguous."""
    screen = np.ascontiguousarray(patch, dtype=np.float32)
    screen /= 255
    return torch.from_numpy(screen[None])  # numpy's new axis costs a fraction of a torch unsqueeze call


_RESIZE = BackgroundResize()


def extract_screen(
    frame: np.ndarray,
    cart_x: float,
    x_threshold: float = 2.4,
    height: int = 40,
    view_fraction: float = VIEW_FRACTION,
) -> Tensor:
    """The seed's get_screen on an already rendered (H, W, 3) uint8 frame, bit for bit."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"extract_screen: expected an (H, W, 3) uint8 RGB frame, got {frame.dtype} {frame.shape}")
    screen_height, screen_width, _ = frame.shape
    columns = crop_window(cart_pixel(cart_x, screen_width, x_threshold), screen_width, view_fraction)
    return as_screen(_RESIZE(frame, crop_rows(screen_height), columns, height))


def get_screen(env: Any, height: int = 40, view_fraction: float = VIEW_FRACTION) -> Tensor:
    """Render `env` (a CartPole with render_mode='rgb_array') and extract the seed's patch, bit for bit."""
    frame = env.render()
    if frame is None:
        raise RuntimeError(
            f"get_screen: {type(env.unwrapped).__name__}.render() returned None; "
            "create the environment with render_mode='rgb_array'"
        )
    cartpole = env.unwrapped
    return extract_screen(
        np.asarray(frame), float(cartpole.state[0]), float(cartpole.x_threshold), height, view_fraction
    )


def raster(
    height: int = 40, x_threshold: float = 2.4, pole_half_length: float = 0.5, view_fraction: float = VIEW_FRACTION
) -> FrameRaster:
    """A shared one-state-at-a-time drawer for this geometry."""
    key = (height, x_threshold, pole_half_length, view_fraction)
    if key not in _RASTERS:
        _RASTERS[key] = FrameRaster(
            CartPoleRaster(
                height, x_threshold=x_threshold, pole_half_length=pole_half_length, view_fraction=view_fraction
            )
        )
    return _RASTERS[key]


def raster_screen(env: Any, height: int = 40, view_fraction: float = VIEW_FRACTION) -> Tensor:
    """The seed's patch of `env`'s current CartPole state drawn without rendering: (1, 3, height, W) float."""
    cartpole = env.unwrapped
    if getattr(cartpole, "state", None) is None:
        raise RuntimeError("raster_screen: the environment has no state yet; call env.reset() first")
    drawer = raster(height, float(cartpole.x_threshold), float(cartpole.length), view_fraction)
    return drawer.screen(float(cartpole.state[0]), float(cartpole.state[2]))
