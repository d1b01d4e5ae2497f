"""Benchmark parameters (device, implementation), options, and the facts recorded with each run.

Run with `pytest benchmarks/` (the folder is not in `testpaths`). Options:

* `--device=cpu|cuda|cpu,cuda` (default both): a CUDA case skips when no GPU is present, unless CUDA was
  requested (named in `--device`, or `DQNBENCH_REQUIRE_CUDA=1`), in which case it fails.
* `--dqn-impl=package.module:object` (registered by the conformance plugin): adds that implementation's
  conformance adapter beside `reference` and `fast`.
* `--quick`: every benchmark once (CI smoke run: proves none has rotted; its timings are not measurements).
* `--threads=N`: torch intra-op threads (recorded in `machine_info.dqnbench.torch_threads`).
* `--passes=N`: time every benchmark in N short passes over the run, pooled into one result per benchmark
  (`dqnbench.bench.passes` says why); with or without, the implementations of a benchmark run side by side.

`DQNBENCH_COMMIT=<commit id>[-dirty]` records that commit instead of what git says (for a copied tree).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import pytest
import torch

from dqnbench import registry
from dqnbench.allocator import pin_glibc_allocator
from dqnbench.bench.facts import commit_override, update_commit_info, update_machine_info
from dqnbench.bench.measure import run_benchmark
from dqnbench.bench.passes import PASS_EXTRA, PASS_PARAM, interleaved, pass_id, pool
from dqnbench.bench.subjects import (
    BenchSubject,
    MissingPiece,
    fast_compiled_subject,
    fast_graphed_subject,
    registered_subject,
    user_subject,
)
from dqnbench.bench.workload import Workloads, render_screens
from dqnbench.conformance.adapter import REFERENCE_SPEC
from dqnbench.registry import UnknownImplementation

DEVICES = ("cpu", "cuda")
REQUIRE_CUDA_ENV = "DQNBENCH_REQUIRE_CUDA"
_PINNED = pytest.StashKey[dict[str, Any]]()
_COMMIT = pytest.StashKey[tuple[str, bool] | None]()
_SUBJECTS = pytest.StashKey[dict[str, BenchSubject | str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dqnbench benchmarks")
    group.addoption(
        "--device",
        default=None,
        help="devices to benchmark, comma-separated: cpu, cuda (default: both, CUDA "
        "skipped when absent; naming cuda makes a missing GPU an error instead of a skip)",
    )
    group.addoption("--quick", action="store_true", help="run every benchmark once (smoke test, not a measurement)")
    group.addoption(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's choice, one per core); 1 keeps timings steady on a busy "
        "machine, where threads waiting for each other at every operator multiply a timing",
    )
    group.addoption(
        "--passes",
        type=int,
        default=1,
        help="time every benchmark in this many short passes spread over the run and pool each one's rounds "
        "(with --benchmark-max-time per pass), so that its median samples the whole run, not one moment of "
        "a machine whose speed wanders (default 1)",
    )


def _devices(config: pytest.Config) -> list[str]:
    option = config.getoption("--device")
    if option is None:
        return list(DEVICES)
    devices = [d.strip() for d in str(option).split(",") if d.strip()]
    unknown = sorted(set(devices) - set(DEVICES))
    if unknown or not devices:
        raise pytest.UsageError(f"--device={option!r}: choose from {', '.join(DEVICES)}, comma-separated")
    return devices


def cuda_required(config: pytest.Config) -> bool:
    """CUDA was asked for by name (`--device` lists it) or by `DQNBENCH_REQUIRE_CUDA=1`."""
    named = config.getoption("--device") is not None and "cuda" in _devices(config)
    return named or os.environ.get(REQUIRE_CUDA_ENV) == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_PINNED] = pin_glibc_allocator()
    # Read now: pytest-benchmark asks for the commit only when it writes the JSON, after every benchmark ran.
    try:
        config.stash[_COMMIT] = commit_override()
    except ValueError as error:
        raise pytest.UsageError(str(error)) from error
    threads = config.getoption("--threads")
    if threads is not None:
        if threads < 1:
            raise pytest.UsageError(f"--threads={threads}: need at least 1")
        torch.set_num_threads(threads)
    if config.getoption("--passes") < 1:
        raise pytest.UsageError(
            f"--passes={config.getoption('--passes')}: need at least 1 (1 times each benchmark once)"
        )


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    mode = "quick" if config.getoption("--quick") else "full"
    update_machine_info(machine_info, config.stash[_PINNED], mode=mode, passes=config.getoption("--passes"))


def pytest_benchmark_update_commit_info(config: pytest.Config, commit_info: dict[str, Any]) -> None:
    update_commit_info(commit_info, config.stash[_COMMIT])


def _subjects(config: pytest.Config) -> dict[str, BenchSubject | str]:
    """Implementations by test id: every registered one (`dqnbench.registry`), the fast path's step variants and
    `--dqn-impl`'s adapter; a subject, or why it cannot be benchmarked (its cases skip with that)."""
    subjects: dict[str, BenchSubject | str] = {}
    ordered = ["reference", "fast"] + [name for name in registry.names() if name not in ("reference", "fast")]
    variants = {"fast": (("fast-compiled", fast_compiled_subject), ("fast-graphed", fast_graphed_subject))}
    for name in ordered:
        for variant, make in ((name, functools.partial(registered_subject, name)), *variants.get(name, ())):
            try:
                subjects[variant] = make()
            except (ImportError, UnknownImplementation) as error:
                subjects[variant] = f"implementation {name!r} unavailable: {error}"
    spec = config.getoption("--dqn-impl", default=None)
    if spec and spec != REFERENCE_SPEC:
        user = user_subject(spec)
        if user.name in subjects:
            raise pytest.UsageError(
                f"--dqn-impl={spec!r}: its adapter is named {user.name!r}, which is already a benchmarked "
                "implementation; give the DQNAdapter another name"
            )
        subjects[user.name] = user
    return subjects


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device" in metafunc.fixturenames:
        metafunc.parametrize("device", _devices(metafunc.config), indirect=True, scope="session")
    if "subject" in metafunc.fixturenames:
        subjects = metafunc.config.stash.setdefault(_SUBJECTS, _subjects(metafunc.config))
        # The parameter is the implementation's name, so the JSON's `params` records it readably.
        names = [name for name, found in subjects.items() if _times(found, metafunc.function.__name__)]
        metafunc.parametrize("subject", names, indirect=True, scope="session")
    passes = metafunc.config.getoption("--passes")
    if passes > 1 and PASS_PARAM in metafunc.fixturenames:
        ids = [pass_id(index, passes) for index in range(passes)]
        metafunc.parametrize(PASS_PARAM, range(passes), ids=ids, indirect=True)


def _as_benchmark(item: pytest.Item) -> tuple[int, Hashable, str] | None:
    """The item's pass, benchmark (test and parameters but the implementation) and implementation."""
    if PASS_PARAM not in getattr(item, "fixturenames", ()):
        return None
    params = dict(getattr(getattr(item, "callspec", None), "params", {}))
    index, impl = params.pop(PASS_PARAM, 0), params.pop("subject", "")
    return (
        index,
        (item.nodeid.split("[")[0], tuple(sorted((name, repr(value)) for name, value in params.items()))),
        impl,
    )


@pytest.hookimpl(trylast=True)  # after pytest has grouped the items by their fixtures' parameters
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items[:] = interleaved(items, _as_benchmark)


@pytest.hookimpl(wrapper=True, tryfirst=True)  # before pytest-benchmark's own, which writes the JSON and table
def pytest_sessionfinish(session: pytest.Session) -> Iterator[None]:
    benchmarks = getattr(session.config, "_benchmarksession", None)
    if benchmarks is not None:
        benchmarks.benchmarks[:] = pool(benchmarks.benchmarks)
    return (yield)


def _times(subject: BenchSubject | str, test: str) -> bool:
    """Whether `subject` is timed in benchmark `test` (one that cannot be benchmarked is listed to skip)."""
    return isinstance(subject, str) or subject.benchmarks is None or test in subject.benchmarks


def cpu_time_timer(config: pytest.Config) -> str | None:
    """The `--benchmark-timer` when it counts this process's CPU time (time.process_time, thread_time)."""
    timer = str(config.getoption("benchmark_timer", default=""))
    return timer if timer.rsplit(".", 1)[-1].removesuffix("_ns") in ("process_time", "thread_time") else None


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    name: str = request.param
    reason = None
    if name == "cuda" and (timer := cpu_time_timer(request.config)):
        # Waiting for the GPU is not CPU time: such a timing would leave out the work being measured.
        reason = f"--benchmark-timer={timer} counts CPU time only, not the GPU's"
        hint = "time CUDA with the default wall-clock timer, and the CPU-time timer with --device=cpu"
    elif name == "cuda" and not torch.cuda.is_available():
        reason = f"CUDA is not available (torch {torch.__version__}, torch.version.cuda={torch.version.cuda})"
        hint = "pass --device=cuda on a GPU machine"
    if reason is not None:
        if cuda_required(request.config):
            pytest.fail(f"{reason}, but CUDA was requested (--device or {REQUIRE_CUDA_ENV}=1); {hint}", pytrace=False)
        pytest.skip(f"{reason}; {hint}")
    return torch.device(name)


@pytest.fixture(scope="session")
def subject(request: pytest.FixtureRequest) -> BenchSubject:
    found = request.config.stash[_SUBJECTS][request.param]
    if isinstance(found, str):
        pytest.skip(found)
    return found


@pytest.fixture(autouse=True)
def _subject_runs_on_device(request: pytest.FixtureRequest) -> None:
    """Skip the cases of a subject on a device it does not run on (CUDA graphs on CPU)."""
    if {"subject", "device"} <= set(request.fixturenames):
        subject, device = request.getfixturevalue("subject"), request.getfixturevalue("device")
        if subject.devices is not None and device.type not in subject.devices:
            pytest.skip(f"{subject.name} runs on {', '.join(sorted(subject.devices))} only")


@pytest.fixture
def benchmark_pass(request: pytest.FixtureRequest) -> int:
    """The pass (0-based) of `--passes` this item times its benchmark in: 0 without passes."""
    return int(getattr(request, "param", 0))


@pytest.fixture(scope="session")
def workloads() -> Iterator[Workloads]:
    built = Workloads()
    yield built
    built.close()


@pytest.fixture(scope="session")
def quick(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--quick"))


def _skip_on_missing_piece() -> Iterator[object]:
    try:
        return (yield)
    except MissingPiece as missing:
        pytest.skip(str(missing))


# A piece an implementation does not supply skips the benchmarks that need it, with the piece named,
# whether a fixture building the workload or the benchmark itself asked for it. (Hooks in this file do
# not wrap session-scoped fixtures, whose node is the session: those must not raise MissingPiece.)
pytest_fixture_setup = pytest.hookimpl(wrapper=True)(_skip_on_missing_piece)
pytest_pyfunc_call = pytest.hookimpl(wrapper=True)(_skip_on_missing_piece)


POOL = 64
"""Distinct rendered states each benchmark cycles through (a quick run renders 8)."""


@pytest.fixture(scope="session")
def pool_size(quick: bool) -> int:
    return 8 if quick else POOL


@pytest.fixture
def screens(subject: BenchSubject, device: torch.device, pool_size: int, workloads: Workloads) -> list[torch.Tensor]:
    """Screens of random CartPole states (the implementation's own screens when it extracts them)."""
    return workloads.get(
        ("screens", subject.name, device, pool_size), lambda: render_screens(subject, pool_size, device)
    )


Timed = Callable[..., None]


@pytest.fixture
def timed(benchmark: Any, subject: BenchSubject, device: torch.device, quick: bool, benchmark_pass: int) -> Timed:
    """`timed(group, fn, **extra_info)`: benchmark `fn` in `group`, recording implementation, device and pass."""

    def run(group: str, fn: Callable[[], object], **extra: object) -> None:
        benchmark.group = group
        facts = {"impl": subject.name, PASS_EXTRA: benchmark_pass, **extra}
        run_benchmark(benchmark, fn, device=device, quick=quick, extra=facts)

    return run
