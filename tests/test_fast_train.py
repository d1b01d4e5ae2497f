"""`dqnbench train --impl fast` runs the reference's loop; its exact subset repeats the reference's episodes."""

import csv

import pytest
import torch

import dqnbench.train
from dqnbench.config import DQNConfig
from dqnbench.fast import EXACT_PARTS, FAST_PARTS
from dqnbench.learner import make_target
from dqnbench.parts import training_parts
from dqnbench.train import make_optimizer, train
from support import assert_same_state

# 40 steps, optimising from the fifth on: a few seconds per run.
SMALL = {
    "batch_size": 4,
    "learning_starts": 4,
    "memory_capacity": 200,
    "device": "cpu",
    "episodes": 5,
    "max_env_steps": 40,
}


def _rows(out) -> list[dict[str, str]]:
    with open(out / "durations.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("state", ["difference", "stack"])
def test_exact_fast_parts_repeat_the_reference_run(tmp_path, monkeypatch, state):
    config = DQNConfig(**SMALL, state=state, stack_frames=2)
    reference = train(config.replace(out=tmp_path / "reference"), progress=False)
    monkeypatch.setattr(dqnbench.train, "training_parts", lambda impl: EXACT_PARTS)
    exact = train(config.replace(out=tmp_path / "exact", impl="fast"), progress=False)
    assert exact.durations == reference.durations, f"durations: reference {reference.durations}, fast {exact.durations}"
    for got, expected in zip(_rows(tmp_path / "exact"), _rows(tmp_path / "reference"), strict=True):
        assert got["mean_loss"] == expected["mean_loss"], f"episode {got['episode']}: mean loss {got} vs {expected}"
    checkpoints = [torch.load(tmp_path / name / "checkpoint.pt", weights_only=True) for name in ("reference", "exact")]
    assert_same_state(checkpoints[0]["policy"], checkpoints[1]["policy"], "policy after training")


def test_impl_fast_trains_with_the_fast_parts(tmp_path):
    assert training_parts("fast") is FAST_PARTS
    result = train(DQNConfig(**SMALL, impl="fast", out=tmp_path / "fast"), progress=False)
    rows = _rows(tmp_path / "fast")
    assert [int(r["duration"]) for r in rows] == result.durations, "durations.csv differs from the result"
    assert result.total_steps == 40, f"{result.total_steps} steps, expected max_env_steps=40"
    assert all(r["mean_loss"] != "nan" for r in rows[1:]), f"no optimisation step ran: {rows}"


@pytest.mark.parametrize("compile_networks", [False, True], ids=["eager", "compiled"])
def test_compile_option_reaches_the_fast_step(compile_networks):
    config = DQNConfig(**SMALL, impl="fast", compile=compile_networks)
    policy = FAST_PARTS.make_network(40, 90, 2, 3)
    target = make_target(policy)
    step = FAST_PARTS.make_optimize(policy, target, make_optimizer(policy.parameters(), config), config)
    runs_compiled = isinstance(step.args[0], torch._dynamo.eval_frame.OptimizedModule)
    folded = step.args[1]
    assert runs_compiled == compile_networks, f"compile={compile_networks}: policy step is {type(step.args[0])}"
    folded(torch.rand(2, 3, 40, 90))  # builds the folded copy (no compilation happens for the eager case)
    assert isinstance(folded.folded, torch._dynamo.eval_frame.OptimizedModule) == compile_networks, (
        f"compile={compile_networks}: folded target runs {type(folded.folded)}"
    )
