"""A render-free CartPole screen: the seed's 40 x 90 patch drawn straight from the state, for many states at once.

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

import math

import torch
from torch import Tensor

from dqnbench.fast.resize import PRECISION_BITS, PilBicubicResize, pil_bicubic_weights
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
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.x_threshold = x_threshold
        self.scale = SCREEN_WIDTH / (2 * x_threshold)
        self.pole_length = self.scale * 2 * pole_half_length
        self.row_start = int(SCREEN_HEIGHT * ROW_START)
        rows = int(SCREEN_HEIGHT * ROW_STOP) - self.row_start
        self.view_width = int(SCREEN_WIDTH * VIEW_FRACTION)
        resize = PilBicubicResize.to_height(rows, self.view_width, height)
        self.shape = resize.shape
        # Surface row drawn on each patch row (the surface is flipped before the crop).
        self.surface_rows = (SCREEN_HEIGHT - 1 - self.row_start - torch.arange(rows)).double().to(self.device)
        one = float(1 << PRECISION_BITS)
        vertical = pil_bicubic_weights(rows, self.shape[0]).double() / one  # (height, rows)
        horizontal = pil_bicubic_weights(self.view_width, self.shape[1]).double() / one
        # cumulative[k] = total weight of patch columns < k, so a span [a, b) resizes to cumulative[b] - cumulative[a].
        self.cumulative = torch.cat([torch.zeros(1, self.shape[1]), horizontal.T.cumsum(0)]).float().to(self.device)
        self.background = self._background(resize).to(self.device)
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

    def _background(self, resize: PilBicubicResize) -> Tensor:
        """The resized patch of an empty scene: white with the black track line, exactly as PIL resizes it."""
        patch = torch.full((3, *self.surface_rows.shape, self.view_width), 255, dtype=torch.uint8)
        patch[:, self.surface_rows.cpu() == CART_Y] = 0
        return resize(patch).float()

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
        half = POLE_WIDTH / 2
        across = torch.tensor([-half, -half, half, half], dtype=torch.float64, device=self.device)
        along = torch.tensor(
            [-half, self.pole_length - half, self.pole_length - half, -half], dtype=torch.float64, device=self.device
        )
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
        return screens.round_().clamp_(0, 255).div_(255).view(n, 3, *self.shape)
