"""`dqnbench bench ab BASELINE [CANDIDATE]`: two revisions' benchmarks timed interleaved, and a verdict per benchmark.

Both revisions are checked out (`git worktree`, in a temporary folder removed afterwards; CANDIDATE defaults to
the working tree as it is). One worker process per revision (`dqnbench.bench.abworker`) runs that revision's
benchmark suite once to build every workload, then times single passes on demand. The driver walks the
benchmarks pass after pass, and in every pass times each benchmark on both sides back to back, alternating
which side goes first (`paired.pass_order`). A drift of the shared host then meets both sides alike, and the
per-pass ratios candidate / baseline carry the comparison (`dqnbench.bench.paired` decides from them).
Every benchmark that this screen finds slower or faster is then timed again by a fresh pair of workers holding
only the flagged benchmarks (`confirm_flagged`); its verdict stands only when the retry repeats it.

One Python environment serves both revisions. When their declared dependencies (`pyproject.toml`: dependencies
and optional dependencies) differ, the run goes on only if this environment satisfies both sides' requirements
(an optional one binds only when installed), and says so; otherwise it is refused, naming what is unmet.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from dqnbench.bench import abworker
from dqnbench.bench.compare import Thresholds
from dqnbench.bench.paired import ABVerdict, Decision, confirmed, decide, pass_order

SIDES = ("baseline", "candidate")
INSTALLED_SOURCE = Path(abworker.__file__).resolve().parents[2]
"""The `reference/` folder this dqnbench is imported from."""
WORKTREE = "worktree"
"""The CANDIDATE that means the working tree as it is, uncommitted changes included (the default)."""
DEFAULT_PASSES = 20
DEFAULT_PASS_SECONDS = 0.1
WARMUP_PASSES = 1
TIMERS = ("auto", "cpu", "wall")
"""`auto`: CPU time of the worker for CPU benchmarks, elapsed time for CUDA ones (`abworker` says why)."""
WORKER_ENV = {
    "SDL_VIDEODRIVER": "dummy",
    "PYTHONHASHSEED": "0",
    # As `tox -e bench` sets them, read by glibc at start-up (tox.ini, [bench]).
    "MALLOC_MMAP_THRESHOLD_": "33554432",
    "MALLOC_TRIM_THRESHOLD_": "1073741824",
}


class ABError(Exception):
    """A revision that cannot be compared: the message names the revision and the step that failed."""

    def __init__(self, revision: str, step: str, detail: str) -> None:
        super().__init__(f"revision {revision!r}, step {step!r}: {detail}")
        self.revision, self.step = revision, step


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or f"git {' '.join(args)} exited {done.returncode}")
    return done.stdout.strip()


@dataclass
class Revision:
    """A revision as asked (`spec`), the commit it names (None for the working tree) and where it is checked out."""

    spec: str
    commit: str | None
    tree: Path

    @property
    def label(self) -> str:
        return f"{self.spec} ({self.commit[:8]})" if self.commit else f"{self.spec} (working tree)"


@contextlib.contextmanager
def checked_out(root: Path, specs: Sequence[str]) -> Iterator[list[Revision]]:
    """The revisions `specs` checked out as detached worktrees of the repository at `root` (removed afterwards)."""
    scratch = Path(tempfile.mkdtemp(prefix="dqnbench-ab-"))
    made: list[Path] = []
    try:
        revisions = []
        for index, spec in enumerate(specs):
            if spec == WORKTREE:
                revisions.append(Revision(spec, None, root))
                continue
            try:
                commit = git(root, "rev-parse", "--verify", f"{spec}^{{commit}}")
                tree = scratch / f"{SIDES[index]}-{commit[:12]}"
                git(root, "worktree", "add", "--detach", str(tree), commit)
            except RuntimeError as error:
                raise ABError(spec, "checkout", f"{error}; name a commit, branch or tag of {root}") from error
            made.append(tree)
            revisions.append(Revision(spec, commit, tree))
        yield revisions
    finally:
        for tree in made:
            with contextlib.suppress(RuntimeError):
                git(root, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(scratch, ignore_errors=True)


def declared_dependencies(tree: Path) -> dict[str, list[str]]:
    """What `pyproject.toml` in `tree` asks of the environment: requirement strings by where they are declared."""
    project = tomllib.loads((tree / "pyproject.toml").read_text()).get("project", {})
    declared = {"dependencies": sorted(project.get("dependencies", []))}
    for extra, requirements in project.get("optional-dependencies", {}).items():
        declared[f"optional-dependencies.{extra}"] = sorted(requirements)
    return declared


def unmet(requirement: str, *, optional: bool) -> str | None:
    """Why this environment does not satisfy `requirement` (an optional one only binds when installed); None if it
    does."""
    wanted = Requirement(requirement)
    if wanted.marker is not None and not wanted.marker.evaluate():
        return None
    try:
        installed = importlib.metadata.version(wanted.name)
    except importlib.metadata.PackageNotFoundError:
        return None if optional else f"{requirement} (not installed)"
    return None if wanted.specifier.contains(installed, prereleases=True) else f"{requirement} (installed {installed})"


def check_dependencies(baseline: Revision, candidate: Revision) -> str | None:
    """Revisions whose declared dependencies differ share this environment only if it satisfies both; refuse them
    otherwise (`ABError` naming what is unmet). A note on what differs, or None when nothing does."""
    before, after = declared_dependencies(baseline.tree), declared_dependencies(candidate.tree)
    changed = {
        (where, requirement)
        for where in set(before) | set(after)
        for requirement in set(before.get(where, [])) ^ set(after.get(where, []))
    }
    if not changed:
        return None
    problems = sorted(
        {why for where, requirement in changed if (why := unmet(requirement, optional=where != "dependencies"))}
    )
    listing = "; ".join(f"{where}: {requirement}" for where, requirement in sorted(changed))
    if problems:
        raise ABError(
            candidate.spec,
            "dependencies",
            f"its pyproject.toml declares other dependencies than {baseline.label}'s ({listing}) and this "
            f"environment does not satisfy both: {', '.join(problems)}; install each revision into its own "
            "environment, store a run of each (`dqnbench bench run`, `dqnbench bench store`) and compare them "
            "with `dqnbench bench compare`",
        )
    return f"the revisions declare different dependencies ({listing}); this environment satisfies both"


class Worker:
    """A worker process holding one revision's benchmarks (`dqnbench.bench.abworker`), driven over two pipes."""

    def __init__(self, revision: Revision, pytest_args: Sequence[str], log: Path) -> None:
        self.revision, self.log = revision, log
        command_read, command_write = os.pipe()
        reply_read, reply_write = os.pipe()
        env = {**os.environ, **WORKER_ENV}
        source = (revision.tree / "reference").resolve()
        # The installed tree is importable already; put on PYTHONPATH, a stale *.egg-info beside its sources (an
        # old build) would shadow the installed metadata, and with it the implementations' entry points.
        if source != INSTALLED_SOURCE:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, abworker.__file__, str(command_read), str(reply_write), *pytest_args],
                cwd=revision.tree,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                pass_fds=(command_read, reply_write),
            )
        os.close(command_read)
        os.close(reply_write)
        self.commands = os.fdopen(command_write, "w", buffering=1)
        self.replies = os.fdopen(reply_read)

    def receive(self, step: str) -> dict[str, Any]:
        line = self.replies.readline()
        if not line:
            self.process.wait()
            tail = self.log.read_text(errors="replace")[-4000:]
            raise ABError(
                self.revision.spec,
                step,
                f"its worker exited (status {self.process.returncode}) without answering; its output ends:\n{tail}",
            )
        return dict(json.loads(line))

    def time_pass(self, node: str, seconds: float, factor: float, timer: str = "auto") -> float:
        command = {"op": "time", "id": node, "seconds": seconds, "factor": factor, "timer": timer}
        self.commands.write(json.dumps(command) + "\n")
        return float(self.receive("time a pass")["best_s"])

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.commands.write(json.dumps({"op": "quit"}) + "\n")
            self.commands.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.replies.close()


def expected_module(revision: Revision) -> Path:
    return (revision.tree / "reference" / "dqnbench" / "__init__.py").resolve()


@dataclass
class Ready:
    """Both workers started: the benchmarks they both hold, in the baseline's order, and what the rest did."""

    workers: dict[str, Worker]
    benchmarks: list[str]
    groups: dict[str, str | None]
    only_one: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def matched(workers: dict[str, Worker]) -> Ready:
    """The workers' first answers checked and their benchmarks matched (started together, their set-ups overlap)."""
    try:
        hello = {side: worker.receive("set up the benchmarks") for side, worker in workers.items()}
        for side, worker in workers.items():
            found, expected = Path(hello[side]["dqnbench"]).resolve(), expected_module(worker.revision)
            if found != expected:
                raise ABError(
                    worker.revision.spec,
                    "import dqnbench",
                    f"the worker imported {found}, not the revision's {expected}; is PYTHONPATH or a .pth file "
                    "forcing another dqnbench?",
                )
            if hello[side]["failed"]:
                failures = "\n".join(f"{node}: {why}" for node, why in hello[side]["failed"].items())
                raise ABError(worker.revision.spec, "run the benchmarks once", f"failed:\n{failures}")
        base, cand = hello["baseline"]["ready"], hello["candidate"]["ready"]
        both = [node for node in base if node in cand]
        only_one = {node: "baseline only" for node in base if node not in cand}
        only_one.update({node: "candidate only" for node in cand if node not in base})
        skipped = {**hello["candidate"]["skipped"], **hello["baseline"]["skipped"]}
        return Ready(workers, both, {**cand, **base}, only_one, skipped)
    except BaseException:
        for worker in workers.values():
            worker.close()
        raise


def run_passes(
    workers: dict[str, Worker],
    benchmarks: Sequence[str],
    *,
    passes: int,
    seconds: float,
    factor: Callable[[str], float] = lambda node: 1.0,
    timer: str = "auto",
    on_pass: Callable[[int], None] = lambda index: None,
) -> dict[str, dict[str, list[float]]]:
    """Per benchmark and side, the per-call time of each timed pass (after `WARMUP_PASSES` untimed ones)."""
    times: dict[str, dict[str, list[float]]] = {node: {side: [] for side in SIDES} for node in benchmarks}
    for index in range(-WARMUP_PASSES, passes):
        on_pass(index)
        for position, node in enumerate(benchmarks):
            for side in pass_order(index, position):
                slowdown = factor(node) if side == "candidate" else 1.0
                best = workers[side].time_pass(node, seconds, slowdown, timer)
                if index >= 0:
                    times[node][side].append(best)
    return times


def parse_injection(text: str) -> tuple[str, float]:
    """`PATTERN=FACTOR` of `--inject-slowdown`, checked."""
    pattern, sep, value = text.rpartition("=")
    try:
        factor = float(value)
    except ValueError:
        factor = 0.0
    if not sep or not pattern or factor < 1.0:
        raise ValueError(
            f"--inject-slowdown {text!r}: expected PATTERN=FACTOR with FACTOR >= 1, e.g. test_optimize=1.10 "
            "(the candidate's benchmarks whose node id contains, or fnmatch-matches, PATTERN run 10% slower)"
        )
    return pattern, factor


def injected_factor(injections: Sequence[tuple[str, float]]) -> Callable[[str], float]:
    """The slow-down of a node id: the first matching pattern's factor (substring, or fnmatch with * ? [), else 1."""

    def factor(node: str) -> float:
        for pattern, value in injections:
            wild = any(char in pattern for char in "*?[")
            if fnmatch.fnmatchcase(node, pattern) if wild else pattern in node:
                return value
        return 1.0

    return factor


def min_effect(thresholds: Thresholds, node: str, group: str | None) -> float:
    name = node.rsplit("::", 1)[-1]
    return thresholds.for_benchmark({"group": group, "name": name, "fullname": node})


def decisions(
    times: dict[str, dict[str, list[float]]], groups: dict[str, str | None], thresholds: Thresholds
) -> dict[str, Decision]:
    return {
        node: decide(sides["baseline"], sides["candidate"], min_effect(thresholds, node, groups.get(node)))
        for node, sides in times.items()
    }


def summary_line(found: dict[str, Decision]) -> str:
    count = {verdict: sum(d.verdict is verdict for d in found.values()) for verdict in ABVerdict}
    return (
        f"ab: {count[ABVerdict.SLOWER]} slower, {count[ABVerdict.FASTER]} faster, {count[ABVerdict.SAME]} same "
        f"of {len(found)} benchmarks"
    )


def format_decisions(found: dict[str, Decision]) -> str:
    width = max((len(node) for node in found), default=0)
    return "\n".join(f"{node:{width}}  {d.verdict.value:6}  {d.describe()}" for node, d in found.items())


def decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "ratio": decision.ratio,
        "ci95": [decision.low, decision.high],
        "min_effect": decision.min_effect,
        "verdict": decision.verdict.value,
        "passes": decision.passes,
    }


def write_new(directory: Path, stem: str, content: dict[str, Any]) -> Path:
    """`content` as JSON in a new file of `directory` (a numbered name when `stem` exists: nothing is replaced)."""
    directory.mkdir(parents=True, exist_ok=True)
    for attempt in range(1000):
        path = directory / (f"{stem}.json" if attempt == 0 else f"{stem}-{attempt}.json")
        try:
            with path.open("x") as out:
                json.dump(content, out, indent=1)
                out.write("\n")
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{directory}: 1000 files named {stem}*.json already; move some away")


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def load_sample() -> list[float]:
    return list(os.getloadavg())


def record_pass(loads: list[dict[str, Any]], started: float) -> Callable[[int], None]:
    """An `on_pass` that samples the load average at each pass (stored with the run: how busy the host was)."""

    def sample(index: int) -> None:
        loads.append({"pass": index, "t_s": round(time.monotonic() - started, 2), "loadavg": load_sample()})

    return sample


def worker_args(
    tree: Path, *, keyword: str | None, device: str | None, threads: int, nodes: Sequence[str] = ()
) -> list[str]:
    """pytest arguments of a worker: the revision's suite, selected and configured as `pytest benchmarks` would be;
    with `nodes` (ids relative to the checkout), only those benchmarks."""
    targets = [str(tree / node) for node in nodes] or [str(tree / "benchmarks")]
    args = [*targets, "-q", "-p", "no:cacheprovider", "--benchmark-disable", f"--threads={threads}"]
    if keyword and not nodes:
        args += ["-k", keyword]
    if device:
        args += [f"--device={device}"]
    return args


@dataclass
class Confirmation:
    """The outcome of `confirm_flagged`: every benchmark's final decision, and the retry's passes and decisions of
    those the screen flagged."""

    final: dict[str, Decision]
    times: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    retried: dict[str, Decision] = field(default_factory=dict)


def confirm_flagged(
    revisions: dict[str, Revision],
    screen: dict[str, Decision],
    groups: dict[str, str | None],
    thresholds: Thresholds,
    *,
    device: str | None,
    threads: int,
    passes: int,
    seconds: float,
    logs: Path,
    factor: Callable[[str], float] = lambda node: 1.0,
    timer: str = "auto",
    on_pass: Callable[[int], None] = lambda index: None,
) -> Confirmation:
    """Re-time the benchmarks the screen found slower or faster with a fresh pair of workers holding only those
    (on `device`, with `threads`; their output in a new folder `logs`), as many passes again, and keep a verdict
    only where the retry repeats it."""
    flagged = [node for node, decision in screen.items() if decision.verdict is not ABVerdict.SAME]
    if not flagged:
        return Confirmation(dict(screen))
    logs.mkdir(parents=True, exist_ok=True)
    workers = {
        side: Worker(rev, worker_args(rev.tree, keyword=None, device=device, threads=threads, nodes=flagged),
                     logs / f"{side}.log")
        for side, rev in revisions.items()
    }  # fmt: skip
    ready = matched(workers)
    try:
        missing = [node for node in flagged if node not in ready.benchmarks]
        if missing:
            raise ABError(
                revisions["candidate"].spec, "confirm", f"the fresh workers do not hold {missing} "
                f"(skipped: {ready.skipped or 'none'}; one side only: {ready.only_one or 'none'})",
            )  # fmt: skip
        times = run_passes(
            workers, flagged, passes=passes, seconds=seconds, factor=factor, timer=timer, on_pass=on_pass
        )
    finally:
        for worker in workers.values():
            worker.close()
    retried = decisions(times, groups, thresholds)
    final = {node: confirmed(decision, retried.get(node)) for node, decision in screen.items()}
    return Confirmation(final, times, retried)


def benchmark_json(
    node: str, group: str | None, times: dict[str, list[float]], screen: Decision, confirmation: Confirmation
) -> dict[str, Any]:
    """One benchmark of a stored A/B run: the screen's passes and decision, its final `verdict`, and (when the
    screen flagged it) the retry's passes and decision under `confirm`."""
    entry: dict[str, Any] = {"group": group, **times, **decision_json(screen), "screen_verdict": screen.verdict.value}
    entry["verdict"] = confirmation.final[node].verdict.value
    if node in confirmation.retried:
        entry["confirm"] = {**confirmation.times[node], **decision_json(confirmation.retried[node])}
    return entry


@dataclass(frozen=True)
class Options:
    """What one A/B run times and how (the `dqnbench bench ab` options)."""

    keyword: str | None = None
    device: str | None = None
    threads: int = 1
    passes: int = DEFAULT_PASSES
    pass_seconds: float = DEFAULT_PASS_SECONDS
    injections: tuple[tuple[str, float], ...] = ()
    timer: str = "auto"

    def __post_init__(self) -> None:
        if self.timer not in TIMERS:
            raise ValueError(f"--timer {self.timer!r}: choose from {', '.join(TIMERS)}")
        if self.passes < 6:
            # Fewer than 6 paired ratios admit no 95 % sign-test interval (paired.sign_rank): no verdict could fail.
            raise ValueError(f"--passes {self.passes}: need at least 6 for a 95% interval; 20 is the default")
        if not 0 < self.pass_seconds <= 10:
            raise ValueError(f"--pass-seconds {self.pass_seconds}: expected a duration such as 0.1 (seconds)")
        if self.threads < 1:
            raise ValueError(f"--threads {self.threads}: need at least 1")


def run_ab(root: Path, specs: tuple[str, str], options: Options, thresholds: Thresholds, out: Path) -> int:
    """Check out, time, decide, store and print; the exit status (0 no regression, 1 a regression)."""
    started = time.monotonic()
    loads: list[dict[str, Any]] = []
    with checked_out(root, specs) as (baseline, candidate):
        note = check_dependencies(baseline, candidate)
        if note:
            print(f"ab: note: {note}", flush=True)
        revisions = {"baseline": baseline, "candidate": candidate}
        print(f"ab: baseline {baseline.label}, candidate {candidate.label}; setting up both workers", flush=True)
        logs = Path(tempfile.mkdtemp(prefix="dqnbench-ab-logs-"))
        args = {side: worker_args(rev.tree, keyword=options.keyword, device=options.device, threads=options.threads)
                for side, rev in revisions.items()}  # fmt: skip
        workers = {side: Worker(revisions[side], args[side], logs / f"{side}.log") for side in SIDES}
        ready = matched(workers)
        try:
            if not ready.benchmarks:
                raise ABError(
                    candidate.spec,
                    "select benchmarks",
                    f"no benchmark runs on both sides (-k {options.keyword!r}, "
                    f"--device {options.device!r}; skipped: {ready.skipped or 'none'}; one side only: "
                    f"{ready.only_one or 'none'})",
                )
            print(f"ab: timing {len(ready.benchmarks)} benchmarks in {options.passes} interleaved passes", flush=True)
            times = run_passes(
                workers, ready.benchmarks, passes=options.passes, seconds=options.pass_seconds,
                factor=injected_factor(options.injections), timer=options.timer, on_pass=record_pass(loads, started),
            )  # fmt: skip
        finally:
            for worker in workers.values():
                worker.close()
        screen = decisions(times, ready.groups, thresholds)
        flagged = sum(decision.verdict is not ABVerdict.SAME for decision in screen.values())
        if flagged:
            print(f"ab: {flagged} flagged; confirming with a fresh pair of workers", flush=True)
        confirmation = confirm_flagged(
            revisions, screen, ready.groups, thresholds,
            device=options.device, threads=options.threads,
            passes=options.passes, seconds=options.pass_seconds, logs=logs / "confirm",
            factor=injected_factor(options.injections), timer=options.timer, on_pass=record_pass(loads, started),
        )  # fmt: skip
        shutil.rmtree(logs, ignore_errors=True)
    found = confirmation.final
    print(format_decisions(found))
    for node, why in {**ready.skipped, **ready.only_one}.items():
        print(f"not compared: {node} ({why})")
    stored = write_new(
        out, f"{timestamp()}-{(baseline.commit or 'worktree')[:8]}-vs-{(candidate.commit or 'worktree')[:8]}",
        {
            "kind": "dqnbench-ab",
            "baseline": {"spec": baseline.spec, "commit": baseline.commit},
            "candidate": {"spec": candidate.spec, "commit": candidate.commit},
            "options": {**options.__dict__, "injections": [list(item) for item in options.injections]},
            "wall_s": round(time.monotonic() - started, 1),
            "load": loads,
            "benchmarks": {node: benchmark_json(node, ready.groups.get(node), times[node], screen[node], confirmation)
                           for node in ready.benchmarks},
            "not_compared": {**ready.skipped, **ready.only_one},
        },
    )  # fmt: skip
    print(f"stored: {stored}")
    slower = {node: d for node, d in found.items() if d.verdict is ABVerdict.SLOWER}
    for node, decision in slower.items():
        print(f"REGRESSION: {node}: candidate / baseline {decision.describe()}")
    print(summary_line(found))
    return 1 if slower else 0
