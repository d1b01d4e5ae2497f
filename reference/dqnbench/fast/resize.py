"""Pillow's bicubic resize of uint8 images, bit for bit, in a few torch matrix products.

The reference resizes with PIL (`T.Resize(..., BICUBIC)` on a PIL image). torch's own antialiased bicubic
resize of uint8 input is *not* bit-exact with it: it quantises the weights to ~17 bits where Pillow uses 22,
and it differs by one grey level near the borders (6 frames in 2000 random CartPole states). So this module
re-implements Pillow's `Resample.c` 8-bit path: weights from `precompute_coeffs` quantised as
`normalize_coeffs_8bpc` does, a horizontal pass, a clip to uint8, then a vertical pass and a second clip.

Exact integer sums in float32: each 22-bit weight is split into a high and a low 11-bit part, so every partial
sum of a pass stays below 2**24 and float32 matmuls add integers without rounding (see `_Pass.__call__` for
how the halves are joined and rounded without leaving float32).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor

from dqnbench.fast.threads import single_threaded

PRECISION_BITS = 22  # Pillow's 32 - 8 - 2 for 8 bits per channel
_SPLIT = 2**11
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


class _Pass:
    """One Pillow pass along the rows of a matrix: a single batched matmul over groups of outputs.

    Outputs come in `groups` groups of `group`; group g reads `window` inputs starting at g * step of a
    zero-padded row, so the windows are one strided view of the padded rows and one `bmm` does the whole pass
    while skipping the (mostly zero) weights outside each group's band.
    """

    def __init__(self, in_size: int, out_size: int, group: int = 9) -> None:
        weights = pil_bicubic_weights(in_size, out_size)
        self.in_size, self.out_size, self.group = in_size, out_size, group
        self.groups = math.ceil(out_size / group)
        self.step = max(int(group * in_size / out_size), 1)
        used = weights != 0
        bands = [used[g * group : (g + 1) * group].any(0).nonzero() for g in range(self.groups)]
        self.pad_left = max(0, *(g * self.step - int(band.min()) for g, band in enumerate(bands)))
        self.window = max(int(band.max()) + 1 - (g * self.step - self.pad_left) for g, band in enumerate(bands))
        self.padded = max(in_size + self.pad_left, (self.groups - 1) * self.step + self.window)
        # (groups, 2 * group, window): per group, the high halves of its weights, then the low halves.
        banded = torch.zeros(self.groups, 2 * group, self.window, dtype=torch.int64)
        for g in range(self.groups):
            start = g * self.step - self.pad_left
            inside = slice(max(start, 0), min(start + self.window, in_size))
            block = weights[g * group : (g + 1) * group, inside]
            high = torch.div(block, _SPLIT, rounding_mode="floor")
            columns = slice(inside.start - start, inside.stop - start)
            banded[g, : block.shape[0], columns] = high
            banded[g, group : group + block.shape[0], columns] = block - high * _SPLIT
        self.weights = banded.to(torch.float32)

    def to(self, device: torch.device | str) -> _Pass:
        moved = copy.copy(self)
        moved.weights = self.weights.to(device)
        return moved

    def padded_buffer(self, rows: int, device: torch.device | str = "cpu") -> Tensor:
        """A zero (rows, padded) float32 buffer; write the input at [:, pad_left : pad_left + in_size]."""
        return torch.zeros(rows, self.padded, device=device)

    def inputs(self, buffer: Tensor) -> Tensor:
        return buffer[:, self.pad_left : self.pad_left + self.in_size]

    def __call__(self, buffer: Tensor) -> Tensor:
        """Padded (N, padded) rows -> (groups, group, N) float32 integers in [0, 255].

        Output j is at [j // group, j % group].
        Exact without float64: with s = high * 2**11 + low, Pillow's floor((s + 2**21) / 2**22) equals
        floor((high + floor((low + 2**21) / 2**11)) / 2**11), and every step of that is an exact float32
        operation on integers below 2**24 (divisions are by powers of two).
        """
        n = buffer.shape[0]
        windows = buffer.as_strided((self.groups, self.window, n), (self.step, 1, self.padded))
        sums = torch.bmm(self.weights, windows).view(self.groups, 2, self.group, n)
        high, low = sums[:, 0], sums[:, 1]
        low.add_(1 << (PRECISION_BITS - 1)).mul_(1 / _SPLIT).floor_()
        return high.add_(low).mul_(1 / _SPLIT).floor_().clamp_(0, 255)


class PilBicubicResize:
    """Resize (C, in_height, in_width) uint8 images to (out_height, out_width) exactly as Pillow does.

    Holds work buffers sized for `channels`, so one instance is not meant to be shared between threads.
    """

    def __init__(self, in_height: int, in_width: int, out_height: int, out_width: int, *, channels: int = 3) -> None:
        self.in_height, self.in_width, self.out_height, self.out_width = in_height, in_width, out_height, out_width
        self.channels = channels
        self._horizontal = _Pass(in_width, out_width)
        self._vertical = _Pass(in_height, out_height)
        self._allocate("cpu")

    def _allocate(self, device: torch.device | str) -> None:
        # The padding of these buffers stays zero; each call overwrites only their inputs.
        self._rows = self._horizontal.padded_buffer(self.channels * self.in_height, device)
        self._cols = self._vertical.padded_buffer(
            self.channels * self._horizontal.groups * self._horizontal.group, device
        )

    @classmethod
    def to_height(cls, in_height: int, in_width: int, out_height: int, *, channels: int = 3) -> PilBicubicResize:
        """torchvision's `Resize(out_height)`: the shorter side becomes `out_height`, the aspect is kept."""
        if in_height <= in_width:
            size = (out_height, int(out_height * in_width / in_height))
        else:
            size = (int(out_height * in_height / in_width), out_height)
        return cls(in_height, in_width, *size, channels=channels)

    def to(self, device: torch.device | str) -> PilBicubicResize:
        moved = copy.copy(self)
        moved._horizontal = self._horizontal.to(device)
        moved._vertical = self._vertical.to(device)
        moved._allocate(device)
        return moved

    @property
    def shape(self) -> tuple[int, int]:
        return self.out_height, self.out_width

    def __call__(self, image: Tensor) -> Tensor:
        """(C, in_height, in_width) uint8 image -> (C, out_height, out_width) float32 integers in [0, 255]."""
        expected = (self.channels, self.in_height, self.in_width)
        if tuple(image.shape) != expected:
            raise ValueError(
                f"PilBicubicResize{expected} -> {self.shape}: got an image of shape {tuple(image.shape)}; "
                "build one for that size with PilBicubicResize.to_height(height, width, out_height, channels=...)"
            )
        with single_threaded(self._rows.device):
            return self._resize(image)

    def _resize(self, image: Tensor) -> Tensor:
        c, h, w = image.shape
        horizontal, vertical = self._horizontal, self._vertical
        horizontal.inputs(self._rows).view(c, h, w).copy_(image)
        rows = horizontal(self._rows)  # Pillow's horizontal pass comes first
        width = horizontal.groups * horizontal.group  # out_width, padded to whole groups
        vertical.inputs(self._cols).view(c, horizontal.groups, horizontal.group, h).copy_(
            rows.view(horizontal.groups, horizontal.group, c, h).permute(2, 0, 1, 3)
        )
        cols = vertical(self._cols).view(vertical.groups, vertical.group, c, width)
        return cols.permute(2, 0, 1, 3).flatten(1, 2)[:, : self.out_height, : self.out_width]
