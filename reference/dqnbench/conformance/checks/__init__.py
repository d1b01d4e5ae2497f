"""The conformance checks: one `check_*` function per property of a DQN implementation.

Like Gymnasium's env_checker, each check exercises one property and explains a failure; unlike it, a
failure message always says which check, which call, expected vs got, where (index or name), by how
much, against which tolerance, and, only where the evidence points to one, the likely cause.

The checks live in one module per part of a DQN (`network`, `bellman`, `replay`, `exploration`, `acting`,
`optimize`, `target`, `screen`); importing this package registers them all in `CHECKS`, in that order.
`run_check(adapter, check)` runs one check and never raises; `run_all(adapter)` runs `CHECKS` in order.
"""

import importlib

from dqnbench.conformance.checks.core import (
    CHECKS,
    Check,
    CheckResult,
    ConformanceError,
    NotApplicable,
    Outcome,
    check_names,
    run_all,
    run_check,
)

SECTIONS = ("network", "bellman", "replay", "exploration", "acting", "optimize", "target", "screen")
"""The check modules, imported (so registered) in this order: the order the checks run and are reported."""
for _section in SECTIONS:
    importlib.import_module(f"{__name__}.{_section}")

from dqnbench.conformance.checks.bellman import golden_transition_batch  # noqa: E402 (registered above)

__all__ = [
    "CHECKS",
    "SECTIONS",
    "Check",
    "CheckResult",
    "ConformanceError",
    "NotApplicable",
    "Outcome",
    "check_names",
    "golden_transition_batch",
    "run_all",
    "run_check",
]
