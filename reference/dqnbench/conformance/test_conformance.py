"""The conformance kit as pytest tests: one test per check, against the --dqn-impl adapter.

Shipped in the package so that it runs without a checkout:

    python -m pytest --pyargs dqnbench.conformance --dqn-impl=package.module:object

A check the adapter does not supply a piece for is skipped with the reason; a failure shows the check's
message (expected vs got, where, tolerance, likely cause) without a Python traceback.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dqnbench.conformance.adapter import DQNAdapter
from dqnbench.conformance.checks import CHECKS, Check, CheckResult, run_check


@pytest.mark.parametrize("check", CHECKS, ids=[c.name for c in CHECKS])
def test_check(
    check: Check, dqn_adapter: DQNAdapter, conformance_record: Callable[[DQNAdapter, CheckResult], None]
) -> None:
    result = run_check(dqn_adapter, check)
    conformance_record(dqn_adapter, result)
    if result.outcome == "skipped":
        pytest.skip(result.message)
    if result.outcome == "failed":
        pytest.fail(result.message, pytrace=False)
