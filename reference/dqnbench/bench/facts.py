"""Facts recorded with every benchmark run: the machine, the allocator, and per-benchmark process counters.

The suite pins glibc's allocator thresholds as soon as pytest configures (`dqnbench.allocator`, which says
why) and records how, so two runs are comparable only if their allocators were.
"""

from __future__ import annotations

import collections
import os
import re
import resource
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import dqnbench
from dqnbench.bench.history import machine_id_from_info

MALLOC_ENV_VARS = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
    "MALLOC_ARENA_MAX",
    # glibc >= 2.26 reads every malloc tunable from here too (glibc.malloc.hugetlb=1: transparent huge pages).
    "GLIBC_TUNABLES",
)
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def allocator_env() -> dict[str, str]:
    """The allocator settings given in this process's environment (glibc's and PyTorch's CUDA allocator)."""
    names = (*MALLOC_ENV_VARS, "PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")
    return {name: os.environ[name] for name in names if name in os.environ}


def gpu_names() -> list[str]:
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def gpu_uuids() -> list[str]:
    """Each visible GPU's UUID: what tells two leased machines apart whose host name and hardware are alike."""
    if not torch.cuda.is_available():
        return []
    return [str(torch.cuda.get_device_properties(i).uuid) for i in range(torch.cuda.device_count())]


def gpu_facts() -> dict[str, list[str]]:
    """The GPUs' names and UUIDs: this suite's facts that `machine_id_from_info` builds the machine id from."""
    return {"gpus": gpu_names(), "gpu_uuids": gpu_uuids()}


def _machine_id(machine_info: dict[str, Any]) -> str:
    return os.environ.get(MACHINE_ID_ENV) or machine_id_from_info(machine_info)


def update_machine_info(machine_info: dict[str, Any], pinned: dict[str, Any], *, mode: str, passes: int = 1) -> None:
    """Add this suite's facts under `machine_info["dqnbench"]` (the `pytest_benchmark_update_machine_info` hook).

    `DQNBENCH_MACHINE_ID` overrides the derived machine id (e.g. for a CI runner whose host name changes).
    """
    machine_info["dqnbench"] = machine_facts(pinned, mode=mode, passes=passes)
    machine_info["dqnbench"]["machine_id"] = _machine_id(machine_info)


MACHINE_ID_ENV = "DQNBENCH_MACHINE_ID"
COMMIT_ENV = "DQNBENCH_COMMIT"


def commit_override() -> tuple[str, bool] | None:
    """`DQNBENCH_COMMIT=<commit id>[-dirty]`: the code's commit, for a copy of the tree whose `.git` is stale.

    A GPU machine may receive a copy of the working tree with an old `.git` beside it (or none), so git
    there names the wrong commit; the run's caller knows the right one. None when the variable is unset.
    """
    value = os.environ.get(COMMIT_ENV, "").strip()
    if not value:
        return None
    match = re.fullmatch(r"([0-9a-f]{7,40})(-dirty)?", value)
    if match is None:
        raise ValueError(
            f"{COMMIT_ENV}={value!r}: expected a git commit id (7 to 40 lower-case hex digits), optionally "
            f"followed by -dirty; e.g. {COMMIT_ENV}=$(git rev-parse HEAD)$(git diff --quiet HEAD || echo -dirty) in "
            "the shell that holds the repository"
        )
    return match[1], match[2] is not None


def update_commit_info(commit_info: dict[str, Any], override: tuple[str, bool] | None) -> None:
    """Apply `commit_override()` to pytest-benchmark's `commit_info`, keeping what git said under `git`.

    Everything git reported (id, times, branch) describes the stale commit, so all of it moves under `git`.
    """
    if override is None:
        return
    said_by_git = dict(commit_info)
    commit_info.clear()
    commit_info.update(id=override[0], dirty=override[1], source=COMMIT_ENV, git=said_by_git)


def this_machine_id() -> str:
    """The history store's id of the machine running this process: the id a benchmark run here records."""
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info

    machine_info = pytest_benchmark_generate_machine_info()
    machine_info["dqnbench"] = gpu_facts()
    return _machine_id(machine_info)


def machine_facts(pinned: dict[str, Any], *, mode: str, passes: int = 1) -> dict[str, Any]:
    """Versions, GPUs, threads, allocator settings and load: what a timing depends on besides the code.

    `passes`: the suite's `--passes`, how each benchmark's rounds were spread over the run (`dqnbench.bench.passes`).
    """
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "dqnbench_version": dqnbench.__version__,
        "mode": mode,
        "passes": passes,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        **gpu_facts(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "thread_env": {name: os.environ[name] for name in THREAD_ENV_VARS if name in os.environ},
        "allocator": {"env": allocator_env(), "pinned": pinned},
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


@dataclass(frozen=True)
class ProcessCounters:
    """A snapshot of this process's page faults and memory, to turn into per-call deltas."""

    minor_faults: int
    major_faults: int
    peak_rss_mb: float
    rss_mb: float

    @classmethod
    def now(cls) -> ProcessCounters:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return cls(
            minor_faults=usage.ru_minflt,
            major_faults=usage.ru_majflt,
            # ru_maxrss is in KiB on Linux (bytes on macOS, where this suite is not measured).
            peak_rss_mb=usage.ru_maxrss / 1024,
            rss_mb=current_rss_mb(),
        )


def current_rss_mb() -> float:
    """Resident set size now (Linux /proc), falling back to the peak where /proc is absent."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


_NOT_HOLDING_TENSORS = (str, bytes, int, float, bool, type(None), type, types.ModuleType, types.FunctionType)


def tensor_bytes(root: object) -> int:
    """Bytes of every tensor storage and numpy array reachable from `root`'s attributes and containers, each
    byte once however many tensors, arrays and views share it.

    What a replay memory holds, independent of the allocator: RSS growth misses memory that an earlier
    benchmark freed and this one reused (glibc keeps freed heap when the trim threshold is pinned).
    """
    seen_objects: set[int] = set()
    spans: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)  # per device: [start, stop) addresses
    pending: list[object] = [root]
    while pending:
        item = pending.pop()
        if id(item) in seen_objects or isinstance(item, _NOT_HOLDING_TENSORS):
            continue
        seen_objects.add(id(item))
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            spans[str(item.device)].append((storage.data_ptr(), storage.data_ptr() + storage.nbytes()))
        elif isinstance(item, np.ndarray):
            while isinstance(item.base, np.ndarray):  # a view: count the array that owns the memory
                item = item.base
            if item.base is not None:  # memory lent by another object (Tensor.numpy()): count that owner
                pending.append(item.base)
            else:
                spans["cpu"].append((item.ctypes.data, item.ctypes.data + item.nbytes))
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset | collections.deque):
            pending.extend(item)
        elif hasattr(item, "__dict__"):
            pending.extend(vars(item).values())
        elif hasattr(item, "__slots__"):
            pending.extend(getattr(item, slot) for slot in item.__slots__ if hasattr(item, slot))
    return sum(_covered(device_spans) for device_spans in spans.values())


def _covered(spans: list[tuple[int, int]]) -> int:
    """Bytes in the union of [start, stop) address ranges."""
    total, reach = 0, None
    for start, stop in sorted(spans):
        if reach is None or start >= reach:
            total += stop - start
            reach = stop
        elif stop > reach:
            total += stop - reach
            reach = stop
    return total
