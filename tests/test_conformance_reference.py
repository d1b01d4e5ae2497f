"""The conformance kit against dqnbench's own reference: every check must pass, none may be skipped.

This pins the reference explicitly (whatever --dqn-impl says) and records into the plugin, so a plain
`pytest` run also prints the kit's summary table for the reference.
"""

from collections.abc import Callable

import pytest

from dqnbench.conformance.adapter import PIECES, REFERENCE, DQNAdapter
from dqnbench.conformance.checks import CHECKS, Check, CheckResult, run_check


def test_reference_supplies_every_piece():
    assert REFERENCE.supplied() == list(PIECES)


@pytest.mark.parametrize("check", CHECKS, ids=[c.name for c in CHECKS])
def test_reference_passes(check: Check, conformance_record: Callable[[DQNAdapter, CheckResult], None]):
    result = run_check(REFERENCE, check)
    conformance_record(REFERENCE, result)
    assert result.outcome == "passed", result.message
