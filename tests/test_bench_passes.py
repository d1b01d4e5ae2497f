"""Passes (`dqnbench.bench.passes`): the run order, and the pooling of a benchmark's passes into one entry."""

from __future__ import annotations

import statistics
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pytest_benchmark.stats import Metadata

from dqnbench.bench.compare import context_differences
from dqnbench.bench.history import Run
from dqnbench.bench.passes import PASS_EXTRA, PASS_PARAM, interleaved, pass_id, pool, without_pass_id
from dqnbench.bench.workload import Workloads


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("test_forward[cpu-fast-pass2of10-b1]", "test_forward[cpu-fast-b1]"),
        ("test_optimize[cpu-fast-compiled-pass10of10]", "test_optimize[cpu-fast-compiled]"),
        ("pass1of3-cpu", "cpu"),
        ("bench.py::test_lone[pass3of3]", "bench.py::test_lone"),
        ("test_bypass1of2[cpu]", "test_bypass1of2[cpu]"),  # not a pass id: part of a longer word
    ],
)
def test_the_pass_id_comes_out_of_names_ids_and_node_ids(text: str, expected: str) -> None:
    assert without_pass_id(text) == expected
    assert pass_id(1, 10) == "pass2of10"


def test_passes_run_in_turn_with_implementations_side_by_side_in_alternating_order() -> None:
    # (pass, benchmark, implementation) as pytest collects them: grouped by implementation.
    items = [(p, bench, impl) for impl in ("ref", "fast") for p in range(3) for bench in ("forward", "sample")]
    assert interleaved(items, lambda item: item) == [
        (0, "forward", "ref"), (0, "forward", "fast"), (0, "sample", "ref"), (0, "sample", "fast"),
        (1, "forward", "fast"), (1, "forward", "ref"), (1, "sample", "fast"), (1, "sample", "ref"),
        (2, "forward", "ref"), (2, "forward", "fast"), (2, "sample", "ref"), (2, "sample", "fast"),
    ]  # fmt: skip


def test_items_that_are_not_benchmarks_keep_their_places() -> None:
    items: list[Any] = ["setup", (1, "b", "ref"), "middle", (0, "b", "ref"), "end"]
    assert interleaved(items, lambda item: item if isinstance(item, tuple) else None) == [
        "setup", (0, "b", "ref"), "middle", (1, "b", "ref"), "end",
    ]  # fmt: skip


def _timed_pass(index: int, times: list[float], facts: dict[str, Any], iterations: int = 1) -> Metadata:
    """pytest-benchmark's record of pass `index` of a benchmark of the fast path, rounds taking `times` seconds."""
    param = f"cpu-fast-{pass_id(index, 3)}"
    fixture = SimpleNamespace(
        name=f"test_sample[{param}]",
        fullname=f"benchmarks/test_replay_bench.py::test_sample[{param}]",
        group="replay-sample",
        param=param,
        params={"device": "cpu", "subject": "fast", PASS_PARAM: index},
        extra_info={"impl": "fast", PASS_EXTRA: index, **facts},
        cprofile_stats=None,
    )
    bench = Metadata(fixture, iterations=iterations, options={"max_time": 0.3})
    for seconds in times:
        bench.update(seconds * iterations)
    return bench


def test_pool_makes_one_entry_of_every_round_of_every_pass() -> None:
    times = [[1.0, 1.2, 1.1], [3.0, 3.1], [1.3, 1.4, 1.0, 1.1]]
    facts = [
        {"first_call_ms": 900.0, "calls_measured": 10, "page_faults_minor_per_call": 1.0, "peak_rss_mb": 50.0},
        {"first_call_ms": 2.0, "calls_measured": 30, "page_faults_minor_per_call": 0.0, "peak_rss_mb": 80.0},
        {"first_call_ms": 3.0, "calls_measured": 60, "page_faults_minor_per_call": 0.5, "peak_rss_mb": 70.0},
    ]
    other = _timed_pass(0, [9.0], {})
    other.fullname = other.name = "test_lone"
    del other.extra_info[PASS_EXTRA]
    # The passes out of order (a pass may finish late), another benchmark between them.
    entries = [_timed_pass(2, times[2], facts[2]), other, _timed_pass(0, times[0], facts[0], iterations=4)]
    entries.append(_timed_pass(1, times[1], facts[1], iterations=2))

    pooled = pool(entries)

    assert [bench.name for bench in pooled] == ["test_sample[cpu-fast]", "test_lone"]
    merged = pooled[0]
    assert merged.fullname == "benchmarks/test_replay_bench.py::test_sample[cpu-fast]"
    assert (merged.param, merged.params) == ("cpu-fast", {"device": "cpu", "subject": "fast"})
    every_round = [seconds for pass_times in times for seconds in pass_times]
    assert merged.stats.rounds == len(every_round) == 9
    assert merged.stats.median == pytest.approx(statistics.median(every_round))
    assert merged.extra_info == {
        "impl": "fast",
        "first_call_ms": 900.0,  # the first pass's first call is the benchmark's first call
        "calls_measured": 100,
        "page_faults_minor_per_call": pytest.approx((10 * 1.0 + 60 * 0.5) / 100),
        "peak_rss_mb": 80.0,
        "passes": 3,
        "pass_medians_s": [pytest.approx(statistics.median(pass_times)) for pass_times in times],
    }
    assert merged.as_dict()["stats"]["iterations"] == 4
    assert pooled[1] is other


def test_pool_leaves_a_run_without_passes_alone() -> None:
    bench = _timed_pass(0, [1.0], {})
    del bench.extra_info[PASS_EXTRA]
    assert pool([bench]) == [bench]
    assert bench.name == "test_sample[cpu-fast-pass1of3]"


def _run(dqnbench_facts: dict[str, Any]) -> Run:
    return Run(Path("run.json"), {"machine_info": {"dqnbench": {"mode": "full", **dqnbench_facts}}})


def test_compare_names_a_change_of_passes_and_takes_older_runs_as_one_pass() -> None:
    assert context_differences(_run({}), _run({"passes": 10})) == ["passes: 1 -> 10"]
    assert context_differences(_run({}), _run({"passes": 1})) == []


def test_workloads_are_built_once_per_key_retried_after_a_failure_and_closed() -> None:
    built: list[str] = []
    closed: list[str] = []

    class Closing:
        def close(self) -> None:
            closed.append("step")

    def build(name: str) -> Any:
        built.append(name)
        return Closing() if name == "step" else name

    workloads = Workloads()
    assert workloads.get(("memory", "fast"), lambda: build("memory")) == "memory"
    assert workloads.get(("memory", "fast"), lambda: build("again")) == "memory"
    step = workloads.get("step", lambda: build("step"))
    assert workloads.get("step", lambda: build("step")) is step

    def failing() -> str:
        built.append("failed")
        raise RuntimeError("no GPU")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            workloads.get("broken", failing)
    assert built == ["memory", "step", "failed", "failed"]
    workloads.close()
    assert closed == ["step"]
