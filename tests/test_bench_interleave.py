"""The interleaved A/B: the order of calls, the paired ratio and its interval, and the command line."""

from __future__ import annotations

import pytest

from dqnbench.bench import interleave


class FakeClock:
    """A clock that only the timed calls move, so the ratios are known exactly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def call(self, name: str, seconds: float):
        def run() -> None:
            self.calls.append(name)
            self.now += seconds

        return run


def test_calls_alternate_which_goes_first_after_the_warmup():
    clock = FakeClock()
    interleave.interleave(clock.call("A", 1.0), clock.call("B", 1.0), 4, warmup=1, timer=lambda: clock.now)
    assert clock.calls == ["A", "B", "A", "B", "B", "A", "A", "B", "B", "A"], clock.calls


def test_the_ratio_is_the_median_of_the_pairs_ratios_with_an_interval_around_it():
    clock = FakeClock()
    # The host speeds up 4x half way through: blocks of each would disagree, pairs do not.
    speed = iter([1.0] * 8 + [0.25] * 8 + [0.25] * 40)
    reference = clock.call("reference", 0.0)
    candidate = clock.call("candidate", 0.0)

    def slow_reference() -> None:
        reference()
        clock.now += 2.0 * next(speed)

    def fast_candidate() -> None:
        candidate()
        clock.now += 1.0 * next(speed)

    result = interleave.interleave(slow_reference, fast_candidate, 8, warmup=0, timer=lambda: clock.now)
    assert result.ratio == pytest.approx(0.5), result
    assert result.low <= 0.5 <= result.high, result
    assert sorted(set(result.reference)) == [0.5, 2.0], result.reference


def test_fewer_than_two_pairs_are_refused():
    with pytest.raises(ValueError, match=r"interleave\(pairs=1\): .* at least 2 pairs"):
        interleave.interleave(lambda: None, lambda: None, 1)


def test_an_unknown_candidate_is_refused_naming_the_choices(capsys):
    assert interleave.main(["--candidate", "fastest", "--pairs", "2"]) == 2
    assert "--candidate 'fastest': expected one of fast, fast-compiled, convolutions or" in capsys.readouterr().err


def test_the_fast_path_against_the_reference_end_to_end(capsys):
    assert interleave.main(["--candidate", "fast", "--operation", "optimize", "--pairs", "2"]) == 0
    output = capsys.readouterr().out
    assert "optimize on cpu" in output and "2 pairs" in output, output
    assert "fast ÷ reference: " in output, output


def test_the_convolution_floor_is_for_the_optimisation_step_only(capsys):
    assert interleave.main(["--candidate", "convolutions", "--operation", "train-step", "--pairs", "2"]) == 2
    assert "--candidate convolutions --operation train-step: the convolutions stand for the optimisation step" in (
        capsys.readouterr().err
    )


def test_the_convolution_floor_against_the_reference_end_to_end(capsys):
    assert interleave.main(["--candidate", "convolutions", "--pairs", "2"]) == 0
    output = capsys.readouterr().out
    assert "convolutions ÷ reference: " in output, output
    assert "no float32 implementation that keeps these convolution kernels" in output, output
