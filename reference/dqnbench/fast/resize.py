"""Pillow's bicubic resize of uint8 images, as the seed's `T.Resize(height, BICUBIC)` does it, and its weights.

`resize_uint8` is Pillow itself on the uint8 image (the seed's float round trip gives the same uint8 back).
`pil_bicubic_weights` are Pillow's fixed-point weights (`Resample.c`: `precompute_coeffs` quantised as
`normalize_coeffs_8bpc` does), which `dqnbench.fast.raster` uses to resize drawn spans without drawing them.
torch's own antialiased bicubic resize of uint8 is *not* bit-exact with Pillow: it quantises the weights to
~17 bits where Pillow uses 22 and differs by one grey level near the borders (6 frames in 2000 random
CartPole states).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

PRECISION_BITS = 22  # Pillow's 32 - 8 - 2 for 8 bits per channel
_BICUBIC_SUPPORT = 2.0


def _bicubic(x: float) -> float:
    # Pillow's bicubic_filter with a = -0.5.
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def pil_bicubic_weights(in_size: int, out_size: int) -> Tensor:
    """(out_size, in_size) int64 matrix of Pillow's fixed-point bicubic weights (`precompute_coeffs`)."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"pil_bicubic_weights(in_size={in_size}, out_size={out_size}): sizes must be >= 1")
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = _BICUBIC_SUPPORT * filterscale
    weights = torch.zeros(out_size, in_size, dtype=torch.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        k = [_bicubic((x + xmin - center + 0.5) / filterscale) for x in range(xmax)]
        total = sum(k)
        for x, w in enumerate(k):
            w = w / total if total != 0.0 else w
            # C's (int) truncates toward zero; the +-0.5 makes it round half away from zero.
            weights[xx, xmin + x] = int(w * (1 << PRECISION_BITS) + (-0.5 if w < 0 else 0.5))
    return weights


def resized_size(height: int, width: int, out_height: int) -> tuple[int, int]:
    """torchvision's `Resize(out_height)` output (height, width): the shorter side becomes `out_height`."""
    if height <= width:
        return out_height, int(out_height * width / height)
    return int(out_height * height / width), out_height


def resize_uint8(image: np.ndarray, height: int = 40) -> np.ndarray:
    """(h, w, 3) uint8 image -> (height, w * height / h, 3) uint8, Pillow's bicubic resize as the seed's Resize."""
    out_height, out_width = resized_size(image.shape[0], image.shape[1], height)
    resized = Image.fromarray(np.ascontiguousarray(image)).resize((out_width, out_height), Image.Resampling.BICUBIC)
    return np.array(resized)
