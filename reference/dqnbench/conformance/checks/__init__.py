"""The conformance checks: one `check_*` function per property of a DQN implementation.

Like Gymnasium's env_checker, each check exercises one property and explains a failure; unlike it, a
failure message always says which check, which call, expected vs got, where (index or name), by how
much, against which tolerance, and, only where the evidence points to one, the likely cause.

The checks live in one module per part of a DQN (`network`, `bellman`, `replay`, `exploration`, `acting`,
`optimize`, `target`, `screen`); importing this package registers them all in `CHECKS`, in that order.
`run_check(adapter, check)` runs one check and never raises; `run_all(adapter)` runs `CHECKS` in order.
"""

# Imported for their registrations, in the order the checks run.
from dqnbench.conformance.checks import acting, bellman, exploration, network, optimize, replay, screen, target
from dqnbench.conformance.checks.bellman import golden_transition_batch
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

__all__ = [
    "CHECKS",
    "Check",
    "CheckResult",
    "ConformanceError",
    "NotApplicable",
    "Outcome",
    "acting",
    "bellman",
    "check_names",
    "exploration",
    "golden_transition_batch",
    "network",
    "optimize",
    "replay",
    "run_all",
    "run_check",
    "screen",
    "target",
]
