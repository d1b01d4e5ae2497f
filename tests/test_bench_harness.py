"""The benchmark harness pieces: recorded facts, the timed call, implementations as subjects, workloads."""

from __future__ import annotations

import math
import mmap
import os
from collections.abc import Callable
from itertools import islice, pairwise
from typing import Any

import numpy as np
import pytest
import torch

from dqnbench import allocator
from dqnbench.bench import facts
from dqnbench.bench.measure import run_benchmark, synchronized
from dqnbench.bench.subjects import REFERENCE_SUBJECT, BenchSubject, MissingPiece, transition_batch
from dqnbench.bench.workload import TrainStep, fill, render_screens, rollout
from dqnbench.config import SEED_CONFIG
from dqnbench.conformance.adapter import REFERENCE
from dqnbench.learner import make_target
from dqnbench.nets import DQN
from dqnbench.train import make_optimizer


class FakeBenchmark:
    """pytest-benchmark's fixture as far as `run_benchmark` uses it: calls the function `rounds` times."""

    def __init__(self, rounds: int = 7) -> None:
        self.extra_info: dict[str, Any] = {}
        self.group: str | None = None
        self.rounds = rounds
        self.mode = ""

    def __call__(self, fn: Callable[[], Any]) -> Any:
        self.mode = "auto"
        return [fn() for _ in range(self.rounds)][-1]

    def pedantic(self, target: Callable[[], Any], *, rounds: int, warmup_rounds: int, iterations: int) -> Any:
        self.mode = f"pedantic rounds={rounds} warmup={warmup_rounds} iterations={iterations}"
        return target()


@pytest.mark.parametrize(
    ("quick", "expected_calls", "mode"), [(False, 1 + 3 + 7, "auto"), (True, 1 + 1 + 1, "pedantic")]
)
def test_run_benchmark_warms_up_counts_calls_and_records_facts(quick: bool, expected_calls: int, mode: str) -> None:
    calls: list[int] = []
    fake = FakeBenchmark()
    run_benchmark(fake, lambda: calls.append(1), device=torch.device("cpu"), quick=quick, extra={"impl": "x"})
    assert len(calls) == expected_calls
    assert fake.mode.startswith(mode)
    info = fake.extra_info
    assert info["calls_measured"] == (1 if quick else fake.rounds)
    assert info["warmup_rounds"] == (1 if quick else 3)
    assert info["impl"] == "x"
    assert info["device"] == "cpu"
    assert info["cuda_peak_mb"] is None
    assert info["first_call_ms"] >= 0
    assert info["quick"] is quick
    for key in ("page_faults_minor_per_call", "page_faults_major_per_call", "rss_mb", "peak_rss_mb"):
        assert isinstance(info[key], float)
        assert info[key] >= 0, key


def test_page_faults_are_counted_per_call() -> None:
    page = os.sysconf("SC_PAGE_SIZE")

    def touch_fresh_pages() -> None:
        # A new anonymous mapping each call, written once per page: at least 256 faults per call. (Not a
        # bytearray: once the allocator is pinned, malloc may serve it from heap pages touched long ago.)
        with mmap.mmap(-1, 64 * 2**20) as buffer:
            buffer.madvise(mmap.MADV_NOHUGEPAGE)  # 4 KiB pages whatever the system's transparent huge pages
            for offset in range(0, len(buffer), page):
                buffer[offset] = 1

    fake = FakeBenchmark(rounds=3)
    run_benchmark(fake, touch_fresh_pages, device=torch.device("cpu"), quick=False)
    assert fake.extra_info["page_faults_minor_per_call"] >= 256, fake.extra_info


def test_synchronized_leaves_cpu_functions_alone() -> None:
    def fn() -> int:
        return 3

    assert synchronized(fn, torch.device("cpu")) is fn


def test_machine_info_records_versions_threads_allocator_and_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(facts.MACHINE_ID_ENV, raising=False)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
    info: dict[str, Any] = {"node": "box", "machine": "x86_64", "cpu": {"brand_raw": "Some CPU", "count": 2}}
    facts.update_machine_info(info, {"source": "mallopt"}, mode="full")
    recorded = info["dqnbench"]
    assert recorded["allocator"]["env"]["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1", recorded["allocator"]
    assert recorded["torch"] == torch.__version__
    assert recorded["cuda"] == torch.version.cuda
    assert recorded["torch_threads"] == torch.get_num_threads()
    assert recorded["allocator"]["pinned"] == {"source": "mallopt"}
    assert recorded["mode"] == "full"
    assert recorded["machine_id"].startswith("box-")
    assert facts.machine_id_from_info(info) == recorded["machine_id"]

    monkeypatch.setenv(facts.MACHINE_ID_ENV, "ci-runner")
    facts.update_machine_info(info, {"source": "mallopt"}, mode="full")
    assert facts.machine_id_from_info(info) == "ci-runner"


def test_machine_id_separates_hosts_and_hardware() -> None:
    base = {"node": "box", "machine": "x86_64", "cpu": {"brand_raw": "Some CPU", "count": 2}}
    other_cpu = {**base, "cpu": {"brand_raw": "Some CPU", "count": 16}}
    ids = {facts.machine_id_from_info(info) for info in (base, {**base, "node": "other"}, other_cpu)}
    assert len(ids) == 3
    assert facts.machine_id_from_info(dict(base)) == facts.machine_id_from_info(base)


def test_machine_id_separates_leased_gpu_machines_by_card_and_keeps_cpu_ids() -> None:
    base = {"node": "vm", "machine": "x86_64", "cpu": {"brand_raw": "Some CPU", "count": 16}}
    cpu_only = facts.machine_id_from_info(base)
    # A machine without GPUs keeps the id it had before GPU UUIDs were recorded: its history stays one folder.
    assert facts.machine_id_from_info({**base, "dqnbench": {"gpus": [], "gpu_uuids": []}}) == cpu_only
    leases = [{**base, "dqnbench": {"gpus": ["NVIDIA H200"], "gpu_uuids": [uuid]}} for uuid in ("GPU-1", "GPU-2")]
    first, second = (facts.machine_id_from_info(info) for info in leases)
    assert first != second, "two cards alike but for their UUIDs got one machine id: their runs would be compared"
    assert first == facts.machine_id_from_info(leases[0]), "the same card must keep its machine id"


def test_allocator_is_pinned_and_says_how() -> None:
    pinned = allocator.pin_glibc_allocator()
    if "MALLOC_MMAP_THRESHOLD_" in os.environ and "MALLOC_TRIM_THRESHOLD_" in os.environ:
        assert pinned["source"] == "environment"
    elif os.uname().sysname == "Linux":
        assert pinned == {"source": "mallopt", "mmap_threshold": allocator.MMAP_THRESHOLD,
                          "trim_threshold": allocator.TRIM_THRESHOLD}  # fmt: skip
    else:
        assert pinned["source"].startswith("not pinned")


def test_require_names_every_missing_piece() -> None:
    subject = BenchSubject.from_adapter(REFERENCE.__class__(name="partial", make_network=DQN))
    subject.require("make_network")
    with pytest.raises(MissingPiece, match="'partial' does not supply make_memory, get_screen"):
        subject.require("make_network", "make_memory", "get_screen")


@pytest.fixture(scope="module")
def screens() -> list[torch.Tensor]:
    return render_screens(REFERENCE_SUBJECT, 8, torch.device("cpu"))


def test_rollout_is_shaped_like_the_training_loop(screens: list[torch.Tensor]) -> None:
    steps = list(islice(rollout(screens, episode_length=5), 10))
    transitions = [step.transition for step in steps]
    finals = [i for i, (_, _, next_state, _) in enumerate(transitions) if next_state is None]
    assert finals == [4, 9]
    for (_, _, next_state, _), (state, _, _, _) in pairwise(transitions[:4]):
        assert next_state is state
    torch.testing.assert_close(transitions[1][0], screens[2] - screens[1])
    # The loop observes the reset screen (first=True), then each step's screen, before the push.
    assert [[first for _, first in step.observed] for step in steps[:6]] == [
        [True, False],
        [False],
        [False],
        [False],
        [False],
        [True, False],
    ]
    assert steps[0].observed[0][0] is screens[1]
    assert steps[0].observed[1][0] is screens[2]


def test_transition_batch_round_trips_the_seed_layout(screens: list[torch.Tensor]) -> None:
    memory = REFERENCE_SUBJECT.make_memory(100, 0)  # type: ignore[misc]
    fill(memory, rollout(screens, episode_length=3), 30)
    batch = memory.sample_batch(16)
    again = transition_batch(batch).seed_batch(final=transition_batch(batch).terminated)
    for name in ("states", "actions", "rewards", "non_final_mask", "non_final_next_states"):
        torch.testing.assert_close(getattr(again, name), getattr(batch, name), msg=lambda m, n=name: f"{n}: {m}")


def test_adapter_subject_optimizes_exactly_like_the_reference_parts(screens: list[torch.Tensor]) -> None:
    """The conversions a user's adapter goes through change nothing: same loss, same updated weights."""
    adapter_subject = BenchSubject.from_adapter(REFERENCE)
    memory = adapter_subject.make_memory(100, 0)  # type: ignore[misc]
    fill(memory, rollout(screens, episode_length=4), 40)
    batch = memory.sample_batch(16)
    results = []
    for subject in (REFERENCE_SUBJECT, adapter_subject):
        torch.manual_seed(0)
        policy = DQN(40, 90, 2)
        step = subject.make_optimize(  # type: ignore[misc]
            policy, make_target(policy), make_optimizer(policy.parameters(), SEED_CONFIG), SEED_CONFIG
        )
        results.append((step(batch), policy.state_dict()))
    (loss_parts, weights_parts), (loss_adapter, weights_adapter) = results
    torch.testing.assert_close(loss_adapter, loss_parts)
    torch.testing.assert_close(weights_adapter, weights_parts)


def test_train_step_acts_stores_and_learns(screens: list[torch.Tensor]) -> None:
    step = TrainStep(REFERENCE_SUBJECT, torch.device("cpu"), screens=screens, warm=SEED_CONFIG.batch_size)
    try:
        before = len(step.memory)
        losses = [float(step()) for _ in range(3)]
    finally:
        step.close()
    assert len(step.memory) == before + 3
    assert all(math.isfinite(loss) for loss in losses), losses


def test_tensor_bytes_counts_each_storage_once_through_containers_and_attributes():
    from collections import deque

    from dqnbench.bench.facts import tensor_bytes

    shared = torch.zeros(1000)  # 4000 bytes, reached three times
    holder = type("Holder", (), {})()
    holder.items = [shared, (shared[:10], {"again": shared})]
    holder.ring = deque([torch.zeros(10, dtype=torch.uint8)])
    holder.label = "not a tensor"
    assert tensor_bytes(holder) == 4000 + 10
    assert tensor_bytes([holder, holder]) == 4010
    # numpy arrays count too (replay bookkeeping), once with their views and with tensors sharing their memory.
    flags = np.zeros(500, dtype=np.bool_)
    holder.flags = [flags, flags[100:], torch.from_numpy(flags)]
    assert tensor_bytes(holder) == 4010 + 500
    # Whatever part of the memory each one reaches, and in whichever order they are found.
    owned = np.zeros(1000, dtype=np.uint8)
    lent = torch.zeros(1000, dtype=torch.uint8)
    for shared in (
        [torch.from_numpy(owned[:100]), owned],
        [owned, torch.from_numpy(owned[:100])],
        [owned, torch.from_numpy(owned[100:])],
        [lent, lent[100:].numpy()],
        [lent[100:].numpy()],
    ):
        assert tensor_bytes(shared) == 1000, [type(x).__name__ for x in shared]
    assert tensor_bytes([torch.from_numpy(owned[100:300])]) == 200  # a tensor over part of an array: that part
