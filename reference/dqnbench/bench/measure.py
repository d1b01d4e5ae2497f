"""The timed call every benchmark makes: warm-up, device synchronisation, and the facts it records.

pytest-benchmark times the function it is given; this wraps that function so that on CUDA the timing
ends only when the device is done (`torch.cuda.synchronize` inside the timed function), counts calls so
page faults can be given per call, times the first call apart (it includes lazy initialisation and any
`torch.compile` compilation, which must not blur the steady state), and fills `benchmark.extra_info`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import torch

from dqnbench.bench.facts import ProcessCounters

WARMUP_ROUNDS = 3

# `extra_info` facts that differ from one timing of a benchmark to the next, by how several timings of one
# benchmark combine (`dqnbench.bench.passes` pools them): summed, averaged per call, the highest, the last.
CALLS_MEASURED = "calls_measured"
PER_CALL_FAULTS = ("page_faults_minor_per_call", "page_faults_major_per_call")
PEAKS_MB = ("peak_rss_mb", "cuda_peak_mb")
RSS_MB = "rss_mb"
"""Untimed calls before timing starts (after the first, separately timed, call)."""


class BenchmarkFixture(Protocol):
    """The part of pytest-benchmark's `benchmark` fixture used here."""

    extra_info: dict[str, Any]
    group: str | None

    def __call__(self, function_to_benchmark: Callable[[], Any]) -> Any: ...

    def pedantic(self, target: Callable[[], Any], *, rounds: int, warmup_rounds: int, iterations: int) -> Any: ...


def synchronized(fn: Callable[[], Any], device: torch.device) -> Callable[[], Any]:
    """`fn` that returns only once every CUDA kernel it queued has finished (unchanged on CPU)."""
    if device.type != "cuda":
        return fn

    def run() -> Any:
        result = fn()
        torch.cuda.synchronize(device)
        return result

    return run


def run_benchmark(
    benchmark: BenchmarkFixture,
    fn: Callable[[], Any],
    *,
    device: torch.device,
    quick: bool,
    warmup_rounds: int = WARMUP_ROUNDS,
    extra: dict[str, Any] | None = None,
) -> None:
    """Time `fn` with pytest-benchmark and record what the numbers depend on in `extra_info`.

    `quick` (the CI smoke mode) runs `fn` once after one warm-up call: the benchmark still executes end
    to end, but its timing is not a measurement.
    """
    target = synchronized(fn, device)
    calls = 0

    def counted() -> Any:
        nonlocal calls
        calls += 1
        return target()

    started = time.perf_counter()
    target()
    first_call_s = time.perf_counter() - started
    for _ in range(1 if quick else warmup_rounds):
        target()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = ProcessCounters.now()
    if quick:
        benchmark.pedantic(counted, rounds=1, warmup_rounds=0, iterations=1)
    else:
        benchmark(counted)
    after = ProcessCounters.now()

    # Calibration calls and the final untimed call pytest-benchmark makes are counted too: faults per call.
    per_call = max(calls, 1)
    minor_faults, major_faults = PER_CALL_FAULTS
    peak_rss, cuda_peak = PEAKS_MB
    benchmark.extra_info.update(
        {
            **(extra or {}),
            "device": str(device),
            "first_call_ms": first_call_s * 1e3,
            "warmup_rounds": 1 if quick else warmup_rounds,
            CALLS_MEASURED: calls,
            minor_faults: (after.minor_faults - before.minor_faults) / per_call,
            major_faults: (after.major_faults - before.major_faults) / per_call,
            RSS_MB: after.rss_mb,
            peak_rss: after.peak_rss_mb,
            cuda_peak: torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
            "quick": quick,
        }
    )
