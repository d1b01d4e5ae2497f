"""An implementation against the reference with their calls interleaved in one process: a paired speed ratio.

    python -m dqnbench.bench.interleave [--candidate fast] [--operation optimize] [--pairs 40] [--device cpu]

The benchmark suite times each implementation in its own block of seconds. On a shared host whose speed drifts
from minute to minute, two blocks can differ by 10-20 % with the same code (README, Noise). Here the calls
alternate in the order reference, candidate, candidate, reference, ..., so the two calls of a pair meet the same
host, and the figure is the median of the per-pair time ratios candidate / reference with its 95 % bootstrap
interval. It answers "how fast is X relative to the reference on this machine", not how fast either one is.

`--candidate` is `fast`, `fast-compiled` or a conformance adapter (`package.module:ADAPTER`, as `--dqn-impl`).
For the optimisation step it can also be `convolutions`: the step's convolutions alone, the floor under any
float32 implementation that keeps this machine's convolution kernels (`dqnbench.bench.convolutions`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dqnbench.allocator import pin_glibc_allocator
from dqnbench.bench.compare import format_time
from dqnbench.bench.convolutions import optimize_convolutions_call
from dqnbench.bench.measure import synchronized
from dqnbench.bench.subjects import (
    REFERENCE_SUBJECT,
    BenchSubject,
    fast_compiled_subject,
    fast_subject,
    user_subject,
)
from dqnbench.bench.workload import SCREEN_HEIGHT, SCREEN_WIDTH, TrainStep, network, optimize_call, render_screens
from dqnbench.config import SEED_CONFIG

BUILTIN_CANDIDATES: dict[str, Callable[[], BenchSubject]] = {
    "fast": fast_subject,
    "fast-compiled": fast_compiled_subject,
}
CONVOLUTIONS = "convolutions"
"""The candidate that is not an implementation: the optimisation step's convolutions alone."""
OPERATIONS = ("optimize", "train-step")
SCREEN_POOL = 64
"""Rendered screens the workloads cycle through, as in the benchmark suite."""
TRAIN_STEP_WARM = 1000
"""Transitions in the memory before the first timed training step, as in the benchmark suite."""
WARMUP_PAIRS = 3
BOOTSTRAP_SAMPLES = 2000


@dataclass(frozen=True)
class Paired:
    """Per-pair call times (seconds) and the median of their ratios candidate / reference, with a 95 % interval."""

    reference: tuple[float, ...]
    candidate: tuple[float, ...]
    ratio: float
    low: float
    high: float


def interleave(
    reference: Callable[[], Any],
    candidate: Callable[[], Any],
    pairs: int,
    *,
    warmup: int = WARMUP_PAIRS,
    timer: Callable[[], float] = time.perf_counter,
    seed: int = 0,
) -> Paired:
    """Time `pairs` pairs of calls, alternating which of the two goes first (ABBA), after `warmup` untimed pairs."""
    if pairs < 2:
        raise ValueError(f"interleave(pairs={pairs}): a median ratio and its interval need at least 2 pairs")
    for _ in range(warmup):
        reference()
        candidate()
    times: dict[str, list[float]] = {"reference": [], "candidate": []}
    calls = {"reference": reference, "candidate": candidate}
    for index in range(pairs):
        # Alternating the order cancels what the first call of a pair pays for the second (caches, frequency).
        for name in ("reference", "candidate") if index % 2 == 0 else ("candidate", "reference"):
            started = timer()
            calls[name]()
            times[name].append(timer() - started)
    ratios = np.asarray(times["candidate"]) / np.asarray(times["reference"])
    draws = np.random.default_rng(seed).choice(ratios, size=(BOOTSTRAP_SAMPLES, len(ratios)), replace=True)
    low, high = np.percentile(np.median(draws, axis=1), [2.5, 97.5])
    return Paired(
        tuple(times["reference"]), tuple(times["candidate"]), float(np.median(ratios)), float(low), float(high)
    )


def candidate_subject(name: str) -> BenchSubject:
    if name in BUILTIN_CANDIDATES:
        return BUILTIN_CANDIDATES[name]()
    if ":" in name:
        return user_subject(name)
    raise ValueError(
        f"--candidate {name!r}: expected one of {', '.join([*BUILTIN_CANDIDATES, CONVOLUTIONS])} or a conformance "
        "adapter as package.module:ADAPTER"
    )


def candidate_call(name: str, operation: str) -> Callable[[torch.device], tuple[Callable[[], Any], Any]]:
    """How to build the candidate called `name` (`convolutions` included) for `operation`: checked now, built later."""
    if name != CONVOLUTIONS:
        subject = candidate_subject(name)
        return lambda device: operation_call(subject, operation, device)
    if operation != "optimize":
        raise ValueError(
            f"--candidate {CONVOLUTIONS} --operation {operation}: the convolutions stand for the optimisation step "
            "only; use --operation optimize"
        )

    def build(device: torch.device) -> tuple[Callable[[], Any], Any]:
        states = torch.zeros((SEED_CONFIG.batch_size, 3, SCREEN_HEIGHT, SCREEN_WIDTH), device=device)
        return synchronized(optimize_convolutions_call(network(REFERENCE_SUBJECT, device), states), device), None

    return build


def operation_call(subject: BenchSubject, operation: str, device: torch.device) -> tuple[Callable[[], Any], Any]:
    """The subject's `operation` as a call that has finished when it returns, and what to close afterwards."""
    screens = render_screens(subject, SCREEN_POOL, device)
    if operation == "optimize":
        return synchronized(optimize_call(subject, device, screens), device), None
    step = TrainStep(subject, device, screens=screens, warm=TRAIN_STEP_WARM)
    return synchronized(step, device), step


def format_paired(result: Paired, candidate: str, operation: str, device: torch.device) -> str:
    width = max(len("reference"), len(candidate))
    lines = [
        f"{operation} on {device}, {torch.get_num_threads()} torch thread(s), {len(result.reference)} pairs "
        "(order alternating within pairs):",
        f"  {'reference':{width}}  median {format_time(float(np.median(result.reference)))}",
        f"  {candidate:{width}}  median {format_time(float(np.median(result.candidate)))}",
        f"  {candidate} ÷ reference: {result.ratio:.3f} (95% CI {result.low:.3f}–{result.high:.3f}), the median of "
        "the per-pair time ratios",
    ]
    if candidate == CONVOLUTIONS:
        lines.append(
            "  no float32 implementation that keeps these convolution kernels can take the step below this ratio"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dqnbench.bench.interleave",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--candidate", default="fast", help=f"fast, fast-compiled, {CONVOLUTIONS} or package.module:ADAPTER"
    )
    parser.add_argument("--operation", choices=OPERATIONS, default="optimize")
    parser.add_argument("--pairs", type=int, default=40, help="timed pairs of calls (default 40)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1, as the suite)")
    args = parser.parse_args(argv)
    if args.pairs < 2:
        parser.error(f"--pairs {args.pairs}: a median ratio and its interval need at least 2 pairs")
    if args.threads < 1:
        parser.error(f"--threads {args.threads}: must be >= 1")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"error: --device {args.device}: CUDA is not available (torch {torch.__version__})", file=sys.stderr)
        return 2
    pin_glibc_allocator()  # as the benchmark suite does, so the figures are comparable
    torch.set_num_threads(args.threads)
    try:
        build_candidate = candidate_call(args.candidate, args.operation)
    except (ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    opened = []
    try:
        calls = []
        for build in (lambda device: operation_call(REFERENCE_SUBJECT, args.operation, device), build_candidate):
            call, closer = build(device)
            calls.append(call)
            opened.append(closer)
        result = interleave(calls[0], calls[1], args.pairs)
    finally:
        for closer in opened:
            if closer is not None:
                closer.close()
    print(format_paired(result, args.candidate, args.operation, device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
