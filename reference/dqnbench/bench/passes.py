"""Passes: every benchmark timed in N short passes spread over the whole run, then pooled into one result.

    pytest benchmarks --passes=10 --benchmark-max-time=0.3 --benchmark-min-rounds=5

This host's speed wanders on every time scale (README, Figures from this machine: the medians of 1 s windows of
one call timed back to back vary by 5.9 %, of 30 s windows by 2.7 %). A benchmark timed in one 3 s block
gets whatever phase the host is in during those seconds, and the reference and the fast path, timed minutes
apart, get different phases. With passes, pass 1 runs every benchmark for a short while, then pass 2, and so
on, and the run's result for a benchmark pools the rounds of all its passes. Its median then samples the whole
run. In each pass the implementations of one benchmark run side by side, in alternating order (reference first
in odd passes, last in even ones), so their ratio compares the same moments of the host.

The suite (`benchmarks/conftest.py`) parametrizes each benchmark with its pass (`pass_id`), runs the items in
`interleaved` order, and pools each benchmark's passes with `pool` before pytest-benchmark writes its JSON and
table, so the JSON holds one entry per benchmark, named as without passes. Its `extra_info` says how it was
pooled: `passes` and `pass_medians_s`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from pytest_benchmark.stats import Metadata, Stats

from dqnbench.bench.measure import CALLS_MEASURED, PEAKS_MB, PER_CALL_FAULTS, RSS_MB

PASS_PARAM = "benchmark_pass"
"""The parameter (and fixture) that gives a benchmark's item its pass."""

PASS_EXTRA = "pass"
"""`extra_info` key of the pass (0-based) a benchmark's entry was timed in; gone after `pool`."""

_PASS_ID = re.compile(r"-?\bpass\d+of\d+\b-?")

T = TypeVar("T")


def pass_id(index: int, passes: int) -> str:
    """The test id of pass `index` (0-based) of `passes`: "pass1of10" for the first of ten."""
    return f"pass{index + 1}of{passes}"


def without_pass_id(text: str) -> str:
    """`text` (a test name, node id or parameter id) with its pass id taken out: test[cpu-fast] for
    test[cpu-fast-pass2of10], test for test[pass2of10]."""

    def keep_one_dash(match: re.Match[str]) -> str:
        inner = match.group(0).startswith("-") and match.group(0).endswith("-")
        return "-" if inner else ""

    return _PASS_ID.sub(keep_one_dash, text).replace("[]", "")


def interleaved(items: Sequence[T], describe: Callable[[T], tuple[int, Hashable, str] | None]) -> list[T]:
    """`items` in the order a run with passes times them.

    `describe(item)` gives its pass (0-based), its benchmark (any key that is equal for the implementations of
    one measurement: test, device, batch size) and its implementation; None for an item that is not a
    benchmark, which keeps its place. The benchmarks go pass by pass; within a pass, benchmark by benchmark in
    the order they first appear, the implementations of each together, in first-appearance order in even
    passes (0, 2, ...) and reversed in odd ones, so that no implementation always runs right after another
    benchmark's work.
    """
    described = [(item, describe(item)) for item in items]
    benchmark_order: dict[Hashable, int] = {}
    impl_order: dict[str, int] = {}
    for _, found in described:
        if found is not None:
            benchmark_order.setdefault(found[1], len(benchmark_order))
            impl_order.setdefault(found[2], len(impl_order))

    def run_order(entry: tuple[T, tuple[int, Hashable, str] | None]) -> tuple[int, int, int]:
        index, benchmark, impl = entry[1] or (0, None, "")
        rank = impl_order[impl]
        return index, benchmark_order[benchmark], -rank if index % 2 else rank

    ordered = iter(sorted((entry for entry in described if entry[1] is not None), key=run_order))
    return [next(ordered)[0] if found is not None else item for item, found in described]


def _pooled_facts(passes: Sequence[dict[str, Any]], medians: list[float]) -> dict[str, Any]:
    """One `extra_info` for the passes' entries (each as `dqnbench.bench.measure.run_benchmark` fills it).

    Facts of the whole benchmark (implementation, batch size, memory size) are the same in every pass and kept
    from the first; so is `first_call_ms`, the first pass's first call being the benchmark's first call (with any
    compilation). Counts add up, per-call counts are averaged over all calls, peaks take the highest.
    """
    facts = {key: value for key, value in passes[0].items() if key != PASS_EXTRA}
    if all(CALLS_MEASURED in extra for extra in passes):
        calls = [int(extra[CALLS_MEASURED]) for extra in passes]
        facts[CALLS_MEASURED] = sum(calls)
        for key in PER_CALL_FAULTS:
            if all(key in extra for extra in passes):
                faults = sum(float(extra[key]) * count for extra, count in zip(passes, calls, strict=True))
                facts[key] = faults / max(sum(calls), 1)
    for key in PEAKS_MB:
        peaks = [extra[key] for extra in passes if extra.get(key) is not None]
        if peaks:
            facts[key] = max(peaks)
    if RSS_MB in passes[-1]:
        facts[RSS_MB] = passes[-1][RSS_MB]
    facts["passes"] = len(passes)
    facts["pass_medians_s"] = medians
    return facts


def pool(benchmarks: Sequence[Metadata]) -> list[Metadata]:
    """Each benchmark's passes as one entry (in the order its first pass ran); entries without a pass unchanged.

    The pooled entry holds every round of every pass (pytest-benchmark's per-iteration times), so its median,
    quartiles and round count are those of the whole run; it is named as the benchmark is without passes.
    """
    groups: dict[str, list[Metadata]] = {}
    result: list[Metadata | str] = []
    for bench in benchmarks:
        if PASS_EXTRA not in bench.extra_info:
            result.append(bench)
            continue
        key = without_pass_id(bench.fullname)
        if key not in groups:
            groups[key] = []
            result.append(key)
        groups[key].append(bench)
    return [entry if not isinstance(entry, str) else _merged(groups[entry]) for entry in result]


def _merged(entries: list[Metadata]) -> Metadata:
    entries = sorted(entries, key=lambda bench: int(bench.extra_info[PASS_EXTRA]))
    first = entries[0]
    stats = Stats()
    for bench in entries:
        stats.data.extend(bench.stats.data)
    medians = [bench.stats.median for bench in entries]
    # The first entry becomes the pooled one: pytest-benchmark's table and JSON read these attributes.
    first.extra_info = _pooled_facts([bench.extra_info for bench in entries], medians)
    first.stats = stats
    # Passes calibrate their iterations per round apart; the data are per-iteration times either way.
    first.iterations = max(bench.iterations for bench in entries)
    first.name, first.fullname = without_pass_id(first.name), without_pass_id(first.fullname)
    first.param = without_pass_id(first.param) if first.param else first.param
    first.params = {key: value for key, value in (first.params or {}).items() if key != PASS_PARAM} or None
    return first
