"""The DQN ecosystem side by side: each peer adapter runs the library's own code through the kit.

A peer fails only where it genuinely differs from the reference; each of those differences is declared by
the adapter, so the matrix shows it as failed by design, apart from bugs. A library that is not installed is
skipped with the install command.
"""

import importlib
from types import ModuleType

import pytest

from dqnbench.conformance.adapter import DQNAdapter
from dqnbench.conformance.checks import CHECKS, CheckResult, run_all
from dqnbench.peers import PEERS

ACTING_IN_TRAIN_MODE = {
    # the library acts with the network in whatever mode it is in: BatchNorm acts on batch statistics and
    # moves its running statistics while acting (pytorch/tutorials#2030 discusses the same in the DQN tutorial)
    "check_greedy_action_argmax": "the network acted in train mode",
    "check_acting_keeps_batchnorm_stats": "running_mean' changed",
    "check_select_action_epsilon_greedy": "expected the greedy action",
}
FINDINGS: dict[str, dict[str, str]] = {
    # failures that are not declared differences: what the kit finds in each library (check: message fragment)
    "sb3": {
        "check_acting_keeps_batchnorm_stats": "expected net.training=True afterwards, got False",
        "check_select_action_epsilon_greedy": "rng",
        "check_replay_seeded_sampling": "global RNG",
        "check_target_sync": "num_batches_tracked",
    },
    "torchrl": {
        **ACTING_IN_TRAIN_MODE,
        "check_optimize_bootstraps_from_target": "the target network was evaluated in train mode",
        "check_optimize_discount": "expected the loss for gamma=0.5",
        "check_target_eval_mode": "expected every submodule in eval mode",
    },
    "tianshou": {
        **ACTING_IN_TRAIN_MODE,
        "check_target_sync": "BatchNorm running statistics were not copied",
    },
    "cleanrl_style": {},
}


def _import_peer(name: str) -> ModuleType | str:
    """The peer's module, or why it does not import here."""
    try:
        return importlib.import_module(f"dqnbench.peers.{name}")
    except ModuleNotFoundError as error:
        return f"{error.name} is not installed: pip install 'dqnbench[{name}]'"


# Imported while the tests are collected: a library's import is heavy, and is the same for every test.
PEER_MODULES = {name: _import_peer(name) for name in PEERS}


def peer_adapter(name: str) -> DQNAdapter:
    module = PEER_MODULES[name]
    if isinstance(module, str):
        pytest.skip(module)
    adapter = module.ADAPTER
    assert isinstance(adapter, DQNAdapter)
    return adapter


@pytest.fixture(scope="module", params=PEERS)
def peer_results(request: pytest.FixtureRequest) -> tuple[str, DQNAdapter, dict[str, CheckResult]]:
    adapter = peer_adapter(request.param)
    return request.param, adapter, {r.check: r for r in run_all(adapter)}


def test_the_cleanrl_style_dqn_differs_from_the_reference_where_it_says() -> None:
    """Its Nature-CNN-like network, without BatchNorm, is skipped by the architecture- and mode-specific checks."""
    adapter = peer_adapter("cleanrl_style")
    checks = ["check_network_golden_outputs", "check_network_batchnorm_statistics", "check_target_eval_mode"]
    results = {r.check: r for r in run_all(adapter, checks)}
    assert {c: r.outcome for c, r in results.items()} == dict.fromkeys(checks, "skipped")
    assert "network differs" in results["check_network_golden_outputs"].message
    assert "no mode-dependent layers" in results["check_target_eval_mode"].message


def test_declared_differences_name_known_checks() -> None:
    known = {c.name for c in CHECKS}
    for name, module in PEER_MODULES.items():
        if isinstance(module, str):
            continue
        for difference in module.ADAPTER.declared_differences:
            assert set(difference.checks) <= known, (name, sorted(set(difference.checks) - known))


@pytest.mark.slow  # every check on every installed peer: about a minute each
def test_a_peer_fails_only_where_it_differs_by_design_or_the_kit_found_something(
    peer_results: tuple[str, DQNAdapter, dict[str, CheckResult]],
) -> None:
    """The CleanRL-style DQN fails only on its declared differences; a library fails on those and on the pinned
    findings, each with its evidence in the message (a change in the library or the kit shows here)."""
    name, adapter, results = peer_results
    declared = {check for d in adapter.declared_differences for check in d.checks}
    failed = {check for check, r in results.items() if r.outcome == "failed"}
    unexplained = {c: results[c].message for c in sorted(failed - declared - set(FINDINGS[name]))}
    assert not unexplained, f"{adapter.name}: unexpected failures:\n" + "\n".join(unexplained.values())
    assert declared <= failed, f"{adapter.name}: declares differences no check shows: {sorted(declared - failed)}"
    for check, fragment in FINDINGS[name].items():
        assert results[check].outcome == "failed" and fragment in results[check].message, results[check].message
    assert all(r.message for r in results.values() if r.outcome == "skipped")
