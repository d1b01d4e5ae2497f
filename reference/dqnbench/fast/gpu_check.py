"""Timings of the fast path on a GPU, for the lead's GPU run (about two minutes; CPU works too, slowly).

    python -m dqnbench.fast.gpu_check                  # CUDA when available
    python -m dqnbench.fast.gpu_check --device cpu --seconds 5 --optimize-steps 5

Prints one line per figure and a final JSON line:
- optimize step, batch 128 (--batch-size): median ms of the reference step, the fast step and (CUDA) the fast
  step as a CUDA graph (device-synchronised);
- vectorised training: env steps/s and optimisation steps/s of `VectorTrainer` with --envs environments
  (on CUDA also with the whole vector step, acting to learning, as one CUDA graph);
- render-free screens: screens/s of `CartPoleRaster` drawing 1024 states at once (--raster-states).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from dqnbench.config import SEED_CONFIG
from dqnbench.fast.graphs import GraphedStep
from dqnbench.fast.learner import FoldedTarget, fast_optimize_step, use_foreach
from dqnbench.fast.parts import make_network
from dqnbench.fast.raster import CartPoleRaster
from dqnbench.fast.vector import VectorTrainer
from dqnbench.learner import Batch, make_target, optimize_step
from dqnbench.nets import DQN


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()  # warm-up: allocations, cuDNN algorithm choice
    times = []
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def random_batch(size: int = 128, final_every: int = 20, seed: int = 0) -> Batch:
    """A seed-layout batch of random (3, 40, 90) screens; every `final_every`-th transition is final."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(size) % final_every != 0
    return Batch(
        states=torch.rand(size, 3, 40, 90, generator=g) - 0.5,
        actions=torch.randint(0, 2, (size, 1), generator=g),
        rewards=torch.ones(size),
        non_final_mask=mask,
        non_final_next_states=torch.rand(int(mask.sum()), 3, 40, 90, generator=g) - 0.5,
    )


def optimize_step_ms(device: torch.device, repeats: int, batch_size: int = 128) -> dict[str, float]:
    torch.manual_seed(0)
    reference, fast = DQN(40, 90, 2).to(device), make_network(40, 90, 2).to(device)
    fast.load_state_dict(reference.state_dict())
    ref_target, folded = make_target(reference), FoldedTarget(make_target(fast))
    ref_opt = torch.optim.RMSprop(reference.parameters(), lr=0.01)
    fast_opt = torch.optim.RMSprop(fast.parameters(), lr=0.01)
    use_foreach(fast_opt)
    batch = random_batch(batch_size).to(device)
    timings = {
        "optimize_ms_reference": _median_ms(
            lambda: optimize_step(reference, ref_target, ref_opt, batch, gamma=0.999), repeats, device
        ),
        "optimize_ms_fast": _median_ms(
            lambda: fast_optimize_step(fast, folded, fast_opt, batch, gamma=0.999), repeats, device
        ),
    }
    if device.type == "cuda":
        graphed = make_network(40, 90, 2).to(device)
        graphed.load_state_dict(reference.state_dict())
        graphed_opt = torch.optim.RMSprop(graphed.parameters(), lr=0.01)
        step = GraphedStep(graphed, FoldedTarget(make_target(graphed)), graphed_opt, gamma=0.999)
        timings["optimize_ms_graphed"] = _median_ms(lambda: step(batch), repeats, device)
    return timings


def training_rate(
    device: torch.device,
    envs: int,
    seconds: float,
    batch_size: int = 128,
    capacity: int = 100_000,
    *,
    cuda_graph: bool = False,
) -> dict[str, float]:
    config = SEED_CONFIG.replace(
        impl="fast", memory_capacity=capacity, batch_size=batch_size, learning_starts=batch_size, cuda_graph=cuda_graph
    )
    trainer = VectorTrainer(config, envs=envs, device=device)
    trainer.run(max(batch_size // envs, 1) + 2)  # fill one batch and warm up
    _sync(device)
    env_steps, optimize_steps, started = trainer.env_steps, trainer.optimize_steps, time.perf_counter()
    while time.perf_counter() - started < seconds:
        trainer.run(10)
    _sync(device)
    elapsed = time.perf_counter() - started
    return {
        "envs": envs,
        "env_steps_per_s": (trainer.env_steps - env_steps) / elapsed,
        "optimize_steps_per_s": (trainer.optimize_steps - optimize_steps) / elapsed,
    }


def raster_rate(device: torch.device, states: int = 1024) -> float:
    raster = CartPoleRaster(device=device)
    batch = (torch.rand(states, 4, dtype=torch.float64, device=device) - 0.5) * torch.tensor(
        [4.8, 1.0, 0.4, 1.0], dtype=torch.float64, device=device
    )
    return states / (_median_ms(lambda: raster.screens(batch), 10, device) / 1e3)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--envs", type=int, default=16, help="environments stepping together")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to time vectorised training")
    parser.add_argument("--optimize-steps", type=int, default=200, help="repeats of the optimize-step timing")
    parser.add_argument("--batch-size", type=int, default=128, help="transitions per optimisation step")
    parser.add_argument("--capacity", type=int, default=100_000, help="replay ring size of the vectorised run")
    parser.add_argument("--raster-states", type=int, default=1024, help="states drawn at once in the screen timing")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch.cuda.is_available() is False; use --device cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result: dict[str, object] = {"device": name, "torch": torch.__version__}
    result |= optimize_step_ms(device, args.optimize_steps, args.batch_size)
    graphed = f", as a CUDA graph {result['optimize_ms_graphed']:.3f} ms" if "optimize_ms_graphed" in result else ""
    print(
        f"optimize step, batch 128: reference {result['optimize_ms_reference']:.3f} ms, "
        f"fast {result['optimize_ms_fast']:.3f} ms{graphed} ({name})",
        flush=True,
    )
    for cuda_graph in (False, True) if device.type == "cuda" else (False,):
        rate = training_rate(device, args.envs, args.seconds, args.batch_size, args.capacity, cuda_graph=cuda_graph)
        suffix = "_graphed" if cuda_graph else ""
        result |= {f"{key}{suffix}": value for key, value in rate.items() if key != "envs"} | {"envs": args.envs}
        print(
            f"vectorised training, {args.envs} envs{' (the whole step as a CUDA graph)' if cuda_graph else ''}: "
            f"{rate['env_steps_per_s']:.0f} env steps/s, {rate['optimize_steps_per_s']:.0f} optimisation steps/s",
            flush=True,
        )
    result["raster_screens_per_s"] = raster_rate(device, args.raster_states)
    print(
        f"render-free screens: {result['raster_screens_per_s']:.0f} screens/s ({args.raster_states} at once)",
        flush=True,
    )
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
