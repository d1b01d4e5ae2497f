"""Exploration checks: the epsilon schedule and the acting loop's step counter."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from dqnbench.conformance import golden
from dqnbench.conformance.adapter import DQNAdapter
from dqnbench.conformance.checks.core import (
    diagnose,
    fail,
    invoke,
    mismatch,
    register_check,
)


def _epsilon_causes(rates: Callable[[int], Tensor]) -> dict[str, Tensor]:
    return {
        "off by one step: the rate was computed after incrementing steps_done (use the count before the step)": rates(
            +1
        ),
        "off by one step: the rate lags the step count by one": rates(-1),
    }


@register_check("epsilon")
def check_epsilon_schedule(adapter: DQNAdapter) -> str:
    """epsilon(steps_done) = 0.05 + 0.85 * exp(-steps_done / 200) at the golden step counts."""
    assert adapter.epsilon is not None
    from dqnbench.policy import epsilon as reference

    data = golden.load().epsilon
    steps = data["steps"]
    got = torch.tensor([float(invoke(f"epsilon({s})", adapter.epsilon, s)) for s in steps], dtype=torch.float64)
    expected = torch.tensor(data["values"], dtype=torch.float64)
    problem = mismatch(got, expected, atol=1e-9, rtol=1e-7, labels=[f"steps_done={s}" for s in steps])
    if problem:
        cause = diagnose(
            got,
            _epsilon_causes(lambda shift: torch.tensor([reference(max(s + shift, 0)) for s in steps])),
            atol=1e-9,
            rtol=1e-7,
        )
        raise fail("epsilon(steps_done) at the golden step counts", problem, cause)
    return f"{len(steps)} golden rates reproduced within atol=1e-9"


@register_check("epsilon_trace")
def check_epsilon_trace(adapter: DQNAdapter) -> str:
    """Across episodes the acting loop uses epsilon(global step): no reset per episode, no off-by-one."""
    assert adapter.epsilon_trace is not None
    from dqnbench.policy import epsilon as reference

    data = golden.load().epsilon
    lengths = data["episode_lengths"]
    call = f"epsilon_trace({lengths})"
    got = torch.tensor([float(e) for e in invoke(call, adapter.epsilon_trace, list(lengths))], dtype=torch.float64)
    expected = torch.tensor(data["trace"], dtype=torch.float64)
    starts = np.cumsum([0, *lengths[:-1]])
    labels = [f"episode {e}, step {t}" for e, n in enumerate(lengths) for t in range(n)]
    problem = mismatch(got, expected, atol=1e-9, rtol=1e-7, labels=labels if len(got) == len(labels) else None)
    if problem:
        per_episode = torch.tensor([reference(t) for n in lengths for t in range(n)], dtype=torch.float64)
        causes = {"the step counter is reset every episode: count steps across episodes": per_episode}
        causes |= _epsilon_causes(lambda shift: torch.tensor([reference(max(s + shift, 0)) for s in range(len(got))]))
        cause = diagnose(got, causes, atol=1e-9, rtol=1e-7) or (
            f"{call} must return one rate per step (episodes start at steps {starts.tolist()})"
            if len(got) != len(expected)
            else None
        )
        raise fail(call, problem, cause)
    return f"{len(expected)} steps over {len(lengths)} episodes use epsilon(global step)"
