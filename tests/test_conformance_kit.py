"""The conformance kit itself: adapter loading, skips, failure messages, golden data and the pytest plugin."""

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dqnbench.cli import main
from dqnbench.conformance import golden, plugin
from dqnbench.conformance.adapter import (
    REFERENCE,
    REFERENCE_SPEC,
    AdapterLoadError,
    DQNAdapter,
    TransitionBatch,
    load_adapter,
)
from dqnbench.conformance.checks import CHECKS, check_names, golden_transition_batch, run_all, run_check
from dqnbench.learner import collate
from dqnbench.nets import DQN
from dqnbench.policy import epsilon
from dqnbench.replay import ReplayMemory

REPO = Path(__file__).resolve().parents[1]


def done_instead_of_terminated(target_net, batch: TransitionBatch, gamma):
    """The classic bug: the legacy `done` (terminated or truncated) used as the bootstrap mask."""
    with torch.no_grad():
        best = target_net(batch.next_states).max(dim=1).values
    return batch.rewards + gamma * torch.where(batch.dones, torch.zeros_like(best), best)


def check_by_name(name):
    return next(c for c in CHECKS if c.name == name)


# --- loading adapters -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("dqnbench.conformance.adapter", r"has no attribute 'ADAPTER' \(the default object.*objects there are"),
        ("no_such_package.adapter:ADAPTER", r"module 'no_such_package\.adapter' could not be imported.*install"),
        ("dqnbench.conformance.adapter:MISSING", r"has no attribute 'MISSING'; the DQNAdapter objects there are"),
        ("dqnbench.conformance.adapter:PIECES", r"'PIECES' is a tuple, not a DQNAdapter; point it at"),
    ],
    ids=["no-colon-no-ADAPTER", "module-missing", "attribute-missing", "wrong-type"],
)
def test_load_adapter_errors_name_the_string_and_the_fix(spec, message):
    with pytest.raises(AdapterLoadError, match=message) as error:
        load_adapter(spec)
    assert repr(spec) in str(error.value)


def test_load_adapter_accepts_an_instance_or_a_factory():
    assert load_adapter(REFERENCE_SPEC) is REFERENCE
    module = type(sys)("conformance_factory_module")
    module.make = lambda: dataclasses.replace(REFERENCE, name="from a factory")
    sys.modules[module.__name__] = module
    try:
        assert load_adapter("conformance_factory_module:make").name == "from a factory"
    finally:
        del sys.modules[module.__name__]


def test_adapter_rejects_a_piece_that_is_not_callable():
    with pytest.raises(TypeError, match=r"DQNAdapter\(name='bad'\)\.epsilon is a float, not a callable"):
        DQNAdapter(name="bad", epsilon=0.5)  # type: ignore[arg-type]


def test_seed_batch_rejects_a_mask_of_the_wrong_shape():
    batch = golden_transition_batch()
    with pytest.raises(ValueError, match=r"expected a bool mask of shape \(11,\).*pass batch\.terminated"):
        batch.seed_batch(final=batch.terminated[:3])


# --- outcomes and messages ------------------------------------------------------------------------------


def test_missing_pieces_are_skipped_with_the_reason_never_passed():
    results = run_all(DQNAdapter(name="epsilon only", epsilon=epsilon))
    outcomes = {r.check: r.outcome for r in results}
    assert outcomes.pop("check_epsilon_schedule") == "passed"
    assert set(outcomes.values()) == {"skipped"}
    skipped = next(r for r in results if r.check == "check_bellman_targets")
    assert "epsilon only does not supply bellman_targets (DQNAdapter.bellman_targets is None)" in skipped.message


def test_a_check_needing_any_of_two_pieces_runs_with_one():
    adapter = DQNAdapter(name="select only", select_action=REFERENCE.select_action)
    assert run_check(adapter, check_by_name("check_acting_keeps_batchnorm_stats")).outcome == "passed"


class BatchSamplingMemory(ReplayMemory):
    """Samples collated batches instead of transitions: the other return types `sample` may have."""

    def __init__(self, capacity, seed, layout):
        super().__init__(capacity, seed)
        self.layout = layout

    def sample(self, batch_size):
        transitions = super().sample(batch_size)
        if self.layout == "seed":
            return collate(transitions)
        final = torch.tensor([t.next_state is None for t in transitions])
        return TransitionBatch(
            states=torch.cat([t.state for t in transitions]),
            actions=torch.cat([t.action for t in transitions]),
            rewards=torch.cat([t.reward for t in transitions]),
            next_states=torch.cat([t.state if t.next_state is None else t.next_state for t in transitions]),
            terminated=final,
            truncated=torch.zeros_like(final),
        )


@pytest.mark.parametrize("layout", ["seed", "transition_batch"])
def test_replay_checks_read_batches_in_either_layout(layout):
    adapter = DQNAdapter(name=layout, make_memory=lambda capacity, seed: BatchSamplingMemory(capacity, seed, layout))
    replay_checks = [name for name in check_names() if name.startswith("check_replay")]
    assert [r.message for r in run_all(adapter, replay_checks) if r.outcome != "passed"] == []


def test_truncation_bug_message_names_check_call_row_values_tolerance_and_cause():
    adapter = dataclasses.replace(REFERENCE, name="done bug", bellman_targets=done_instead_of_terminated)
    result = run_check(adapter, check_by_name("check_bellman_truncation_bootstraps"))
    assert result.outcome == "failed"
    message = result.message
    assert message.startswith("check_bellman_truncation_bootstraps: bellman_targets(probe_target, golden batch")
    assert "3 of 3 truncated rows differ beyond atol=1e-05, rtol=1e-05" in message
    assert "worst at index 0 (row 2, truncated): expected 1.475, got -1 (|diff| 2.48)" in message
    assert "likely cause: truncated transitions were not bootstrapped: was `done` used instead of `terminated`?" in (
        message
    )
    # Ordinary and terminated rows are right, so only the checks that look at truncated rows fail.
    assert run_check(adapter, check_by_name("check_bellman_terminal_masking")).outcome == "passed"


def test_an_implementation_that_raises_fails_naming_the_call_and_the_place():
    def broken(target_net, batch, gamma):
        raise KeyError("next_state")

    result = run_check(dataclasses.replace(REFERENCE, bellman_targets=broken), check_by_name("check_bellman_targets"))
    assert result.outcome == "failed"
    assert "bellman_targets(probe_target, golden batch, gamma=0.9): raised KeyError: 'next_state'" in result.message
    assert f"{__file__}:" in result.message and "in broken" in result.message


def test_undetached_targets_fail_the_gradient_check():
    def undetached(target_net, batch, gamma):
        best = target_net(batch.next_states).max(dim=1).values
        return batch.rewards + gamma * torch.where(batch.terminated, torch.zeros_like(best), best)

    result = run_check(
        dataclasses.replace(REFERENCE, bellman_targets=undetached), check_by_name("check_bellman_no_gradient")
    )
    assert result.outcome == "failed"
    assert "expected requires_grad=False" in result.message and "missing detach" in result.message


class _NanGradient(torch.autograd.Function):
    """Identity forward; a NaN gradient backward: the gradient check must fail it, not pass it by comparison."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))


class _NanBackwardDQN(DQN):
    def __init__(self, *args):
        super().__init__(*args)
        # Between the convolutions and the head: every convolution's parameters get a NaN gradient.
        self.features.register_forward_hook(lambda module, inputs, output: _NanGradient.apply(output))


@pytest.mark.parametrize("network", ["reference", "nan backward"])
def test_the_screen_difference_gradient_check_fails_nan_gradients(network):
    adapter = REFERENCE if network == "reference" else dataclasses.replace(REFERENCE, make_network=_NanBackwardDQN)
    result = run_check(adapter, check_by_name("check_network_gradients_on_screen_differences"))
    if network == "reference":
        assert result.outcome == "passed", result.message
    else:
        assert result.outcome == "failed" and "non-finite gradients in" in result.message, result.message


def test_check_names_are_unique_and_documented():
    assert len(set(check_names())) == len(CHECKS) >= 25
    assert all(c.name.startswith("check_") and c.summary for c in CHECKS)


# --- golden data ----------------------------------------------------------------------------------------


def test_regeneration_reproduces_the_shipped_golden_files(tmp_path, capsys):
    out = tmp_path / "golden"
    assert main(["golden", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(golden.FILES)
    assert golden.differences(golden.load(), golden.load(out)) == []
    # Never overwritten unless asked.
    (out / golden.EPSILON).write_text("{}")
    assert main(["golden", "--out", str(out)]) == 2
    assert "already exists and would be overwritten" in capsys.readouterr().err
    assert (out / golden.EPSILON).read_text() == "{}"


def test_golden_differences_name_the_array_and_the_index():
    shipped = golden.load()
    network = dict(shipped.network)
    network["eval_q"] = network["eval_q"].copy()
    network["eval_q"][3, 1] += 0.01
    problems = golden.differences(shipped, dataclasses.replace(shipped, network=network))
    assert len(problems) == 1 and problems[0].startswith("network['eval_q'] at (3, 1): expected")


def test_shipped_golden_data_is_small_and_mixes_episode_ends():
    assert sum((golden.GOLDEN_DIR / name).stat().st_size for name in golden.FILES) < 150_000
    bellman = golden.load().bellman
    terminated, truncated = bellman["terminated"], bellman["truncated"]
    assert (terminated & ~truncated).any() and (truncated & ~terminated).any() and (terminated & truncated).any()
    assert (~terminated & ~truncated).any()
    assert golden.load().screens["large_frame"].shape == (800, 1200, 3)


# --- the pytest plugin ----------------------------------------------------------------------------------


class FakeConfig:
    def __init__(self, **options):
        self.options = {"dqn_impl": None, "conformance_json": None} | options
        self.stash = pytest.Stash()

    def getoption(self, name):
        return self.options[name]


def test_plugin_defaults_to_the_reference_and_writes_nothing_unasked():
    config = FakeConfig()
    plugin.pytest_configure(config)  # type: ignore[arg-type]
    session = config.stash[plugin._SESSION]
    assert session.spec == REFERENCE_SPEC and session.adapter is REFERENCE and session.json_path is None


def test_plugin_refuses_to_overwrite_a_result_file(tmp_path):
    existing = tmp_path / "results.json"
    existing.write_text("keep me")
    with pytest.raises(pytest.UsageError, match=r"already exists and would be overwritten; pass a new path"):
        plugin.pytest_configure(FakeConfig(conformance_json=str(existing)))  # type: ignore[arg-type]
    assert existing.read_text() == "keep me"


def test_plugin_turns_a_bad_implementation_string_into_a_usage_error():
    with pytest.raises(pytest.UsageError, match=r"--dqn-impl='nowhere:X': module 'nowhere' could not be imported"):
        plugin.pytest_configure(FakeConfig(dqn_impl="nowhere:X"))  # type: ignore[arg-type]


def test_summary_table_fits_the_width_and_counts_outcomes():
    results = run_all(DQNAdapter(name="epsilon only", epsilon=epsilon))
    lines = plugin._summary_lines("epsilon only", results, width=100)
    assert len(lines) == len(CHECKS) + 2 and all(len(line) <= 100 for line in lines[:-1])
    assert lines[-1] == f"epsilon only: {len(CHECKS)} checks, 1 passed, 0 failed, {len(CHECKS) - 1} skipped"


USER_ADAPTER = """
    import torch
    from dqnbench.conformance.adapter import DQNAdapter
    from dqnbench.policy import epsilon


    def targets(target_net, batch, gamma):
        with torch.no_grad():
            best = target_net(batch.next_states).max(dim=1).values
        return batch.rewards + gamma * torch.where(batch.dones, torch.zeros_like(best), best)


    ADAPTER = DQNAdapter(name="user dqn", epsilon=epsilon, bellman_targets=targets)
"""


@pytest.mark.slow
def test_installed_kit_runs_outside_the_checkout_and_writes_the_json(tmp_path):
    """The documented command, run from a folder with no checkout: a user's adapter module beside it."""
    (tmp_path / "user_adapter.py").write_text(textwrap.dedent(USER_ADAPTER))
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [sys.executable, "-m", "pytest", "--pyargs", "dqnbench.conformance", "--dqn-impl=user_adapter:ADAPTER",
               f"--conformance-json={out}", "-p", "no:cacheprovider"]  # fmt: skip
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stdout + run.stderr  # 1: some checks failed
    assert REPO not in tmp_path.parents
    document = json.loads(out.read_text())
    assert document["schema"] == "dqnbench.conformance/1" and document["implementation"] == "user dqn"
    assert document["torch"] == torch.__version__
    assert dt.datetime.fromisoformat(document["created"]).tzinfo is not None
    outcomes = {r["check"]: r["outcome"] for r in document["results"]}
    assert list(outcomes) == check_names()
    assert outcomes["check_epsilon_schedule"] == outcomes["check_bellman_terminal_masking"] == "passed"
    assert outcomes["check_bellman_truncation_bootstraps"] == "failed"
    assert outcomes["check_replay_capacity"] == "skipped"
    assert all(isinstance(r["duration_s"], float) and r["message"] for r in document["results"])
    assert "dqnbench conformance: user dqn" in run.stdout
    assert "was `done` used instead of `terminated`?" in run.stdout
    assert f"user dqn: {len(CHECKS)} checks, " in run.stdout and f"conformance results written to {out}" in run.stdout


@pytest.mark.slow
def test_worked_example_of_a_users_own_dqn_passes_every_check():
    from dqnbench.conformance.example import ADAPTER

    assert [r.message for r in run_all(ADAPTER) if r.outcome != "passed"] == []
