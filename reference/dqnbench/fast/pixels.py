"""Pixel values as the seed's float screens hold them: `u / 255` exactly as ToTensor computes it, on any device."""

from __future__ import annotations

from functools import cache

import torch
from torch import Tensor


@cache
def _divisor(device: torch.device) -> Tensor:
    return torch.full((), 255.0, device=device)


def scale_to_unit_(values: Tensor) -> Tensor:
    """Divide float pixel values (whole numbers 0..255) by 255 in place, as ToTensor does on the CPU; returns them.

    CUDA divides by a Python number as a multiplication by its reciprocal, which is one bit off the true
    quotient for 126 of the 256 values (and so off the reference's screens); a divisor held on the device gets a
    true division there.
    """
    return values.div_(_divisor(values.device))
