"""DQNConfig.learning_rate_final: the linear learning-rate schedule, its validation, and that training applies it."""

import pytest
import torch

from dqnbench.cli import build_parser, config_from_args
from dqnbench.config import SEED_CONFIG, TUNED_CONFIG
from dqnbench.train import learning_rate_at, set_learning_rate, train

# Small enough that a few dozen optimisation steps take about a second.
SMALL = {"batch_size": 4, "learning_starts": 4, "memory_capacity": 200, "device": "cpu", "episodes": 1000}


def test_without_a_final_rate_the_rate_is_constant():
    constant = TUNED_CONFIG.replace(learning_rate_final=None)
    for step in (0, 1, 75_000, 150_000, 10**9):
        assert learning_rate_at(step, constant) == constant.learning_rate
        assert learning_rate_at(step, SEED_CONFIG) == SEED_CONFIG.learning_rate


def test_the_tuned_configuration_anneals_to_its_final_rate():
    assert learning_rate_at(0, TUNED_CONFIG) == TUNED_CONFIG.learning_rate
    end = learning_rate_at(TUNED_CONFIG.max_env_steps or 0, TUNED_CONFIG)
    assert end == pytest.approx(TUNED_CONFIG.learning_rate_final, rel=1e-12), f"rate at the end {end}"


def test_the_rate_falls_linearly_from_start_to_final():
    config = TUNED_CONFIG.replace(learning_rate=1e-4, learning_rate_final=1e-5, max_env_steps=150_000)
    assert learning_rate_at(0, config) == pytest.approx(1e-4)
    assert learning_rate_at(75_000, config) == pytest.approx(5.5e-5)
    assert learning_rate_at(50_000, config) == pytest.approx(7e-5)
    assert learning_rate_at(150_000, config) == pytest.approx(1e-5)
    # Past the horizon (an interrupted-and-longer run cannot happen, but the function stays total) it holds.
    assert learning_rate_at(300_000, config) == pytest.approx(1e-5)


def test_the_rate_may_rise_or_fall_to_zero():
    up = TUNED_CONFIG.replace(learning_rate=1e-4, learning_rate_final=3e-4, max_env_steps=100)
    assert learning_rate_at(50, up) == pytest.approx(2e-4)
    to_zero = TUNED_CONFIG.replace(learning_rate=1e-4, learning_rate_final=0.0, max_env_steps=100)
    assert learning_rate_at(100, to_zero) == 0.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"learning_rate_final": -1e-5, "max_env_steps": 9}, r"learning_rate_final must be >= 0 or None, got -1e-05"),
        ({"learning_rate_final": 1e-5}, r"learning_rate_final=1e-05 needs max_env_steps.*set max_env_steps"),
        ({"learning_rate_final": "small", "max_env_steps": 1000}, r"learning_rate_final must be float or None"),
    ],
    ids=["negative", "no-horizon", "not-a-number"],
)
def test_bad_final_rates_are_rejected_naming_the_field_and_the_fix(changes, message):
    with pytest.raises(ValueError, match=message):
        SEED_CONFIG.replace(**changes)


def test_the_option_is_generated_and_parsed():
    args = build_parser().parse_args(["train", "--config", "tuned", "--learning-rate-final", "1e-5"])
    assert config_from_args(args) == TUNED_CONFIG.replace(learning_rate_final=1e-5)
    args = build_parser().parse_args(["train", "--config", "tuned", "--learning-rate-final", "none"])
    assert config_from_args(args) == TUNED_CONFIG


def _final_lrs(out) -> list[float]:
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    return [group["lr"] for group in checkpoint["optimizer"]["param_groups"]]


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_training_sets_the_optimizers_rate_from_the_step_count(tmp_path, monkeypatch, impl):
    config = SEED_CONFIG.replace(
        **SMALL, impl=impl, max_env_steps=40, learning_rate=1e-2, learning_rate_final=1e-3, out=tmp_path / "run"
    )
    rates: list[float] = []

    def spy(optimizer, lr):
        rates.append(lr)
        set_learning_rate(optimizer, lr)

    monkeypatch.setattr("dqnbench.train.set_learning_rate", spy)
    result = train(config, progress=False)
    assert result.total_steps == 40
    # One update per step from step learning_starts on, each at the rate of its own step.
    assert rates == pytest.approx([learning_rate_at(step, config) for step in range(40 - len(rates) + 1, 41)])
    assert rates == sorted(rates, reverse=True)
    assert rates[0] < 1e-2
    # The last update ran at step 40 = max_env_steps: the optimiser ends at the final rate.
    assert _final_lrs(tmp_path / "run") == pytest.approx([1e-3])


def test_without_a_final_rate_training_never_touches_the_rate(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("dqnbench.train.set_learning_rate", lambda optimizer, lr: calls.append(lr))
    config = SEED_CONFIG.replace(**SMALL, max_env_steps=20, out=tmp_path / "run")
    train(config, progress=False)
    assert calls == []
    assert _final_lrs(tmp_path / "run") == [SEED_CONFIG.learning_rate]
