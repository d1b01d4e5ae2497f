"""One side of an A/B run: a long-lived process that holds one revision's benchmarks ready and times them on demand.

    python abworker.py COMMAND_FD REPLY_FD [pytest arguments...]

Started by `dqnbench.bench.ab` with the revision's checkout as its working directory and its `reference/` first on
`PYTHONPATH`, so the suite and the `dqnbench` it imports are that revision's. It runs as a script and imports
nothing from `dqnbench` itself: the baseline may be a revision from before this file existed.

The worker runs the revision's benchmark suite under pytest once, with pytest-benchmark's fixture replaced by one
that keeps each benchmark's timed function instead of timing it (after one call, so a broken benchmark fails
here). At the last test's teardown, while every session fixture (filled memories, environments) is alive, it
answers commands, one JSON line each, on COMMAND_FD, replying on REPLY_FD:

* `{"op": "time", "id": NODEID, "seconds": S, "factor": F, "timer": T}`: time one pass of that benchmark:
  rounds of a calibrated number of calls until S seconds have passed (at least `MIN_ROUNDS`); reply with the
  per-call time of its fastest round. Timer `cpu` counts this process's CPU time (`time.process_time`), `wall`
  the elapsed time (`time.perf_counter`); `auto` takes CPU time for a benchmark on the CPU and elapsed time on
  CUDA, whose work the CPU only waits for. On a shared host, a process that gets a fifth of a core takes five
  times as long by the wall clock while its CPU time barely moves; CPU time cannot see a change that makes the
  code wait (a sleep, a lock, I/O), which is what `wall` is for. The fastest round, not the median: other
  processes only ever add to a round (evicted caches, a preemption), so the least-disturbed round is the
  steadiest figure of the code's own cost (the reasoning behind Python's `timeit` reporting the minimum).
  F > 1 stretches each round by F (`--inject-slowdown`): the process spins for (F - 1) times the round it just
  measured, by the same clock, so the slow-down scales with the call instead of adding a constant.
* `{"op": "quit"}`: leave the loop; pytest then tears the session down.

Its first reply lists the benchmarks it holds, the ones that failed or were skipped (with why), and the
`dqnbench` it imported (the driver checks that it is the revision's own).
"""

from __future__ import annotations

import gc
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

ROUND_SECONDS = 0.005
"""A round repeats the call until it lasts this long, so that a sub-millisecond call is not timed alone."""
MIN_ROUNDS = 2


CLOCKS: dict[str, Callable[[], float]] = {
    "cpu": time.process_time,
    "thread": time.thread_time,
    "wall": time.perf_counter,
}


class Held:
    """Benchmarks held by this worker: the timed function of each, by node id."""

    def __init__(self) -> None:
        self.calls: dict[str, Callable[[], Any]] = {}
        self.groups: dict[str, str | None] = {}
        self.devices: dict[str, str] = {}
        self.per_round: dict[str, int] = {}
        self.failed: dict[str, str] = {}
        self.skipped: dict[str, str] = {}


HELD = Held()


def _keep(fixture: Any, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    def call() -> Any:
        return function(*args, **kwargs)

    fixture._mode = "benchmark(...)"  # pytest-benchmark warns, an error under filterwarnings=error, when unset
    HELD.calls[fixture.fullname] = call
    HELD.groups[fixture.fullname] = fixture.group
    HELD.devices[fixture.fullname] = str((fixture.params or {}).get("device", "cpu"))
    return call()


def _keep_pedantic(fixture: Any, target: Callable[..., Any], args: Any = (), kwargs: Any = None, **_: Any) -> Any:
    return _keep(fixture, target, *args, **(kwargs or {}))


def timed_pass(
    call: Callable[[], Any], per_round: int, seconds: float, factor: float, clock: Callable[[], float]
) -> float:
    """The fastest per-call time (s, by `clock`) of rounds of `per_round` calls over `seconds` (elapsed), each round
    stretched by `factor`."""
    rounds: list[float] = []
    gc.disable()  # a collection inside a round would be charged to whichever side it fell on
    try:
        ends = time.perf_counter() + seconds
        while len(rounds) < MIN_ROUNDS or time.perf_counter() < ends:
            started = clock()
            for _ in range(per_round):
                call()
            if factor != 1.0:
                stop = clock() + (clock() - started) * (factor - 1.0)
                while clock() < stop:
                    pass
            rounds.append((clock() - started) / per_round)
    finally:
        gc.enable()
    return min(rounds)


def calls_per_round(call: Callable[[], Any], clock: Callable[[], float]) -> int:
    """Calls per round for rounds of about `ROUND_SECONDS`, from the fastest of three calls."""
    took = []
    for _ in range(3):
        started = clock()
        call()
        took.append(clock() - started)
    return max(1, math.ceil(ROUND_SECONDS / max(min(took), 1e-9)))


def serve(commands: Iterator[str], reply: Callable[[dict[str, Any]], None]) -> None:
    import dqnbench

    reply(
        {
            "ready": {node: HELD.groups[node] for node in HELD.calls},
            "failed": HELD.failed,
            "skipped": HELD.skipped,
            "dqnbench": dqnbench.__file__,
            "pid": os.getpid(),
        }
    )
    for line in commands:
        command = json.loads(line)
        if command["op"] == "quit":
            return
        node = command["id"]
        call = HELD.calls[node]
        timer = command.get("timer", "auto")
        if timer == "auto":
            timer = "wall" if HELD.devices[node].startswith("cuda") else "cpu"
        clock = CLOCKS[timer]
        if node not in HELD.per_round:
            HELD.per_round[node] = calls_per_round(call, clock)
        best = timed_pass(call, HELD.per_round[node], float(command["seconds"]), float(command["factor"]), clock)
        reply({"id": node, "best_s": best, "per_round": HELD.per_round[node], "timer": timer})


class Plugin:
    """Collects the timed functions and serves once the last benchmark has run (its teardown not yet done)."""

    def __init__(self, commands: Iterator[str], reply: Callable[[dict[str, Any]], None]) -> None:
        self.commands, self.reply, self.served = commands, reply, False

    def _serve_once(self) -> None:
        if not self.served:
            self.served = True
            serve(self.commands, self.reply)

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed:
            HELD.failed[report.nodeid] = f"{report.when}: {report.longreprtext[-3000:]}"
            HELD.calls.pop(report.nodeid, None)
        elif report.skipped and report.when == "setup":
            HELD.skipped[report.nodeid] = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""

    @pytest.hookimpl(tryfirst=True)  # before pytest's own teardown, which ends the session fixtures last time
    def pytest_runtest_teardown(self, item: Any, nextitem: Any) -> None:
        if nextitem is None:
            self._serve_once()

    def pytest_sessionfinish(self) -> None:
        self._serve_once()  # nothing was collected, or collection failed: the driver still gets its answer


def main() -> int:
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != os.path.dirname(__file__)]
    command_fd, reply_fd, *pytest_args = sys.argv[1:]
    from pytest_benchmark.fixture import BenchmarkFixture

    BenchmarkFixture.__call__ = _keep  # type: ignore[method-assign,assignment]
    BenchmarkFixture.pedantic = _keep_pedantic  # type: ignore[method-assign,assignment]
    replies = os.fdopen(int(reply_fd), "w", buffering=1)

    def reply(message: dict[str, Any]) -> None:
        replies.write(json.dumps(message) + "\n")

    with os.fdopen(int(command_fd)) as commands:
        pytest.main(pytest_args, plugins=[Plugin(iter(commands.readline, ""), reply)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
