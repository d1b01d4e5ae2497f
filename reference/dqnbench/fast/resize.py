"""Pillow's bicubic resize of uint8 images, as the seed's `T.Resize(height, BICUBIC)` does it, and its weights.

`resize_uint8` is Pillow itself on the uint8 image (the seed's float round trip gives the same uint8 back).
`pil_bicubic_weights` are Pillow's fixed-point weights (`Resample.c`: `precompute_coeffs` quantised as
`normalize_coeffs_8bpc` does), which `dqnbench.fast.raster` uses to resize drawn spans without drawing them.
torch's own antialiased bicubic resize of uint8 is *not* bit-exact with Pillow: it quantises the weights to
~17 bits where Pillow uses 22 and differs by one grey level near the borders (6 frames in 2000 random
CartPole states).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

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


def _support(in_size: int, out_size: int) -> tuple[float, float, float]:
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    return scale, filterscale, _BICUBIC_SUPPORT * filterscale


def pil_windows(in_size: int, out_size: int) -> list[tuple[int, int]]:
    """Per output pixel, the input range [start, stop) Pillow's bicubic resize reads (`precompute_coeffs`)."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"pil_windows(in_size={in_size}, out_size={out_size}): sizes must be >= 1")
    scale, _, support = _support(in_size, out_size)
    windows = []
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        windows.append((max(int(center - support + 0.5), 0), min(int(center + support + 0.5), in_size)))
    return windows


def pil_bicubic_weights(in_size: int, out_size: int) -> Tensor:
    """(out_size, in_size) int64 matrix of Pillow's fixed-point bicubic weights (`precompute_coeffs`)."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"pil_bicubic_weights(in_size={in_size}, out_size={out_size}): sizes must be >= 1")
    scale, filterscale, _ = _support(in_size, out_size)
    weights = torch.zeros(out_size, in_size, dtype=torch.int64)
    for xx, (xmin, xmax) in enumerate(pil_windows(in_size, out_size)):
        center = (xx + 0.5) * scale
        k = [_bicubic((x + xmin - center + 0.5) / filterscale) for x in range(xmax - xmin)]
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


def _rounded_pass(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """One of Pillow's 8-bit resampling passes, with its weights divided by 2**22: left @ right + 1/2, clipped to
    0..255, as float64; its floor (or its uint8 cast, which truncates these non-negative values) is Pillow's pixel.

    Exact in float64: every product is a multiple of 2**-22 below 2**9 and a window sums a few dozen of them, far
    within 53 bits, whatever order BLAS adds them in; clipping before the floor gives what Pillow's clip after
    its arithmetic shift gives.
    """
    total = left @ right
    total += 0.5
    # The array's method: np.clip's Python wrapper, or np.maximum then np.minimum, cost more than its arithmetic on
    # these few thousand values (480 x 17 of them, with a copy: 6.6 against 7.6 and 9.9 µs here).
    return total.clip(0, 255, out=total)


@dataclass(frozen=True)
class _Geometry:
    """What resizing a (crop_height, crop_width) crop to (out_height, out_width) needs, computed once."""

    horizontal: np.ndarray
    """(crop_width, out_width) float64: Pillow's fixed-point weights along a row, divided by 2**22, one output
    column per column (a slice of it is the right operand of the row pass as it is: BLAS reads it strided)."""
    vertical: np.ndarray
    """(out_height, crop_height) float64: the same down a column, one output row per row."""
    window_start: np.ndarray
    window_stop: np.ndarray
    """Per output column, the input columns [start, stop) it reads."""
    first_window_after: list[int]
    """Per input column x, the first output column whose window ends after x."""
    windows_through: list[int]
    """Per input column x, how many output columns' windows start at or before x."""
    exact: bool
    """The two passes here reproduce this Pillow's full resize of random pixels (its order and arithmetic)."""

    @classmethod
    def of(cls, crop_height: int, crop_width: int, out_height: int, out_width: int) -> _Geometry:
        windows = np.array(pil_windows(crop_width, out_width))
        columns = np.arange(crop_width)
        geometry = cls(
            horizontal=np.ascontiguousarray(
                pil_bicubic_weights(crop_width, out_width).double().numpy().T / (1 << PRECISION_BITS)
            ),
            vertical=pil_bicubic_weights(crop_height, out_height).double().numpy() / (1 << PRECISION_BITS),
            window_start=windows[:, 0],
            window_stop=windows[:, 1],
            # Looked up per frame as Python lists: a list index costs a tenth of a numpy searchsorted call.
            first_window_after=windows[:, 1].searchsorted(columns, side="right").tolist(),
            windows_through=windows[:, 0].searchsorted(columns, side="right").tolist(),
            exact=False,
        )
        noise = np.random.default_rng(0).integers(0, 256, (crop_height, crop_width, 3), dtype=np.uint8)
        pillow = np.asarray(Image.fromarray(noise).resize((out_width, out_height), Image.Resampling.BICUBIC))
        return dataclasses.replace(
            geometry, exact=np.array_equal(geometry.resize_whole(noise), pillow.transpose(2, 0, 1))
        )

    def resize_whole(self, patch: np.ndarray) -> np.ndarray:
        """The resized (h, w, 3) patch, every output column: (3, H, W) uint8."""
        out = np.empty((3, self.vertical.shape[0], self.horizontal.shape[1]), dtype=np.uint8)
        self.resize(patch, 0, out.shape[2], 0, out)
        return out

    def resize(self, patch: np.ndarray, j0: int, j1: int, x0: int, out: np.ndarray) -> None:
        """Output columns [j0, j1) of the resized (h, w, 3) patch holding input columns x0 on, written into `out`,
        (3, H, j1 - j0) uint8."""
        rows, columns, channels = patch.shape
        # Widened and transposed in one copy to (rows, channels, columns): the row pass's output is then already the
        # column pass's right operand, (rows, channels x outputs), and the column pass is one product, not three.
        pixels = np.empty((rows, channels, columns), dtype=np.float64)
        np.copyto(pixels, patch.transpose(0, 2, 1))
        # Horizontal first, then vertical, each rounded to 8 bits in between, as Pillow's two passes.
        weights = self.horizontal[x0 : x0 + columns, j0:j1]
        along_rows = _rounded_pass(pixels.reshape(rows * channels, columns), weights)
        np.floor(along_rows, out=along_rows)
        resized = _rounded_pass(self.vertical, along_rows.reshape(rows, channels * (j1 - j0)))
        np.copyto(out, resized.reshape(-1, channels, j1 - j0).transpose(1, 0, 2), casting="unsafe")


@dataclass(frozen=True)
class _Background:
    words: np.ndarray
    """(rows, frame_width * 3 // 8) uint64: frame rows filled with the background, as 64-bit words."""
    resized: np.ndarray
    """(3, out_height, out_width) uint8: the resize of a crop of the background alone."""


class BackgroundResize:
    """Pillow's resize of a crop of a frame, computing only the output columns that differ from the background's.

    A CartPole render is the same in every column (white, and the black track line) but for the few dozen
    where the cart and pole stand. An output pixel of Pillow's resize reads one window of input columns
    (`pil_windows`); where that window holds background only, it equals the resized background, which is
    computed once per background. So the changed columns are found with one comparison of the crop's rows,
    as 64-bit words, against the background, and only the outputs whose windows reach them are computed,
    with Pillow's own weights, pass order and rounding in exact float64 arithmetic (checked against the
    installed Pillow once per geometry). The background is guessed from the frame's column farthest from the
    crop; a wrong guess costs time, never exactness. Frames that cannot take this path (a non-integer scale,
    rows that are not whole 64-bit words, a mostly changed crop) get Pillow's full resize.
    """

    FULL_RESIZE_FRACTION = 0.6
    """Above this fraction of changed output columns the full resize is as cheap."""

    KEPT_BACKGROUNDS = 8
    """Backgrounds remembered (each ~0.3 MB for a 600-pixel-wide frame); frames of other scenes evict the oldest."""

    def __init__(self) -> None:
        self._backgrounds: dict[tuple[bytes, int, int, int], _Background] = {}
        self._geometries: dict[tuple[int, int, int, int], _Geometry] = {}

    def __call__(self, frame: np.ndarray, rows: slice, columns: slice, height: int = 40) -> np.ndarray:
        """Pillow's bicubic resize of `frame[rows, columns]` to `height` rows: (3, height, W) uint8."""
        crop = frame[rows, columns]
        crop_height, crop_width = crop.shape[:2]
        out_height, out_width = resized_size(crop_height, crop_width, height)
        frame_width = frame.shape[1]
        if crop_width % out_width or (frame_width * 3) % 8 or not frame.flags.c_contiguous:
            return _pillow(crop, height)
        geometry = self._geometry(crop_height, crop_width, out_height, out_width)
        if not geometry.exact:
            return _pillow(crop, height)
        first, stop, _ = columns.indices(frame_width)
        far = 0 if first + stop > frame_width else frame_width - 1
        background = self._background(frame[rows, far], frame_width, crop_width, geometry)
        # Whole rows compare faster than the crop's strided part of them. Words covering the crop's bytes
        # are kept; one that straddles the crop's edge may mark a column just outside it, which is harmless.
        words = frame[rows].reshape(crop_height, frame_width * 3).view(np.uint64)
        word_start, word_stop = first * 3 // 8, -(-stop * 3 // 8)
        # Methods rather than numpy's module functions, which add a Python wrapper each (~1.5 µs) per frame.
        changed = (words != background.words).any(axis=0)[word_start:word_stop].nonzero()[0]
        resized = background.resized.copy()
        if changed.size == 0:
            return resized
        low = max((word_start + int(changed[0])) * 8 // 3 - first, 0)
        high = min(((word_start + int(changed[-1])) * 8 + 7) // 3 - first, crop_width - 1)
        j0, j1 = geometry.first_window_after[low], geometry.windows_through[high]
        if j1 - j0 > self.FULL_RESIZE_FRACTION * out_width:
            return _pillow(crop, height)
        if j1 > j0:
            x0, x1 = int(geometry.window_start[j0]), int(geometry.window_stop[j1 - 1])
            geometry.resize(crop[:, x0:x1], j0, j1, x0, resized[:, :, j0:j1])
        return resized

    def _geometry(self, crop_height: int, crop_width: int, out_height: int, out_width: int) -> _Geometry:
        key = (crop_height, crop_width, out_height, out_width)
        if key not in self._geometries:
            self._geometries[key] = _Geometry.of(*key)
        return self._geometries[key]

    def _background(self, column: np.ndarray, frame_width: int, crop_width: int, geometry: _Geometry) -> _Background:
        key = (column.tobytes(), frame_width, crop_width, geometry.vertical.shape[0])
        found = self._backgrounds.get(key)
        if found is None:
            rows = np.ascontiguousarray(np.broadcast_to(column[:, None, :], (column.shape[0], frame_width, 3)))
            resized = geometry.resize_whole(rows[:, :crop_width])
            found = _Background(rows.reshape(column.shape[0], -1).view(np.uint64), resized)
            if len(self._backgrounds) >= self.KEPT_BACKGROUNDS:
                del self._backgrounds[next(iter(self._backgrounds))]
            self._backgrounds[key] = found
        return found


def _pillow(crop: np.ndarray, height: int) -> np.ndarray:
    return resize_uint8(crop, height).transpose(2, 0, 1)
