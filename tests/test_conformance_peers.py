"""The DQN ecosystem side by side: each peer adapter runs the library's own code through the kit.

A peer fails only where it genuinely differs from the reference; each of those differences is declared by
the adapter, so the matrix shows it as failed by design, apart from bugs. A library that is not installed is
skipped with the install command.
"""

import importlib

import pytest

from dqnbench.conformance.adapter import DQNAdapter
from dqnbench.conformance.checks import CHECKS, CheckResult, run_all
from dqnbench.peers import PEERS

EXTRAS = {"sb3": "stable_baselines3", "torchrl": "torchrl", "tianshou": "tianshou", "cleanrl_style": "torch"}


def peer_adapter(name: str) -> DQNAdapter:
    pytest.importorskip(EXTRAS[name], reason=f"{EXTRAS[name]} is not installed: pip install 'dqnbench[{name}]'")
    adapter = importlib.import_module(f"dqnbench.peers.{name}").ADAPTER
    assert isinstance(adapter, DQNAdapter)
    return adapter


@pytest.fixture(scope="module", params=PEERS)
def peer_results(request: pytest.FixtureRequest) -> tuple[DQNAdapter, dict[str, CheckResult]]:
    adapter = peer_adapter(request.param)
    return adapter, {r.check: r for r in run_all(adapter)}


def test_declared_differences_name_known_checks() -> None:
    known = {c.name for c in CHECKS}
    for name in PEERS:
        try:
            adapter = importlib.import_module(f"dqnbench.peers.{name}").ADAPTER
        except ModuleNotFoundError:
            continue
        for difference in adapter.declared_differences:
            assert set(difference.checks) <= known, (name, sorted(set(difference.checks) - known))


@pytest.mark.slow  # every check on every installed peer: about a minute each
def test_a_peer_fails_only_where_it_declares_a_difference(
    peer_results: tuple[DQNAdapter, dict[str, CheckResult]],
) -> None:
    adapter, results = peer_results
    declared = {check for d in adapter.declared_differences for check in d.checks}
    failed = {name for name, r in results.items() if r.outcome == "failed"}
    undeclared = {name: results[name].message for name in sorted(failed - declared)}
    assert not undeclared, f"{adapter.name}: failures it does not declare:\n" + "\n".join(undeclared.values())
    assert declared <= failed, f"{adapter.name}: declares differences no check shows: {sorted(declared - failed)}"
    assert all(r.message for r in results.values() if r.outcome == "skipped")
