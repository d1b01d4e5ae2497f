"""The A/B gate (`dqnbench bench ab`): its decision on synthetic paired passes, its schedule, its slow-down
injection, its refusals, and (slow) the command end to end on this repository."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dqnbench.bench import ab, abworker
from dqnbench.bench.paired import ABVerdict, confirmed, decide, median_interval, pass_order, sign_rank

ROOT = Path(__file__).resolve().parents[1]
PASSES = 20


def _paired(rng: np.random.Generator, shift: float, noise: float, passes: int = PASSES) -> tuple[list[float], ...]:
    """Per-pass times of both sides: a host drift both share, each side's own noise, the candidate `shift` slower."""
    drift = np.exp(rng.normal(0.0, 0.2, passes))  # the host: 20 % from pass to pass, met by both sides
    baseline = 1e-3 * drift * np.exp(rng.normal(0.0, noise, passes))
    candidate = 1e-3 * (1 + shift) * drift * np.exp(rng.normal(0.0, noise, passes))
    return baseline.tolist(), candidate.tolist()


def test_sign_interval_ranks_match_the_binomial_table() -> None:
    # Hollander, Wolfe & Chicken, Table A.2 (95 % two-sided): n=6 -> 1, n=20 -> 6, n=30 -> 10.
    assert [sign_rank(n) for n in (5, 6, 20, 30)] == [None, 1, 6, 10]
    assert median_interval(range(1, 21)) == (6, 15)
    assert median_interval([1.0, 2.0]) == (-math.inf, math.inf)


def test_a_ten_percent_shift_is_detected_and_same_distribution_pairs_are_not() -> None:
    rng = np.random.default_rng(23)
    trials = 300
    detected = [decide(*_paired(rng, 0.10, 0.04), min_effect=0.05).verdict for _ in range(trials)]
    quiet = [decide(*_paired(rng, 0.0, 0.04), min_effect=0.05).verdict for _ in range(trials)]
    hit_rate = detected.count(ABVerdict.SLOWER) / trials
    false_alarms = sum(verdict is not ABVerdict.SAME for verdict in quiet)
    assert hit_rate >= 0.95, f"decide: +10% detected in {hit_rate:.0%} of {trials} synthetic A/Bs, expected >= 95%"
    assert false_alarms <= 3, f"decide: {false_alarms} of {trials} same-distribution A/Bs flagged, expected <= 3"


def _pair_offset_ab(rng: np.random.Generator, shift: float, offset_sd: float) -> tuple[list[float], ...]:
    """Passes of one worker pair whose candidate process runs `offset` off the baseline's for its whole life."""
    offset = rng.normal(0.0, offset_sd)
    return _paired(rng, (1 + shift) * (1 + offset) - 1, 0.02)


def test_a_verdict_stands_only_when_a_fresh_pair_repeats_it() -> None:
    slower = decide([1.0] * PASSES, [1.2 + 0.001 * i for i in range(PASSES)], min_effect=0.05)
    faster = decide([1.2 + 0.001 * i for i in range(PASSES)], [1.0] * PASSES, min_effect=0.05)
    same = decide([1.0] * PASSES, [1.0 + 0.001 * (i - 10) for i in range(PASSES)], min_effect=0.05)
    assert (slower.verdict, faster.verdict, same.verdict) == (ABVerdict.SLOWER, ABVerdict.FASTER, ABVerdict.SAME)
    assert confirmed(slower, slower).verdict is ABVerdict.SLOWER
    assert confirmed(slower, same) == same, "an unrepeated alarm is same, with the retry's figures"
    assert confirmed(slower, faster).verdict is ABVerdict.SAME
    assert confirmed(faster, faster).verdict is ABVerdict.FASTER
    assert confirmed(same, slower) == same, "a screen that said same is final: nothing was retried"
    with pytest.raises(ValueError, match="needs its retry"):
        confirmed(slower, None)


def test_a_fresh_pair_confirms_a_ten_percent_shift_and_quiets_process_offsets() -> None:
    # Each worker pair draws its own lasting offset (sd 2.5 %): the screen alone flags same code often, and more
    # passes would not help; a second, independent pair must repeat an alarm for it to stand. The price: a
    # real +10 % must pass twice (about 0.96 squared here).
    rng = np.random.default_rng(7)
    trials = 400

    def two_stage(shift: float) -> tuple[ABVerdict, ABVerdict]:
        screen = decide(*_pair_offset_ab(rng, shift, 0.025), min_effect=0.05)
        retry = decide(*_pair_offset_ab(rng, shift, 0.025), min_effect=0.05) if screen.verdict != "same" else None
        return screen.verdict, confirmed(screen, retry).verdict

    quiet = [two_stage(0.0) for _ in range(trials)]
    shifted = [two_stage(0.10) for _ in range(trials)]
    screen_alarms = sum(screen is not ABVerdict.SAME for screen, _ in quiet)
    final_alarms = sum(final is not ABVerdict.SAME for _, final in quiet)
    detected = sum(final is ABVerdict.SLOWER for _, final in shifted) / trials
    assert screen_alarms >= 10, f"the model should trouble a single pair: {screen_alarms} of {trials} flagged"
    assert final_alarms <= trials // 100, f"confirmed same-code alarms: {final_alarms} of {trials}, expected <= 1%"
    assert detected >= 0.9, f"confirmed +10% detections: {detected:.0%} of {trials}, expected >= 90%"


def test_the_minimum_effect_keeps_a_real_but_small_difference_same() -> None:
    baseline = [1.0] * PASSES
    candidate = [1.03 + 0.001 * i for i in range(PASSES)]  # consistently 3-5 % slower
    decision = decide(baseline, candidate, min_effect=0.05)
    assert decision.low > 1.0, decision
    assert decision.verdict is ABVerdict.SAME, f"a {decision.ratio:.3f} ratio under a 5% minimum effect: {decision}"
    assert decide(baseline, candidate, min_effect=0.02).verdict is ABVerdict.SLOWER


def test_faster_is_the_mirror_image() -> None:
    baseline, candidate = _paired(np.random.default_rng(1), 0.0, 0.02)
    decision = decide(candidate, baseline, min_effect=0.05)
    assert decision.verdict is ABVerdict.SAME
    assert decide([1.2 * t for t in baseline], baseline, min_effect=0.05).verdict is ABVerdict.FASTER


def test_decide_refuses_unpaired_passes() -> None:
    with pytest.raises(ValueError, match=r"baseline=3 passes, candidate=2 passes"):
        decide([1.0, 1.0, 1.0], [1.0, 1.0], min_effect=0.05)
    with pytest.raises(ValueError, match=r"min_effect=-0.1"):
        decide([1.0], [1.0], min_effect=-0.1)


def test_each_side_goes_first_equally_often() -> None:
    firsts = [pass_order(p, b)[0] for p in range(4) for b in range(3)]
    assert firsts.count("baseline") == firsts.count("candidate") == 6
    assert pass_order(0, 0) != pass_order(1, 0), "a benchmark's order must alternate from pass to pass"


class FakeWorker:
    """Answers like a worker: a fixed time per benchmark, scaled by the factor asked for."""

    def __init__(self, side: str, calls: list[tuple[str, str, float]]) -> None:
        self.side, self.calls = side, calls

    def time_pass(self, node: str, seconds: float, factor: float, timer: str = "auto") -> float:
        self.calls.append((self.side, node, factor))
        return 1e-3 * factor


def test_run_passes_interleaves_and_slows_the_candidate_only() -> None:
    calls: list[tuple[str, str, float]] = []
    workers = {side: FakeWorker(side, calls) for side in ab.SIDES}
    times = ab.run_passes(
        workers,
        ["a", "b"],
        passes=6,
        seconds=0.01,
        factor=ab.injected_factor([("a", 1.1)]),  # type: ignore[arg-type]
    )
    assert len(calls) == 2 * 2 * (6 + ab.WARMUP_PASSES)
    assert [side for side, _, _ in calls[:4]] == ["candidate", "baseline", "baseline", "candidate"]
    assert times["a"]["candidate"] == pytest.approx([1.1e-3] * 6)
    assert times["a"]["baseline"] == times["b"]["candidate"] == pytest.approx([1e-3] * 6)
    assert all(factor == 1.0 for side, _, factor in calls if side == "baseline")


def test_injection_parsing_and_matching() -> None:
    assert ab.parse_injection("test_optimize=1.10") == ("test_optimize", 1.10)
    for bad in ("test_optimize", "=1.1", "x=fast", "x=0.9"):
        with pytest.raises(ValueError, match="PATTERN=FACTOR with FACTOR >= 1"):
            ab.parse_injection(bad)
    factor = ab.injected_factor([("*optimize[cpu-ref*", 1.2), ("forward", 1.1)])
    assert factor("benchmarks/test_network_bench.py::test_optimize[cpu-reference]") == 1.2
    assert factor("benchmarks/test_network_bench.py::test_optimize[cpu-fast]") == 1.0
    assert factor("benchmarks/test_network_bench.py::test_forward[cpu-fast-b1]") == 1.1


def _work() -> float:
    return sum(i * i for i in range(2000))


class FakeClock:
    """A clock that a call advances by its `cost` and every reading by a tick (so a spin on it ends)."""

    def __init__(self) -> None:
        self.now, self.cost = 0.0, 1.0

    def __call__(self) -> float:
        self.now += 1e-4
        return self.now

    def call(self) -> None:
        self.now += self.cost


def test_an_injected_slowdown_is_that_factor_of_the_measured_call() -> None:
    clock = FakeClock()
    for cost in (1.0, 3.0):  # a longer call gets a proportionally longer spin, not a constant one
        clock.cost = cost
        plain = abworker.timed_pass(clock.call, 2, 0.0, 1.0, clock)
        slowed = abworker.timed_pass(clock.call, 2, 0.0, 1.25, clock)
        assert plain == pytest.approx(cost, rel=1e-3)
        assert slowed / plain == pytest.approx(1.25, rel=1e-3), f"timed_pass(factor=1.25) with a {cost} s call"


def test_an_injected_slowdown_scales_real_cpu_time() -> None:
    timer = time.process_time
    per_round = abworker.calls_per_round(_work, timer)
    # Interleaved pairs, as an A/B times them, so that the host's drift cancels in each pair's ratio.
    ratios = [
        abworker.timed_pass(_work, per_round, 0.01, 1.5, timer)
        / abworker.timed_pass(_work, per_round, 0.01, 1.0, timer)
        for _ in range(15)
    ]
    ratio = float(np.median(ratios))
    assert 1.3 < ratio < 1.75, (
        f"timed_pass(factor=1.5): slowed / plain = {ratio:.2f} (median of 15 pairs), expected 1.5"
    )


def _trees(tmp_path: Path, old: str, new: str) -> tuple[ab.Revision, ab.Revision]:
    revisions = []
    for name, deps in (("old", old), ("new", new)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "pyproject.toml").write_text(f"[project]\nname = 'x'\ndependencies = {deps}\n")
        revisions.append(ab.Revision(name, "0" * 40, tmp_path / name))
    return revisions[0], revisions[1]


def test_a_dependency_change_this_environment_cannot_serve_is_refused(tmp_path: Path) -> None:
    baseline, candidate = _trees(tmp_path, '["pytest>=8"]', '["pytest>=8", "pytest<1"]')
    with pytest.raises(ab.ABError, match=r"revision 'new', step 'dependencies'.*pytest<1 \(installed 9"):
        ab.check_dependencies(baseline, candidate)


def test_a_dependency_change_this_environment_satisfies_goes_on_with_a_note(tmp_path: Path) -> None:
    baseline, candidate = _trees(tmp_path, '["pytest>=8"]', '["pytest>=8,<99"]')
    note = ab.check_dependencies(baseline, candidate)
    assert note is not None and "pytest>=8,<99" in note and "satisfies both" in note
    assert ab.check_dependencies(baseline, baseline) is None


def test_options_refuse_too_few_passes() -> None:
    with pytest.raises(ValueError, match=r"--passes 5: need at least 6"):
        ab.Options(passes=5)
    with pytest.raises(ValueError, match=r"--timer 'fast'"):
        ab.Options(timer="fast")


def _dqnbench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy"}
    return subprocess.run(
        [sys.executable, "-m", "dqnbench.cli", "bench", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip


def test_an_unknown_revision_exits_2_naming_it_and_the_step(tmp_path: Path) -> None:
    result = _dqnbench("ab", "no-such-revision", "-k", "optimize", "--out", str(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "revision 'no-such-revision', step 'checkout'" in result.stderr
    assert not list(tmp_path.iterdir()), "nothing may be stored for a run that did not happen"


@pytest.mark.slow
def test_ab_runs_end_to_end_and_stores_both_sides(tmp_path: Path) -> None:
    # Twice as slow: no host makes that a coin toss, so the screen flags it and a fresh pair must confirm it.
    selection = ["-k", "test_optimize and cpu and reference", "--passes", "6", "--out", str(tmp_path)]
    done = _dqnbench("ab", "HEAD", "HEAD", *selection, "--inject-slowdown", "test_optimize=2")
    assert done.returncode == 1, f"bench ab HEAD HEAD exited {done.returncode}:\n{done.stdout}{done.stderr}"
    assert done.stdout.splitlines()[-1] == "ab: 1 slower, 0 faster, 0 same of 1 benchmarks", done.stdout
    assert "confirming with a fresh pair of workers" in done.stdout
    (stored,) = tmp_path.glob("*.json")
    result = json.loads(stored.read_text())
    bench = result["benchmarks"]["benchmarks/test_network_bench.py::test_optimize[cpu-reference]"]
    assert len(bench["baseline"]) == len(bench["candidate"]) == 6
    assert (bench["screen_verdict"], bench["verdict"]) == ("slower", "slower"), bench
    assert len(bench["confirm"]["baseline"]) == len(bench["confirm"]["candidate"]) == 6
    assert bench["confirm"]["ratio"] > 1.5, bench["confirm"]
    assert result["options"]["injections"] == [["test_optimize", 2.0]]
