"""The checks' machinery: the registry, running a check, comparing and explaining results.

Like Gymnasium's env_checker, each check exercises one property and explains a failure; unlike it, a
failure message always says which check, which call, expected vs got, where (index or name), by how
much, against which tolerance, and the likely cause:

    check_bellman_truncation_bootstraps: bellman_targets(probe_target, golden batch, gamma=0.9): 3 of 3
    truncated rows differ beyond atol=1e-05, rtol=1e-05; worst at index 0 (row 2, truncated): expected 1.475,
    got -1 (|diff| 2.48)
      likely cause: truncated transitions were not bootstrapped: was `done` used instead of `terminated`?

`run_check(adapter, check)` runs one check and never raises; `run_all(adapter)` runs `CHECKS` in order.
A check whose pieces the adapter does not supply is skipped, naming the missing `DQNAdapter` fields; so is one
that cannot apply to an implementation (`NotApplicable`: e.g. a network that will not run in float64).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from dqnbench.conformance import golden
from dqnbench.conformance.adapter import PIECES, DQNAdapter

Outcome = Literal["passed", "failed", "skipped"]

ATOL = 1e-5
RTOL = 1e-5
NETWORK_TOL = 1e-4
"""Golden Q-values: float32 convolutions summed in a different order on another CPU differ in the 6th digit."""
SCREEN_ATOL = 1 / 255 + 1e-6
"""Screen patches: one quantisation level of the seed's uint8 round trip (PIL rounding may differ by one)."""
GRAD_CLIP_PROBE = 1e-3
"""The grad_clip the kit passes to optimize_step: far below the typical gradient, so clamping must act."""
SCREEN_SHAPE = (golden.SCREEN_HEIGHT, 90)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one implementation (one row of the JSON result)."""

    check: str
    outcome: Outcome
    message: str
    duration_s: float

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "outcome": self.outcome, "message": self.message, "duration_s": self.duration_s}


class ConformanceError(AssertionError):
    """The implementation does not behave like the reference; the message says what, where and why."""


class NotApplicable(Exception):
    """The check cannot be made on this implementation (the message says why); it is reported as skipped."""


@dataclass(frozen=True)
class Check:
    """One registered property check."""

    name: str
    needs: tuple[str, ...]
    """DQNAdapter fields the check needs (all of them, or any one when `any_of`)."""
    run: Callable[[DQNAdapter], str]
    """Returns a one-line pass message or raises ConformanceError."""
    summary: str
    any_of: bool = False

    def missing(self, adapter: DQNAdapter) -> list[str]:
        absent = [name for name in self.needs if getattr(adapter, name) is None]
        return absent if not self.any_of or len(absent) == len(self.needs) else []


CHECKS: list[Check] = []
"""Every check, in the order they run (network, Bellman, replay, exploration, acting, optimisation, target,
screen)."""


CheckFn = Callable[[DQNAdapter], str]


def register_check(*needs: str, any_of: bool = False) -> Callable[[CheckFn], CheckFn]:
    """Register the decorated function as a check that needs the DQNAdapter fields `needs`."""
    unknown = set(needs) - set(PIECES)
    if unknown:
        raise ValueError(f"register_check{needs}: {sorted(unknown)} are not DQNAdapter fields ({PIECES})")

    def register(fn: CheckFn) -> CheckFn:
        summary = (fn.__doc__ or fn.__name__).strip().splitlines()[0]
        CHECKS.append(Check(fn.__name__, needs, fn, summary, any_of))
        return fn

    return register


def check_names() -> list[str]:
    return [c.name for c in CHECKS]


_LIBRARIES = tuple(str(Path(module.__file__ or "").parent) for module in (torch, np))


def _where_raised(error: BaseException) -> str:
    """The innermost frame outside torch and numpy: where the implementation's own code went wrong."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [frame for frame in frames if not frame.filename.startswith(_LIBRARIES)] or frames
    if not own:
        return ""
    last = own[-1]
    return f" (at {last.filename}:{last.lineno} in {last.name})"


def run_check(adapter: DQNAdapter, check: Check) -> CheckResult:
    """Run `check` on `adapter`; never raises: the outcome and its message are in the result."""
    started = time.perf_counter()
    missing = check.missing(adapter)
    if missing:
        joined = " or ".join(missing) if check.any_of else ", ".join(missing)
        outcome: Outcome = "skipped"
        message = (
            f"{check.name}: not checked: {adapter.name} does not supply {joined} (DQNAdapter.{missing[0]} is None)"
        )
    else:
        try:
            detail = check.run(adapter)
            outcome, message = "passed", f"{check.name}: {detail}"
        except ConformanceError as error:
            outcome, message = "failed", f"{check.name}: {error}"
        except NotApplicable as reason:
            outcome, message = "skipped", f"{check.name}: not checked: {reason}"
        except Exception as error:  # the implementation crashed: that is a failure of this check, with its cause
            outcome = "failed"
            message = (
                f"{check.name}: the implementation raised {type(error).__name__}: {error}{_where_raised(error)}; "
                "compare its signature and return type with the DQNAdapter contract (dqnbench.conformance.adapter)"
            )
    return CheckResult(check.name, outcome, message, time.perf_counter() - started)


def run_all(adapter: DQNAdapter, names: Sequence[str] | None = None) -> list[CheckResult]:
    """Run every check (or the named ones) on `adapter`."""
    if names is not None:
        unknown = sorted(set(names) - set(check_names()))
        if unknown:
            raise ValueError(f"run_all: unknown checks {unknown}; known: {check_names()}")
    return [run_check(adapter, c) for c in CHECKS if names is None or c.name in names]


# --- comparing and explaining -------------------------------------------------------------------------


def fail(call: str, detail: str, cause: str | None) -> ConformanceError:
    likely = f"\n  likely cause: {cause}" if cause else ""
    return ConformanceError(f"{call}: {detail}{likely}")


def invoke(call: str, fn: Callable[..., Any], *args: Any, cause: str | None = None) -> Any:
    """Call the implementation; an exception becomes a ConformanceError naming the call and a likely cause."""
    try:
        return fn(*args)
    except ConformanceError:
        raise
    except Exception as error:
        raise fail(call, f"raised {type(error).__name__}: {error}{_where_raised(error)}", cause) from error


def as_tensor(call: str, value: Any) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().cpu()
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError) as error:
        raise fail(call, f"returned a {type(value).__name__}, expected a tensor", None) from error


def mismatch(
    got: Tensor,
    expected: Tensor,
    *,
    atol: float,
    rtol: float,
    labels: Sequence[str] | None = None,
    what: str = "entries",
) -> str | None:
    """None when `got` matches `expected` (torch.isclose semantics); else where, by how much, and the tolerance."""
    if tuple(got.shape) != tuple(expected.shape):
        return f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    got64, exp64 = got.to(torch.float64), expected.to(torch.float64)
    close = torch.isclose(got64, exp64, rtol=rtol, atol=atol)
    if bool(close.all()):
        return None
    diff = torch.where(close, torch.zeros_like(got64), (got64 - exp64).abs().nan_to_num(float("inf")))
    flat = int(diff.flatten().argmax())
    index = tuple(int(i) for i in np.unravel_index(flat, tuple(got.shape))) if got.dim() else ()
    label = f" ({labels[flat]})" if labels is not None else ""
    where = f"index {index[0] if len(index) == 1 else index}" if index else "the value"
    return (
        f"{int((~close).sum())} of {close.numel()} {what} differ beyond atol={atol:g}, rtol={rtol:g}; "
        f"worst at {where}{label}: expected {float(exp64.flatten()[flat]):.6g}, got {float(got64.flatten()[flat]):.6g} "
        f"(|diff| {float(diff.flatten()[flat]):.3g})"
    )


def diagnose(got: Tensor, variants: dict[str, Tensor], *, atol: float, rtol: float) -> str | None:
    """The first known bug whose result `got` reproduces."""
    for cause, variant in variants.items():
        if tuple(got.shape) == tuple(variant.shape) and bool(
            torch.isclose(got.to(torch.float64), variant.to(torch.float64), rtol=rtol, atol=atol).all()
        ):
            return cause
    return None


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch for network construction without disturbing the caller's global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def screens(count: int, seed: int, shape: tuple[int, ...] = (3, *SCREEN_SHAPE)) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((count, *shape), generator=generator)


def build_network(adapter: DQNAdapter, n_actions: int = golden.N_ACTIONS, seed: int = 0) -> nn.Module:
    """The adapter's Q-network at the seed's screen size (the reference DQN when it supplies none)."""
    from dqnbench.nets import DQN

    factory = adapter.make_network or DQN
    with seeded(seed):
        net = invoke(
            f"make_network({SCREEN_SHAPE[0]}, {SCREEN_SHAPE[1]}, {n_actions}, 3)", factory, *SCREEN_SHAPE, n_actions, 3
        )
    if not isinstance(net, nn.Module):
        raise fail("make_network(...)", f"returned a {type(net).__name__}, expected a torch.nn.Module", None)
    return net.train()


MODE_DEPENDENT = (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd)
"""Layers whose output or state depends on train/eval mode (BatchNorm, InstanceNorm with running statistics,
dropout)."""


def require_mode_dependent_layers(adapter: DQNAdapter, net: nn.Module, what: str) -> list[str]:
    """Names of `net`'s mode-dependent layers; raises NotApplicable (naming `what`) when it has none."""
    layers = [name for name, module in net.named_modules() if isinstance(module, MODE_DEPENDENT)]
    if not layers:
        raise NotApplicable(
            f"{adapter.name}'s network has no mode-dependent layers (BatchNorm, dropout), so {what} (not applicable)"
        )
    return layers
