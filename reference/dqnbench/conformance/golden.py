"""Golden data for the conformance kit, produced by the reference implementation, and its regeneration.

The files under `golden/` ship with the package (together well under 100 kB):

- ``bellman.npz``: one minibatch mixing ordinary, terminated, truncated and terminated-and-truncated
  transitions, with the TD targets of the probe target network (Q(s') = the first `n_actions` entries of
  the flattened next screen) at ``gamma``.
- ``screens.npz``: rendered CartPole frames for fixed cart states (400x600, the cart near both edges and in
  between, plus one 800x1200 render) and the reference's (1, 3, 40, 90) patches of them, stored as uint8
  (the seed's patches are exact multiples of 1/255).
- ``network.npz``: weights of the seed architecture (float16-exact values from a fixed `random.Random`, so
  they do not depend on torch's initialisers) and its Q-values, in eval and train mode, on the golden patches
  and their successive differences.
- ``epsilon.json``: the seed's schedule at fixed step counts, and the rates an acting loop uses across
  episodes of fixed lengths.

Regenerate with ``dqnbench golden --out DIR`` (it refuses to overwrite; add ``--overwrite`` to replace the
shipped files: ``dqnbench golden --out reference/dqnbench/conformance/golden --overwrite``). The test
suite checks that regeneration reproduces the shipped files.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dqnbench.files import atomic_write, refuse_to_overwrite

GOLDEN_DIR = Path(__file__).with_name("golden")
BELLMAN, SCREENS, NETWORK, EPSILON = "bellman.npz", "screens.npz", "network.npz", "epsilon.json"
FILES = (BELLMAN, SCREENS, NETWORK, EPSILON)

N_ACTIONS = 2
BELLMAN_GAMMA = 0.9
# A gamma well below the seed's 0.999 makes "gamma applied to the reward" visible in every row.
BELLMAN_ROWS = (
    "ordinary",
    "terminated",
    "truncated",
    "ordinary",
    "truncated",
    "terminated",
    "terminated+truncated",
    "ordinary",
    "truncated",
    "terminated",
    "ordinary",
)
"""Row kinds of the golden Bellman batch: 11 rows, so B != n_actions and a max over the batch cannot hide."""

HIDPI_SCALE = 2
"""The seed's "sometimes 800x1200" render is the 400x600 scene drawn at twice the scale (a HiDPI display).
Gymnasium's own larger canvas is not that: it keeps the cart 100 px above the bottom edge, below the seed's
40%-80% crop, so the large golden frame is the 400x600 render upscaled by this factor."""
CART_STATES = (
    (-2.3, 0.0, 0.05, 0.0),
    (-1.0, 0.5, -0.1, 0.0),
    (0.0, 0.0, 0.0, 0.0),
    (0.7, -0.3, 0.12, 0.2),
    (2.2, 0.0, -0.05, 0.0),
)
"""The cart near the left edge (clamped crop), left, centre, right, near the right edge (clamped crop)."""
LARGE_CART_STATE = (0.3, 0.0, -0.1, 0.0)

SCREEN_HEIGHT = 40
EPSILON_STEPS = (0, 1, 2, 3, 5, 10, 50, 100, 199, 200, 201, 500, 1000, 2000, 5000)
EPISODE_LENGTHS = (5, 1, 12, 3, 7)


def _quantised(rng: random.Random, low: float, high: float, step: float = 1 / 8) -> float:
    # Multiples of 1/8 are exact in float32, so float32 and float64 implementations agree to the last bit.
    return rng.randint(round(low / step), round(high / step)) * step


def bellman_batch() -> dict[str, np.ndarray]:
    """The golden Bellman batch (screens of shape (3, 2, 2)) and its targets."""
    rng = random.Random(0)
    size = len(BELLMAN_ROWS)
    states = np.array([[_quantised(rng, -1, 1) for _ in range(12)] for _ in range(size)]).reshape(size, 3, 2, 2)
    next_states = np.array([[_quantised(rng, -2, 3) for _ in range(12)] for _ in range(size)])
    for row in next_states:  # distinct Q-values, so the arg max is unambiguous
        while row[0] == row[1]:
            row[1] = _quantised(rng, -2, 3)
    next_states = next_states.reshape(size, 3, 2, 2)
    rewards = np.array([rng.choice((1.0, 0.5, -1.0, 2.0, 1.5)) for _ in range(size)])
    terminated = np.array(["terminated" in kind for kind in BELLMAN_ROWS])
    truncated = np.array(["truncated" in kind for kind in BELLMAN_ROWS])
    q_next = next_states.reshape(size, -1)[:, :N_ACTIONS]
    targets = rewards + BELLMAN_GAMMA * q_next.max(axis=1) * ~terminated
    return {
        "states": states.astype(np.float32),
        "actions": np.array([[rng.randrange(N_ACTIONS)] for _ in range(size)], dtype=np.int64),
        "rewards": rewards.astype(np.float32),
        "next_states": next_states.astype(np.float32),
        "terminated": terminated,
        "truncated": truncated,
        "gamma": np.array(BELLMAN_GAMMA),
        "targets": targets,
        "kinds": np.array(BELLMAN_ROWS),
    }


def render_cartpole(state: tuple[float, ...], scale: int = 1) -> np.ndarray:
    """A (400 * scale, 600 * scale, 3) uint8 render of CartPole in `state`, every pixel repeated `scale` times."""
    from dqnbench.envs import make_env

    env = make_env("CartPole-v1")
    try:
        env.reset(seed=0)
        cartpole: Any = env.unwrapped
        cartpole.state = np.array(state, dtype=np.float64)
        frame = env.render()
    finally:
        env.close()
    return np.asarray(frame).repeat(scale, axis=0).repeat(scale, axis=1)


def screens() -> dict[str, np.ndarray]:
    """Golden frames and the reference's patches of them (uint8, patch * 255)."""
    from dqnbench.screen import extract_screen

    def patch(frame: np.ndarray, cart_x: float) -> np.ndarray:
        return np.rint(extract_screen(frame, cart_x, height=SCREEN_HEIGHT).numpy() * 255).astype(np.uint8)

    frames = np.stack([render_cartpole(state) for state in CART_STATES])
    large = render_cartpole(LARGE_CART_STATE, HIDPI_SCALE)
    return {
        "cart_states": np.array(CART_STATES),
        "frames": frames,
        "patches": np.stack([patch(f, s[0]) for f, s in zip(frames, CART_STATES, strict=True)]),
        "large_cart_state": np.array(LARGE_CART_STATE),
        "large_frame": large,
        "large_patch": patch(large, LARGE_CART_STATE[0]),
    }


def network_inputs(screen_data: dict[str, np.ndarray]) -> torch.Tensor:
    """The golden patches and their successive differences (the seed's state): (2K-1, 3, 40, 90) float32."""
    patches = torch.from_numpy(screen_data["patches"][:, 0].astype(np.float32) / 255)
    return torch.cat([patches, patches[1:] - patches[:-1]])


def _fixed_value(rng: random.Random, name: str, shape: tuple[int, ...]) -> np.ndarray:
    count = math.prod(shape)
    if name.endswith("num_batches_tracked"):
        return np.array(7, dtype=np.int64)
    if name.endswith("running_var") or (name.endswith("weight") and len(shape) == 1):
        low, high = 0.5, 1.5
    elif name.endswith("weight"):
        bound = 1 / math.sqrt(count / shape[0])  # torch's default init range for conv/linear weights
        low, high = -bound, bound
    else:
        low, high = -0.1, 0.1
    # Stored as float16 (half the bytes); every value is exact in float32 too.
    return np.array([rng.uniform(low, high) for _ in range(count)], dtype=np.float16).reshape(shape)


def network_state() -> dict[str, np.ndarray]:
    """Fixed weights for the seed architecture at 40x90 screens, 2 actions, 3 channels."""
    from dqnbench.nets import DQN

    rng = random.Random(1)
    reference = DQN(SCREEN_HEIGHT, 90, N_ACTIONS, 3)
    return {name: _fixed_value(rng, name, tuple(t.shape)) for name, t in reference.state_dict().items()}


def state_dict(values: Iterable[np.ndarray], like: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Golden weights, in order, as a state dict for `like` (float16 values widened to its dtypes)."""
    return {
        name: torch.from_numpy(np.asarray(value)).to(t.dtype)
        for (name, t), value in zip(like.state_dict().items(), values, strict=True)
    }


def network(screen_data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Golden weights (keys `param_NNN`, names in `names`) and Q-values in eval and train mode."""
    from dqnbench.nets import DQN

    state = network_state()
    net = DQN(SCREEN_HEIGHT, 90, N_ACTIONS, 3)
    net.load_state_dict(state_dict(state.values(), net))
    inputs = network_inputs(screen_data)
    with torch.no_grad():
        eval_out = net.eval()(inputs)
        train_out = net.train()(inputs)
    arrays = {f"param_{i:03d}": value for i, value in enumerate(state.values())}
    return arrays | {"names": np.array(list(state)), "eval_q": eval_out.numpy(), "train_q": train_out.numpy()}


def epsilon_values() -> dict[str, Any]:
    from dqnbench.policy import epsilon

    trace_steps = range(sum(EPISODE_LENGTHS))
    return {
        "start": 0.9,
        "end": 0.05,
        "decay": 200.0,
        "steps": list(EPSILON_STEPS),
        "values": [epsilon(step) for step in EPSILON_STEPS],
        "episode_lengths": list(EPISODE_LENGTHS),
        "trace": [epsilon(step) for step in trace_steps],
    }


@dataclass(frozen=True)
class Golden:
    """The golden data set, loaded."""

    bellman: dict[str, np.ndarray]
    screens: dict[str, np.ndarray]
    network: dict[str, np.ndarray]
    epsilon: dict[str, Any]


def generate() -> Golden:
    """Compute the golden data with the reference implementation (about a second)."""
    screen_data = screens()
    return Golden(bellman_batch(), screen_data, network(screen_data), epsilon_values())


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub reads ** as allow_pickle
    return buffer.getvalue()


def _serialisers(data: Golden) -> dict[str, Callable[[], bytes]]:
    return {
        BELLMAN: lambda: _npz_bytes(data.bellman),
        SCREENS: lambda: _npz_bytes(data.screens),
        NETWORK: lambda: _npz_bytes(data.network),
        EPSILON: lambda: (json.dumps(data.epsilon, indent=1) + "\n").encode(),
    }


def write(data: Golden, out: Path, *, overwrite: bool = False) -> list[Path]:
    """Write `data` as the golden files under `out`; existing files are refused unless `overwrite`."""
    targets = [out / name for name in FILES]
    if not overwrite:
        refuse_existing(out)
    for path, serialise in zip(targets, _serialisers(data).values(), strict=True):
        payload = serialise()
        atomic_write(path, lambda tmp, payload=payload: tmp.write_bytes(payload))  # type: ignore[misc]
    return targets


def refuse_existing(out: Path) -> None:
    """Raise FileExistsError when any golden file already exists under `out`."""
    for name in FILES:
        refuse_to_overwrite(out / name, "golden file", "pass another --out, or --overwrite to replace it")


@cache
def load(directory: Path = GOLDEN_DIR) -> Golden:
    """The golden files under `directory` (the shipped ones by default)."""
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"golden data {missing} missing under {directory}; regenerate with `dqnbench golden --out {directory}`"
        )

    def arrays(name: str) -> dict[str, np.ndarray]:
        with np.load(directory / name, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}

    return Golden(arrays(BELLMAN), arrays(SCREENS), arrays(NETWORK), json.loads((directory / EPSILON).read_text()))


def differences(expected: Golden, got: Golden, *, float_tolerance: float = 1e-5) -> list[str]:
    """Where `got` differs from `expected`: exact for integers, strings and renders, `float_tolerance` for floats.

    Floats come from torch and libm, whose last bits may differ between CPUs; everything else must match.
    """
    problems: list[str] = []
    for part in ("bellman", "screens", "network"):
        want: dict[str, np.ndarray] = getattr(expected, part)
        have: dict[str, np.ndarray] = getattr(got, part)
        if want.keys() != have.keys():
            problems.append(f"{part}: keys differ: expected {sorted(want)}, got {sorted(have)}")
            continue
        for key, a in want.items():
            b = have[key]
            if a.shape != b.shape or a.dtype != b.dtype:
                problems.append(f"{part}[{key!r}]: expected {a.dtype}{a.shape}, got {b.dtype}{b.shape}")
            elif np.issubdtype(a.dtype, np.floating):
                if not np.allclose(a, b, rtol=float_tolerance, atol=float_tolerance):
                    worst = np.unravel_index(np.argmax(np.abs(a - b)), a.shape)
                    problems.append(
                        f"{part}[{key!r}] at {tuple(int(i) for i in worst)}: expected {a[worst]!r}, got {b[worst]!r} "
                        f"(tolerance {float_tolerance})"
                    )
            elif not np.array_equal(a, b):
                where = np.argwhere(a != b)
                problems.append(f"{part}[{key!r}]: {len(where)} entries differ, first at {tuple(where[0])}")
    if not np.allclose(
        expected.epsilon["values"] + expected.epsilon["trace"],
        got.epsilon["values"] + got.epsilon["trace"],
        rtol=float_tolerance,
        atol=0,
    ):
        problems.append("epsilon: values or trace differ")
    if {k: v for k, v in expected.epsilon.items() if k not in ("values", "trace")} != {
        k: v for k, v in got.epsilon.items() if k not in ("values", "trace")
    }:
        problems.append("epsilon: steps, constants or episode lengths differ")
    return problems


def _run(args: argparse.Namespace) -> int:
    if not args.overwrite:
        refuse_existing(Path(args.out))  # before the work of generating, not after
    paths = write(generate(), Path(args.out), overwrite=args.overwrite)
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


def register(subparsers: Any) -> None:
    """Add `dqnbench golden` to the CLI."""
    parser = subparsers.add_parser(
        "golden",
        help="regenerate the conformance kit's golden data",
        description="Compute the conformance kit's golden data with the reference implementation and write it "
        f"to --out ({', '.join(FILES)}). The shipped files are in {GOLDEN_DIR}.",
    )
    parser.add_argument("--out", required=True, help="folder to write the golden files to")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace golden files that already exist there (refused otherwise)"
    )
    parser.set_defaults(run=_run)
