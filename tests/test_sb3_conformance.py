"""Stable-Baselines3 as a real peer: the conformance kit run against SB3's own DQN pieces.

The expected outcome of every check is pinned, with a fragment of the message that shows why SB3 differs,
so that a change in SB3's behaviour (or in the kit) is noticed here. README.md (Stable-Baselines3 as a peer)
explains each row.
"""

import importlib
import sys

import pytest

from dqnbench.conformance.adapter import AdapterLoadError, load_adapter
from dqnbench.conformance.checks import CHECKS, CheckResult, run_all

SB3_MISSING = "Stable-Baselines3 is not installed: pip install 'dqnbench[sb3]'"

EXPECTED: dict[str, tuple[str, str]] = {
    # check: (outcome, fragment of its message)
    "check_conv2d_size_out": ("skipped", "does not supply conv2d_size_out"),
    "check_network_output_shapes": ("passed", ""),
    "check_network_golden_outputs": ("passed", ""),
    "check_network_batchnorm_statistics": ("passed", ""),
    # SB3 casts observations to float32 before its extractor, so no float64 copy of its network can run
    "check_network_gradients_on_screen_differences": ("skipped", "the oracle is a float64 copy of the network"),
    "check_bellman_targets": ("passed", ""),
    "check_bellman_terminal_masking": ("passed", ""),
    "check_bellman_truncation_bootstraps": ("passed", ""),
    "check_bellman_no_gradient": ("passed", ""),
    "check_bellman_all_final_batch": ("passed", ""),
    "check_replay_capacity": ("passed", ""),
    # SB3 samples indices with replacement (np.random.randint), so one draw repeats some transitions
    # judged on what the memory holds, whatever the sampling: SB3's buffer keeps the newest transitions
    "check_replay_eviction_order": ("passed", ""),
    "check_replay_cycling": ("passed", ""),
    "check_replay_uniform_sampling": ("passed", ""),
    "check_replay_distinct_samples": ("failed", "sampling with replacement"),
    "check_replay_no_aliasing": ("passed", ""),
    "check_replay_seeded_sampling": ("failed", "global RNG"),
    # linear schedule, and the first action uses the initial exploration_rate of 0.0
    "check_epsilon_schedule": ("failed", "steps_done=100"),
    "check_epsilon_trace": ("failed", "expected 0.9, got 0 "),
    "check_greedy_action_argmax": ("passed", ""),
    # BasePolicy.predict calls set_training_mode(False) and does not restore the mode
    "check_acting_keeps_batchnorm_stats": ("failed", "expected net.training=True afterwards, got False"),
    "check_select_action_epsilon_greedy": ("failed", "rng"),
    "check_optimize_bootstraps_from_target": ("passed", ""),
    "check_optimize_discount": ("passed", ""),
    "check_optimize_loss": ("passed", ""),
    # clip_grad_norm_ rescales the whole gradient instead of clamping each element
    "check_optimize_gradients_clamped": ("failed", "clip_grad_norm_"),
    "check_optimize_no_gradient_into_target": ("passed", ""),
    "check_optimize_loss_decreases": ("passed", ""),
    "check_target_not_aliased": ("passed", ""),
    "check_target_eval_mode": ("passed", ""),
    # only `running_*` buffers are copied (get_parameters_by_name(..., ["running_"]))
    "check_target_sync": ("failed", "num_batches_tracked"),
    "check_screen_patches": ("skipped", "does not supply extract_screen"),
    "check_screen_large_render": ("skipped", "does not supply extract_screen"),
    "check_get_screen": ("skipped", "does not supply get_screen"),
}


@pytest.fixture(scope="module")
def sb3_results() -> dict[str, CheckResult]:
    pytest.importorskip("stable_baselines3", reason=SB3_MISSING)
    from dqnbench.peers.sb3 import SB3

    return {r.check: r for r in run_all(SB3)}


def test_every_check_has_an_expected_sb3_outcome() -> None:
    names = [c.name for c in CHECKS]
    assert sorted(EXPECTED) == sorted(names), (
        f"EXPECTED lacks {sorted(set(names) - set(EXPECTED))} and has stale {sorted(set(EXPECTED) - set(names))}: "
        "run the kit on dqnbench.peers.sb3:SB3 and record the new checks' outcomes"
    )


@pytest.mark.parametrize(("check", "expected"), EXPECTED.items(), ids=list(EXPECTED))
def test_sb3_outcome(sb3_results: dict[str, CheckResult], check: str, expected: tuple[str, str]) -> None:
    outcome, fragment = expected
    result = sb3_results[check]
    assert (result.outcome, fragment in result.message) == (outcome, True), (
        f"{check} on Stable-Baselines3: expected {outcome} with {fragment!r} in the message, got {result.outcome}:\n"
        f"  {result.message}\n  (if SB3 changed, update EXPECTED here and the table in README.md)"
    )


def test_nature_cnn_needs_larger_screens() -> None:
    """SB3's stock extractor (NatureCNN: 8/4, 4/2, 3/1 kernels) cannot take a 35-row screen; the golden-weights
    check does not apply to it."""
    pytest.importorskip("stable_baselines3", reason=SB3_MISSING)
    from dqnbench.peers.sb3 import SB3_NATURE_CNN

    results = run_all(SB3_NATURE_CNN, ["check_network_output_shapes", "check_network_golden_outputs"])
    outcomes = {r.check: (r.outcome, r.message) for r in results}
    assert outcomes["check_network_output_shapes"][0] == "failed", outcomes
    assert "make_network(35, 79, 4, 3)" in outcomes["check_network_output_shapes"][1], outcomes
    # the seed's golden weights fit the seed's layers only: another architecture is skipped, with the reason
    assert outcomes["check_network_golden_outputs"][0] == "skipped", outcomes
    assert "network differs" in outcomes["check_network_golden_outputs"][1], outcomes


def test_without_timeout_handling_truncations_are_not_bootstrapped() -> None:
    """SB3's ReplayBuffer(handle_timeout_termination=False) treats every time-limit truncation as terminal."""
    pytest.importorskip("stable_baselines3", reason=SB3_MISSING)
    from dqnbench.peers.sb3 import SB3_WITHOUT_TIMEOUT_HANDLING

    results = {r.check: r for r in run_all(SB3_WITHOUT_TIMEOUT_HANDLING, ["check_bellman_truncation_bootstraps"])}
    result = results["check_bellman_truncation_bootstraps"]
    assert result.outcome == "failed", result.message
    assert "was `done` used instead of `terminated`?" in result.message, result.message


def test_missing_sb3_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without SB3, selecting the peer fails with the install command, not a bare ImportError."""
    for name in [m for m in sys.modules if m == "stable_baselines3" or m.startswith("stable_baselines3.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # makes `import stable_baselines3` fail
    monkeypatch.delitem(sys.modules, "dqnbench.peers.sb3", raising=False)
    with pytest.raises(AdapterLoadError, match=r"pip install 'dqnbench\[sb3\]'"):
        load_adapter("dqnbench.peers.sb3:SB3")
    with pytest.raises(ModuleNotFoundError, match=r"needs Stable-Baselines3") as raised:
        importlib.import_module("dqnbench.peers.sb3")
    assert raised.value.name == "stable_baselines3"
