"""A render-free CartPole screen: the seed's 40 x 90 patch drawn straight from the state.

`CartPoleRaster` draws many states at once with torch on any device (the vectorised GPU path); `FrameRaster`
draws one state at a time in numpy from the same tables (the training loop's one screen per step on CPU).

`gymnasium`'s CartPole.render() draws with pygame on a 600 x 400 surface; the seed then crops rows 40%-80% and
a 60%-wide window around the cart and resizes it with PIL. `CartPoleRaster` skips the pixels in between: every
full-resolution row of the patch is a few coloured spans (cart, pole, axle), so its horizontal resize is a
difference of cumulative resize weights at the span ends, and the vertical resize is one matmul. What it
reproduces of gymnasium's drawing (cartpole.py, render()):

- the surface is flipped vertically, so surface row y is screen row 399 - y; the black track line is row
  `CART_Y` and is drawn last;
- `gfxdraw.filled_polygon` truncates vertices to integers and fills whole rows between the edges, so a
  polygon covers columns [x_left, x_right + 1) of every integer row it spans;
- the cart is a 50 x 30 black box centred on the cart, the pole a 10-pixel-wide bar rotated by -theta about
  the axle, and the axle a filled circle of radius 5 at the truncated axle position.

Not reproduced: pygame's anti-aliased outlines (they move edges by under one pixel, which the 4x
downsampling averages away) and overlaps the seed's states never produce (a pole tilted so far that it
leaves the cart's rows sideways, beyond ~60 degrees). `tests/test_fast_raster.py` measures the difference
against the real renderer.
"""

from __future__ import annotations

import bisect
import math

import numpy as np
import torch
from torch import Tensor

from dqnbench.fast.pixels import scale_to_unit_
from dqnbench.fast.resize import PRECISION_BITS, pil_bicubic_weights, resize_uint8, resized_size
from dqnbench.fast.threads import single_threaded
from dqnbench.screen import ROW_START, ROW_STOP, VIEW_FRACTION

SCREEN_WIDTH, SCREEN_HEIGHT = 600, 400  # gymnasium CartPole's surface
CART_Y = 100  # surface row of the cart's middle and of the track line
CART_HALF_WIDTH, CART_HALF_HEIGHT = 25.0, 15.0
POLE_WIDTH = 10.0
AXLE_OFFSET = CART_HALF_HEIGHT / 2.0
AXLE_RADIUS = 5
WHITE, BLACK = (255.0, 255.0, 255.0), (0.0, 0.0, 0.0)
POLE_COLOR = (202.0, 152.0, 101.0)
AXLE_COLOR = (129.0, 132.0, 203.0)


class CartPoleRaster:
    """Draws the seed's screen patch for a batch of CartPole states, on any device.

    `screens(states)` takes (N, 4) states [x, x_dot, theta, theta_dot] and returns (N, 3, height, width)
    float32 screens, multiples of 1/255 as the seed's are.
    """

    def __init__(
        self,
        height: int = 40,
        *,
        x_threshold: float = 2.4,
        pole_half_length: float = 0.5,
        view_fraction: float = VIEW_FRACTION,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.x_threshold = x_threshold
        self.scale = SCREEN_WIDTH / (2 * x_threshold)
        self.pole_length = self.scale * 2 * pole_half_length
        self.row_start = int(SCREEN_HEIGHT * ROW_START)
        rows = int(SCREEN_HEIGHT * ROW_STOP) - self.row_start
        self.view_width = int(SCREEN_WIDTH * view_fraction)
        self.shape = resized_size(rows, self.view_width, height)
        # Surface row drawn on each patch row (the surface is flipped before the crop).
        self.surface_rows = (SCREEN_HEIGHT - 1 - self.row_start - torch.arange(rows)).double().to(self.device)
        one = float(1 << PRECISION_BITS)
        vertical = pil_bicubic_weights(rows, self.shape[0]).double() / one  # (height, rows)
        horizontal = pil_bicubic_weights(self.view_width, self.shape[1]).double() / one
        # cumulative[k] = total weight of patch columns < k, so a span [a, b) resizes to cumulative[b] - cumulative[a].
        self.cumulative = torch.cat([torch.zeros(1, self.shape[1]), horizontal.T.cumsum(0)]).float().to(self.device)
        self.background = self._background().to(self.device)
        y = self.surface_rows.cpu()
        # The track line is drawn last and is already in the background: nothing else shows on its row.
        visible = y != CART_Y
        cart_rows = (y >= CART_Y - CART_HALF_HEIGHT) & (y <= CART_Y + CART_HALF_HEIGHT) & visible
        self.pole_rows = visible.nonzero().squeeze(1).to(self.device)
        self.axle_rows = ((y - math.trunc(CART_Y + AXLE_OFFSET)).abs() <= AXLE_RADIUS).nonzero().squeeze(1)
        axle_dy = y[self.axle_rows] - math.trunc(CART_Y + AXLE_OFFSET)
        # pygame's filled_circle: a run of half-width floor(sqrt(r^2 - dy^2)) on each row of the axle.
        self.axle_half_runs = torch.sqrt(AXLE_RADIUS**2 - axle_dy**2).floor().to(self.device)
        # Vertical resize of each object's rows: the cart's (all rows alike, so one profile), the pole's over
        # the cart and over the background, and the axle's.
        pole_weights = vertical[:, visible]
        self.cart_profile = vertical[:, cart_rows].sum(1).float().to(self.device)
        self.pole_vertical = (
            torch.cat([pole_weights * cart_rows[visible], pole_weights * ~cart_rows[visible]]).float().to(self.device)
        )
        self.axle_vertical = vertical[:, self.axle_rows].float().to(self.device)
        # Where the axle's rows sit among the pole's (both skip the track line's row).
        self.axle_in_pole = torch.searchsorted(self.pole_rows.cpu(), self.axle_rows).to(self.device)
        self.axle_rows = self.axle_rows.to(self.device)
        # Colour changes (object colour minus what lies beneath it) of cart, pole over cart, pole over the
        # background, axle over the pole and axle over the cart, in the order `_screens` stacks them.
        pairs = [
            (BLACK, WHITE),
            (POLE_COLOR, BLACK),
            (POLE_COLOR, WHITE),
            (AXLE_COLOR, POLE_COLOR),
            (AXLE_COLOR, BLACK),
        ]
        deltas = [[top - below for top, below in zip(*pair, strict=True)] for pair in pairs]
        self.deltas = torch.tensor(deltas, device=self.device).T.contiguous()  # (3, 5)
        # The pole's corners about the axle, across and along the pole. Made once: a tensor built from a list on
        # each call is a host-to-device copy, which a CUDA graph cannot hold.
        half = POLE_WIDTH / 2
        self.pole_corners = torch.tensor(
            [[-half, -half, half, half], [-half, self.pole_length - half, self.pole_length - half, -half]],
            dtype=torch.float64,
            device=self.device,
        )

    def _background(self) -> Tensor:
        """The resized patch of an empty scene: white with the black track line, exactly as PIL resizes it."""
        patch = np.full((*self.surface_rows.shape, self.view_width, 3), 255, dtype=np.uint8)
        patch[self.surface_rows.cpu().numpy() == CART_Y] = 0
        return torch.from_numpy(resize_uint8(patch, self.shape[0])).permute(2, 0, 1).float().contiguous()

    def window_start(self, cart_x: Tensor) -> Tensor:
        """First screen column of the seed's crop around each cart (`dqnbench.screen.crop_window`), as float."""
        column = torch.trunc(cart_x * self.scale + SCREEN_WIDTH / 2.0)
        half = self.view_width // 2
        start = (column - half).clamp(0, SCREEN_WIDTH - self.view_width)
        # The seed's clamp tests `column > width - half`, so a cart exactly there keeps the centred window.
        return torch.where(column == SCREEN_WIDTH - half, column - half, start)

    def _pole_spans(self, cart_x: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        """Surface-column ends [a, b) of the pole's run on each of `pole_rows`, (N, rows) each.

        The pole's corners are rotated by -theta about the axle (pygame's Vector2.rotate_rad(-theta)) and
        truncated to integers as gfxdraw does; each row runs between its leftmost and rightmost edge crossing.
        """
        across, along = self.pole_corners
        cos, sin = torch.cos(theta), torch.sin(theta)  # rotating by -theta
        x = torch.trunc(across * cos + along * sin + cart_x).unsqueeze(-1)  # (N, 4, 1)
        y = torch.trunc(along * cos - across * sin + CART_Y + AXLE_OFFSET).unsqueeze(-1)
        x2, y2 = x.roll(-1, dims=1), y.roll(-1, dims=1)
        rows = self.surface_rows[self.pole_rows]
        flat = y == y2
        crosses = (rows >= torch.minimum(y, y2)) & (rows <= torch.maximum(y, y2)) & ~flat
        at = x + (rows - y) / torch.where(flat, torch.ones_like(y), y2 - y) * (x2 - x)  # (N, 4, rows)
        left = torch.where(crosses, at, math.inf).amin(dim=1)
        right = torch.where(crosses, at, -math.inf).amax(dim=1) + 1
        return left, torch.maximum(right, left)

    def _resized(self, positions: Tensor) -> Tensor:
        """Cumulative horizontal resize weight up to each (fractional) patch column: (..., width)."""
        clamped = positions.clamp(0, self.view_width).float()
        index = clamped.floor().long().clamp_(max=self.view_width - 1)
        below = self.cumulative[index]
        return below.lerp_(self.cumulative[index + 1], (clamped - index).unsqueeze(-1))

    def screens(self, states: Tensor) -> Tensor:
        """(N, 4) CartPole states -> (N, 3, height, width) float32 screens in [0, 1], multiples of 1/255."""
        if states.ndim != 2 or states.shape[1] != 4:
            raise ValueError(
                f"CartPoleRaster.screens: expected (N, 4) states [x, x_dot, theta, theta_dot], "
                f"got shape {tuple(states.shape)}"
            )
        with single_threaded(self.device):
            return self._screens(states.to(self.device, torch.float64))

    def _screens(self, states: Tensor) -> Tensor:
        cart_x = states[:, 0:1] * self.scale + SCREEN_WIDTH / 2.0  # (N, 1) surface column of the cart's middle
        start = self.window_start(states[:, 0:1])
        pole_left, pole_right = self._pole_spans(cart_x, states[:, 2:3])
        # The axle is drawn over the pole where they overlap and over the (black) cart beside the pole.
        axle_x = torch.trunc(cart_x)
        axle_left, axle_right = axle_x - self.axle_half_runs, axle_x + self.axle_half_runs + 1
        below_left, below_right = pole_left[:, self.axle_in_pole], pole_right[:, self.axle_in_pole]
        on_pole_left = torch.maximum(axle_left, below_left)
        on_pole_right = torch.maximum(torch.minimum(axle_right, below_right), on_pole_left)
        beside_left = torch.maximum(torch.minimum(axle_right, below_left), axle_left)
        beside_right = torch.minimum(torch.maximum(axle_left, below_right), axle_right)
        ends = torch.cat(
            [
                torch.trunc(cart_x - CART_HALF_WIDTH),
                pole_left,
                on_pole_left,
                axle_left,
                beside_right,
                torch.trunc(cart_x + CART_HALF_WIDTH) + 1,
                pole_right,
                on_pole_right,
                beside_left,
                axle_right,
            ],
            dim=1,
        )
        left, right = self._resized(ends - start).chunk(2, dim=1)
        runs = right - left  # (N, 1 + pole rows + 3 x axle rows, width): each row's horizontally resized run
        n, pole_rows, axle_rows = states.shape[0], self.pole_rows.shape[0], self.axle_rows.shape[0]
        on_pole, beside_a, beside_b = runs[:, 1 + pole_rows :].split(axle_rows, dim=1)
        beside = beside_a + beside_b
        objects = torch.cat(
            [
                self.cart_profile[:, None] * runs[:, :1],
                self.pole_vertical @ runs[:, 1 : 1 + pole_rows],
                (self.axle_vertical @ torch.stack([on_pole, beside], dim=1)).flatten(1, 2),
            ],
            dim=1,
        ).view(n, 5, -1)
        screens = torch.baddbmm(self.background.view(1, 3, -1), self.deltas.expand(n, 3, 5), objects)
        return scale_to_unit_(screens.round_().clamp_(0, 255)).view(n, 3, *self.shape)


class FrameRaster:
    """`CartPoleRaster`'s drawing for one state at a time, in ~40 numpy operations on its precomputed tables.

    The batched torch drawing costs ~270 tensor calls per screen whatever the batch size, which dominates a
    single screen on CPU (0.9 ms at ~3 us a call); the training loop draws one screen per step. Here the
    four vertical resizes and the colour mixing are folded into one (3 * height, runs) matrix built once, so a
    screen is the pole's row spans, one cumulative-weight lookup for all run ends and one matmul. Same geometry,
    float32 sums in another order: equal to `CartPoleRaster.screens` up to a rounding flip of one grey level.
    """

    def __init__(self, raster: CartPoleRaster) -> None:
        if raster.device.type != "cpu":
            raise ValueError(f"FrameRaster: needs a CPU CartPoleRaster, got one on {raster.device}")
        self.raster = raster
        self.shape = raster.shape
        height = self.shape[0]
        self.rows = raster.surface_rows[raster.pole_rows].numpy()
        self.axle_in_pole = raster.axle_in_pole.numpy()
        self.axle_half_runs = raster.axle_half_runs.numpy()
        cumulative = raster.cumulative.numpy()
        # Per patch column k: the cumulative weight and its step to k + 1.
        self.cumulative = np.stack([cumulative, np.diff(cumulative, axis=0, append=cumulative[-1:])])
        # Output column j reads patch columns [first[j], last[j]]: runs outside them resize to exactly zero there.
        reads = np.diff(cumulative, axis=0) != 0
        self.first = [int(column.argmax()) for column in reads.T]
        self.last = [len(column) - 1 - int(column[::-1].argmax()) for column in reads.T]
        pole, axle = raster.pole_vertical.numpy(), raster.axle_vertical.numpy()
        n_pole, n_axle = pole.shape[1], axle.shape[1]
        # Runs, in `screen`'s order: cart, pole rows, axle over the pole, axle left and right of the pole.
        # Each object layer's vertical resize of its runs, then mixed into the three channels by colour change.
        layers = np.zeros((5, height, 1 + n_pole + 3 * n_axle), dtype=np.float32)
        layers[0, :, 0] = raster.cart_profile.numpy()
        layers[1, :, 1 : 1 + n_pole] = pole[:height]
        layers[2, :, 1 : 1 + n_pole] = pole[height:]
        layers[3, :, 1 + n_pole : 1 + n_pole + n_axle] = axle
        layers[4, :, 1 + n_pole + n_axle :] = np.concatenate([axle, axle], axis=1)
        self.mix = torch.from_numpy(np.einsum("ck,khe->che", raster.deltas.numpy(), layers).reshape(3 * height, -1))
        self.background = raster.background.reshape(3 * height, -1).numpy()
        self.empty = self.background / 255  # the scene without cart and pole
        tip = raster.pole_length - POLE_WIDTH / 2
        # The pole's corners (across, along) before rotation, axle at the origin.
        self.corners = [
            (-POLE_WIDTH / 2, -POLE_WIDTH / 2),
            (-POLE_WIDTH / 2, tip),
            (POLE_WIDTH / 2, tip),
            (POLE_WIDTH / 2, -POLE_WIDTH / 2),
        ]

    def screen(self, cart_x: float, theta: float) -> Tensor:
        """(1, 3, height, width) float32 screen in [0, 1] of a CartPole at `cart_x` with its pole at `theta`."""
        raster = self.raster
        view_width = raster.view_width
        centre = cart_x * raster.scale + SCREEN_WIDTH / 2.0
        column = math.trunc(centre)
        half = view_width // 2
        # dqnbench.screen.crop_window: its clamp tests `column > width - half`.
        start = (
            column - half if column == SCREEN_WIDTH - half else min(max(column - half, 0), SCREEN_WIDTH - view_width)
        )
        cos, sin = math.cos(theta), math.sin(theta)
        # The pole's corners rotated by -theta about the axle, truncated as gfxdraw does.
        corners = [
            (math.trunc(a * cos + b * sin + centre), math.trunc(b * cos - a * sin + CART_Y + AXLE_OFFSET))
            for a, b in self.corners
        ]
        cart = [math.trunc(centre - CART_HALF_WIDTH), math.trunc(centre + CART_HALF_WIDTH) + 1]
        # Every run lies within the cart's and the pole's corners' columns (the axle is inside the cart).
        lowest = max(min(cart[0], *(x for x, _ in corners)) - start, 0)
        highest = min(max(cart[1], *(x + 1 for x, _ in corners)) - start, view_width)
        if highest <= lowest:
            return torch.from_numpy(self.empty.copy()).view(1, 3, *self.shape)
        # Only the output columns that read a drawn run change: the band between them is all that is computed.
        band = slice(
            # A run ending inside column last[j] still adds a fraction of it: j is clear only past last[j] + 1.
            bisect.bisect_right(self.last, lowest - 1),
            bisect.bisect_right(self.first, highest),
        )
        pole_left, pole_right = self._pole_spans(corners)
        axle_left = column - self.axle_half_runs
        axle_right = column + self.axle_half_runs + 1
        below_left, below_right = pole_left[self.axle_in_pole], pole_right[self.axle_in_pole]
        on_pole_left = np.maximum(axle_left, below_left)
        on_pole_right = np.maximum(np.minimum(axle_right, below_right), on_pole_left)
        beside_left = np.maximum(np.minimum(axle_right, below_left), axle_left)
        beside_right = np.minimum(np.maximum(axle_left, below_right), axle_right)
        ends = np.concatenate(
            [
                cart[:1], pole_left, on_pole_left, axle_left, beside_right,
                cart[1:], pole_right, on_pole_right, beside_left, axle_right,
            ]
        )  # fmt: skip
        # Cumulative resize weight up to each (fractional) end, then each run's weight as a difference.
        position = np.minimum(np.maximum(ends - start, 0.0), view_width).astype(np.float32)
        index = np.minimum(position.astype(np.intp), view_width - 1)
        below, step = self.cumulative[:, :, band]
        resized = step[index] * np.subtract(position, index, dtype=np.float32)[:, None]
        resized += below[index]
        runs = resized[len(ends) // 2 :] - resized[: len(ends) // 2]
        # torch's matmul, not numpy's: OpenBLAS threads stall on a busy machine, torch's obey single_threaded.
        with single_threaded(raster.device):
            pixels = torch.mm(self.mix, torch.from_numpy(runs)).numpy()
        pixels += self.background[:, band]
        np.minimum(np.maximum(np.round(pixels, out=pixels), 0, out=pixels), 255, out=pixels)
        screen = self.empty.copy()
        np.divide(pixels, 255, out=screen[:, band])
        return torch.from_numpy(screen).view(1, 3, *self.shape)

    def _pole_spans(self, corners: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """`CartPoleRaster._pole_spans` for one state: [left, right) surface columns on each pole row.

        The four corners and edges are a few Python numbers; only the per-row crossings are arrays.
        """
        edges = []  # per edge: x and y where it starts, column change per row, lowest and highest row crossed
        for (x, y), (x2, y2) in zip(corners, corners[1:] + corners[:1], strict=True):
            # A horizontal edge crosses no row (the rows of its ends are crossed by the edges beside it).
            edges.append((x, y, (x2 - x) / (y2 - y), min(y, y2), max(y, y2)) if y != y2 else (0, 0, 0.0, 1.0, 0.0))
        x, y, slope, low, high = np.array(edges).T[:, :, None]
        at = x + (self.rows - y) * slope  # (4, rows)
        crosses = (self.rows >= low) & (self.rows <= high)
        left = np.where(crosses, at, math.inf).min(axis=0)
        right = np.where(crosses, at, -math.inf).max(axis=0) + 1
        return left, np.maximum(right, left)
