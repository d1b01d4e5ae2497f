"""The conformance checks: one `check_*` function per property of a DQN implementation.

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

import copy
import math
import random
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dqnbench.conformance import golden
from dqnbench.conformance.adapter import PIECES, DQNAdapter, TransitionBatch

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


def _check(*needs: str, any_of: bool = False) -> Callable[[Callable[[DQNAdapter], str]], Callable[[DQNAdapter], str]]:
    unknown = set(needs) - set(PIECES)
    if unknown:
        raise ValueError(f"_check{needs}: {sorted(unknown)} are not DQNAdapter fields ({PIECES})")

    def register(fn: Callable[[DQNAdapter], str]) -> Callable[[DQNAdapter], str]:
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
                f"{check.name}: the implementation raised {type(error).__name__}: {error}{_where_raised(error)}\n"
                f"  likely cause: its signature or return type differs from the DQNAdapter contract "
                f"(see dqnbench.conformance.adapter)"
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


def _fail(call: str, detail: str, cause: str | None) -> ConformanceError:
    likely = f"\n  likely cause: {cause}" if cause else ""
    return ConformanceError(f"{call}: {detail}{likely}")


def _invoke(call: str, fn: Callable[..., Any], *args: Any, cause: str | None = None) -> Any:
    """Call the implementation; an exception becomes a ConformanceError naming the call and a likely cause."""
    try:
        return fn(*args)
    except ConformanceError:
        raise
    except Exception as error:
        raise _fail(call, f"raised {type(error).__name__}: {error}{_where_raised(error)}", cause) from error


def _as_tensor(call: str, value: Any) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().cpu()
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError) as error:
        raise _fail(call, f"returned a {type(value).__name__}, expected a tensor", None) from error


def _mismatch(
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


def _diagnose(got: Tensor, variants: dict[str, Tensor], *, atol: float, rtol: float) -> str | None:
    """The first known bug whose result `got` reproduces."""
    for cause, variant in variants.items():
        if tuple(got.shape) == tuple(variant.shape) and bool(
            torch.isclose(got.to(torch.float64), variant.to(torch.float64), rtol=rtol, atol=atol).all()
        ):
            return cause
    return None


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch for network construction without disturbing the caller's global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _screens(count: int, seed: int, shape: tuple[int, ...] = (3, *SCREEN_SHAPE)) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((count, *shape), generator=generator)


# --- network --------------------------------------------------------------------------------------------


def _network(adapter: DQNAdapter, n_actions: int = golden.N_ACTIONS, seed: int = 0) -> nn.Module:
    """The adapter's Q-network at the seed's screen size (the reference DQN when it supplies none)."""
    from dqnbench.nets import DQN

    factory = adapter.make_network or DQN
    with _seeded(seed):
        net = _invoke(
            f"make_network({SCREEN_SHAPE[0]}, {SCREEN_SHAPE[1]}, {n_actions}, 3)", factory, *SCREEN_SHAPE, n_actions, 3
        )
    if not isinstance(net, nn.Module):
        raise _fail("make_network(...)", f"returned a {type(net).__name__}, expected a torch.nn.Module", None)
    return net.train()


CONV_CASES = [(size, k, s) for k in (1, 3, 5, 8) for s in (1, 2, 3) for size in range(k, 100, 7)] + [
    (size, 5, 2) for size in (40, 90, 160, 400, 600, 1200)
]


@_check("conv2d_size_out")
def check_conv2d_size_out(adapter: DQNAdapter) -> str:
    """conv2d_size_out(size, kernel_size, stride) equals the length nn.Conv2d really produces."""
    assert adapter.conv2d_size_out is not None
    for size, kernel, stride in CONV_CASES:
        truth = F.conv2d(torch.zeros(1, 1, 1, size), torch.zeros(1, 1, 1, kernel), stride=(1, stride)).shape[-1]
        call = f"conv2d_size_out({size}, {kernel}, {stride})"
        got = _invoke(call, adapter.conv2d_size_out, size, kernel, stride)
        if got != truth:
            off = got - truth if isinstance(got, int) else None
            cause = (
                f"off by {off:+d}: the formula is (size - (kernel_size - 1) - 1) // stride + 1"
                if off is not None
                else "it must return an int"
            )
            raise _fail(call, f"expected {truth} (what nn.Conv2d produces), got {got!r}, exact match required", cause)
    return f"{len(CONV_CASES)} (size, kernel, stride) cases equal nn.Conv2d's output length"


NETWORK_SHAPES = ((40, 90, 2, 3), (40, 80, 2, 3), (64, 144, 3, 3), (40, 90, 2, 12), (35, 79, 4, 3))


@_check("make_network")
def check_network_output_shapes(adapter: DQNAdapter) -> str:
    """The Q-network builds for several screen sizes and maps (N, C, H, W) to finite (N, n_actions)."""
    assert adapter.make_network is not None
    for height, width, n_actions, channels in NETWORK_SHAPES:
        call = f"make_network({height}, {width}, {n_actions}, {channels})"
        with _seeded(0):
            net = _invoke(call, adapter.make_network, height, width, n_actions, channels)
        for mode in ("train", "eval"):
            net.train(mode == "train")
            with torch.no_grad():
                out = _invoke(
                    f"{call}.{mode}()(x of shape (2, {channels}, {height}, {width}))",
                    net,
                    _screens(2, 0, (channels, height, width)),
                    cause="the linear head's input size does not match the convolutions' output: is the conv "
                    "output size formula right?",
                )
            out = _as_tensor(call, out)
            if tuple(out.shape) != (2, n_actions) or not bool(torch.isfinite(out).all()):
                raise _fail(
                    f"{call}.{mode}()(x)",
                    f"expected finite Q-values of shape (2, {n_actions}), got {tuple(out.shape)}",
                    "the head must output one Q-value per action for each screen in the batch",
                )
    return f"{len(NETWORK_SHAPES)} screen sizes give finite (N, n_actions) Q-values in train and eval mode"


@_check("make_network")
def check_network_golden_outputs(adapter: DQNAdapter) -> str:
    """With the golden weights loaded, the Q-network reproduces the golden Q-values (eval and train mode)."""
    assert adapter.make_network is not None
    data = golden.load()
    net = _network(adapter)
    entries = [(name, tuple(t.shape)) for name, t in net.state_dict().items()]
    names = [str(n) for n in data.network["names"]]
    shipped = [data.network[f"param_{i:03d}"] for i in range(len(names))]
    expected = [(name, tuple(a.shape)) for name, a in zip(names, shipped, strict=True)]
    if [s for _, s in entries] != [s for _, s in expected]:
        first = next(
            (i for i, (a, b) in enumerate(zip(entries, expected, strict=False)) if a[1] != b[1]),
            min(len(entries), len(expected)),
        )
        got = entries[first] if first < len(entries) else "nothing"
        raise _fail(
            "make_network(40, 90, 2, 3).state_dict()",
            f"{len(entries)} entries, expected the seed architecture's {len(expected)}; first difference at entry "
            f"{first}: expected {expected[first] if first < len(expected) else 'nothing'}, got {got}",
            "the network is not the seed's (3 x conv5/stride2 + BatchNorm + ReLU with 16, 32, 32 channels, then a "
            "linear head); the golden weights are matched to it by position",
        )
    net.load_state_dict(golden.state_dict(shipped, net))
    inputs = golden.network_inputs(data.screens)
    for mode, key in (("eval", "eval_q"), ("train", "train_q")):
        with torch.no_grad():
            out = _as_tensor("net(x)", net.train(mode == "train")(inputs))
        problem = _mismatch(
            out, torch.from_numpy(data.network[key]), atol=NETWORK_TOL, rtol=NETWORK_TOL, what="Q-values"
        )
        if problem:
            raise _fail(
                f"make_network(40, 90, 2, 3) with golden weights, {mode} mode, on {len(inputs)} golden screens",
                problem,
                "layer order, activation, BatchNorm epsilon/momentum or flattening order differ from the seed's"
                if mode == "eval"
                else "BatchNorm in train mode must normalise with the batch statistics",
            )
    return f"golden Q-values reproduced within {NETWORK_TOL:g} in eval and train mode"


GRADIENT_BATCH = 128
GRADIENT_TOL = 1e-3
"""Training-mode gradients on screen differences, as a fraction of the largest gradient. The reference in
float32 stays within 2.6e-4 of float64 here (the worst entries are conv biases, whose true gradient under
BatchNorm is zero, so all they hold is rounding); a BatchNorm summing each channel's 99,072 values one at a
time in float32 is 6e-2 off."""


def screen_differences(count: int, seed: int) -> Tensor:
    """States shaped like the seed's: mostly zeros, with a few moving blocks (a cart and a pole's two frames)."""
    generator = torch.Generator().manual_seed(seed)
    states = torch.zeros(count, 3, *SCREEN_SHAPE)
    height, width = SCREEN_SHAPE
    for i in range(count):
        for _ in range(int(torch.randint(1, 4, (1,), generator=generator))):
            rows = int(torch.randint(4, 12, (1,), generator=generator))
            cols = int(torch.randint(3, 10, (1,), generator=generator))
            top = int(torch.randint(0, height - rows, (1,), generator=generator))
            left = int(torch.randint(0, width - cols, (1,), generator=generator))
            value = torch.rand(3, 1, 1, generator=generator) * 2 - 1
            states[i, :, top : top + rows, left : left + cols] = value
    return states


@_check("make_network")
def check_network_gradients_on_screen_differences(adapter: DQNAdapter) -> str:
    """In train mode at batch 128, Q-values and gradients on screen-difference states match a float64 copy."""
    net = _network(adapter).train()
    exact = copy.deepcopy(net).double()
    states = screen_differences(GRADIENT_BATCH, 21)
    weights = torch.randn(GRADIENT_BATCH, golden.N_ACTIONS, generator=torch.Generator().manual_seed(22))
    call = f"make_network(40, 90, 2, 3).train() on {GRADIENT_BATCH} screen differences, then backward"
    q = _invoke(call, net, states)
    if not isinstance(q, Tensor) or tuple(q.shape) != (GRADIENT_BATCH, golden.N_ACTIONS):
        raise _fail(call, f"expected a ({GRADIENT_BATCH}, {golden.N_ACTIONS}) tensor of Q-values, got {q!r:.80}", None)
    try:
        q_exact = exact(states.double())
    except Exception as error:
        raise NotApplicable(
            f"the oracle is a float64 copy of the network, and running {adapter.name}'s copy raised "
            f"{type(error).__name__}: {error} (a network that casts its input to float32, as SB3's policies do, "
            "cannot be checked this way)"
        ) from error
    _invoke(f"{call}: (Q * weights).sum().backward()", lambda: (q.cpu() * weights).sum().backward())
    (q_exact * weights.double()).sum().backward()
    pairs = [(name, p.grad, e.grad) for (name, p), e in zip(net.named_parameters(), exact.parameters(), strict=True)]
    missing = [name for name, grad, _ in pairs if grad is None]
    if missing:
        raise _fail(call, f"no gradient reached {missing}", "a parameter is detached from the forward pass")
    scale = max(float(e.abs().max()) for _, _, e in pairs if e is not None)
    problem = _mismatch(_as_tensor(call, q), q_exact.detach(), atol=NETWORK_TOL, rtol=NETWORK_TOL, what="Q-values")
    deviations = {name: float((grad - e).abs().max()) for name, grad, e in pairs}  # type: ignore[operator]
    # NaN compares False with everything, so non-finite deviations are looked for by name, not by max().
    non_finite = [name for name, value in deviations.items() if not math.isfinite(value)]
    worst = non_finite[0] if non_finite else max(deviations, key=deviations.__getitem__)
    deviation = deviations[worst]
    if problem or non_finite or deviation > GRADIENT_TOL * scale:
        raise _fail(
            call,
            problem
            or (f"non-finite gradients in {non_finite}" if non_finite else "")
            or f"gradient of {worst} differs from the float64 copy's by {deviation:.3g}; allowed "
            f"{GRADIENT_TOL:g} x the largest gradient ({scale:.3g}) = {GRADIENT_TOL * scale:.3g}",
            "BatchNorm statistics summed inaccurately in float32 (PyTorch's channels-last CPU kernel adds each "
            "channel's values one at a time; mostly-zero screens make a conv's output nearly constant), a "
            "reduced-precision mode (bf16/tf32), or a NaN in the backward pass",
        )
    return (
        f"gradients within {deviation / scale:.1e} x the largest of a float64 copy's (allowed {GRADIENT_TOL:g}) "
        f"on {GRADIENT_BATCH} screen differences"
    )


# --- Bellman targets ------------------------------------------------------------------------------------


class ProbeQNetwork(nn.Module):
    """A target network whose Q-values the golden data fixes: Q(s) = scale * s.flatten(1)[:, :n_actions].

    `scale` (1.0) requires a gradient, so targets that are not detached show it.
    """

    def __init__(self, n_actions: int = golden.N_ACTIONS) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * x.flatten(1)[:, : self.n_actions]


def golden_transition_batch(data: dict[str, np.ndarray] | None = None) -> TransitionBatch:
    """The golden Bellman batch as a `TransitionBatch`."""
    data = golden.load().bellman if data is None else data
    return TransitionBatch(
        states=torch.from_numpy(data["states"]),
        actions=torch.from_numpy(data["actions"]),
        rewards=torch.from_numpy(data["rewards"]),
        next_states=torch.from_numpy(data["next_states"]),
        terminated=torch.from_numpy(data["terminated"]),
        truncated=torch.from_numpy(data["truncated"]),
    )


def _bellman_variants(q_next: Tensor, batch: TransitionBatch, gamma: float) -> dict[str, Tensor]:
    """Targets that known bugs produce, keyed by the likely cause."""
    r, term, dones = batch.rewards.double(), batch.terminated, batch.dones
    best = q_next.double().max(dim=1).values

    def masked(values: Tensor, final: Tensor) -> Tensor:
        return torch.where(final, torch.zeros_like(values), values)

    return {
        "truncated transitions were not bootstrapped: was `done` used instead of `terminated`?": r
        + gamma * masked(best, dones),
        "terminated transitions were bootstrapped: the terminal mask is missing": r + gamma * best,
        "the terminal mask is inverted: only final transitions were bootstrapped": r + gamma * masked(best, ~term),
        "a transition both terminated and truncated was bootstrapped: termination must win": r
        + gamma * masked(best, term & ~batch.truncated),
        "gamma was applied to the reward too: (r + V) * gamma instead of r + gamma * V": gamma
        * (r + masked(best, term)),
        "gamma is missing: r + V(s') instead of r + gamma * V(s')": r + masked(best, term),
        "the max was taken over the batch, not over the actions (max(dim=0) or a global max)": r
        + gamma * masked(q_next.double().max().expand_as(best), term),
        "min instead of max over the next state's actions": r + gamma * masked(q_next.double().min(dim=1).values, term),
    }


def _bellman_call(adapter: DQNAdapter, batch: TransitionBatch, gamma: float) -> tuple[Tensor, ProbeQNetwork, str]:
    assert adapter.bellman_targets is not None
    probe = ProbeQNetwork()
    call = f"bellman_targets(probe_target, golden batch, gamma={gamma:g})"
    raw = _invoke(
        call,
        adapter.bellman_targets,
        probe,
        batch,
        gamma,
        cause="a shape error here usually means the max was taken over the wrong dimension (dim=0, the batch)",
    )
    if not isinstance(raw, Tensor):
        raise _fail(call, f"returned a {type(raw).__name__}, expected a (B,) tensor", None)
    return raw, probe, call


def _check_bellman_rows(adapter: DQNAdapter, rows: Tensor, description: str, default_cause: str) -> str:
    data = golden.load().bellman
    batch, gamma = golden_transition_batch(data), float(data["gamma"])
    raw, _, call = _bellman_call(adapter, batch, gamma)
    got = raw.detach().cpu()
    if tuple(got.shape) != tuple(batch.rewards.shape):
        shape_cause = "gather or max on the wrong dimension, or a missing squeeze"
        raise _fail(call, f"expected shape {tuple(batch.rewards.shape)}, got {tuple(got.shape)}", shape_cause)
    expected = torch.from_numpy(data["targets"])
    kinds = [str(k) for k in data["kinds"]]
    indices = torch.nonzero(rows).flatten()
    problem = _mismatch(
        got[indices],
        expected[indices],
        atol=ATOL,
        rtol=RTOL,
        labels=[f"row {int(i)}, {kinds[int(i)]}" for i in indices],
        what=f"{description} rows",
    )
    if problem:
        q_next = ProbeQNetwork()(batch.next_states).detach()
        cause = _diagnose(got, _bellman_variants(q_next, batch, gamma), atol=ATOL, rtol=RTOL) or default_cause
        raise _fail(call, problem, cause)
    return f"{len(indices)} {description} rows match the golden targets within atol={ATOL:g}, rtol={RTOL:g}"


@_check("bellman_targets")
def check_bellman_targets(adapter: DQNAdapter) -> str:
    """r + gamma * max_a Q_target(s', a), no bootstrap where terminated, on the whole golden batch."""
    data = golden.load().bellman
    return _check_bellman_rows(
        adapter,
        torch.ones(len(data["rewards"]), dtype=torch.bool),
        "golden",
        "the targets are not r + gamma * max_a Q_target(s', a) (masked where terminated)",
    )


@_check("bellman_targets")
def check_bellman_terminal_masking(adapter: DQNAdapter) -> str:
    """Terminated transitions (truncated or not) are not bootstrapped: their target is the reward alone."""
    batch = golden_transition_batch()
    return _check_bellman_rows(
        adapter,
        batch.terminated,
        "terminated",
        "terminated transitions were bootstrapped: mask the next-state values where `terminated`",
    )


@_check("bellman_targets")
def check_bellman_truncation_bootstraps(adapter: DQNAdapter) -> str:
    """Truncated (time-limit) transitions that did not terminate are bootstrapped from their next state."""
    batch = golden_transition_batch()
    return _check_bellman_rows(
        adapter,
        batch.truncated & ~batch.terminated,
        "truncated",
        "truncated transitions were not bootstrapped: was `done` used instead of `terminated`?",
    )


@_check("bellman_targets")
def check_bellman_no_gradient(adapter: DQNAdapter) -> str:
    """The targets carry no gradient: nothing can flow back into the target network."""
    data = golden.load().bellman
    raw, probe, call = _bellman_call(adapter, golden_transition_batch(data), float(data["gamma"]))
    if raw.requires_grad or raw.grad_fn is not None:
        raw.sum().backward()
        grad = probe.scale.grad
        reached = f"; backward() put {float(grad):.4g} into the target's parameter" if grad is not None else ""
        raise _fail(
            call,
            f"the targets require grad (grad_fn={type(raw.grad_fn).__name__}); expected requires_grad=False{reached}",
            "missing detach: compute the next-state values under torch.no_grad() or .detach() them",
        )
    return "targets carry no gradient into a target network whose parameters require grad"


@_check("bellman_targets")
def check_bellman_all_final_batch(adapter: DQNAdapter) -> str:
    """A batch in which every transition terminated is valid: every target is its reward."""
    base = golden_transition_batch()
    batch = TransitionBatch(
        base.states,
        base.actions,
        base.rewards,
        base.next_states,
        torch.ones_like(base.terminated),
        torch.zeros_like(base.truncated),
    )
    raw, _, call = _bellman_call(adapter, batch, 0.9)
    problem = _mismatch(raw.detach().cpu(), batch.rewards, atol=ATOL, rtol=RTOL, what="targets")
    if problem:
        raise _fail(call + " with every row terminated", problem, "terminated transitions were bootstrapped")
    return "an all-terminated batch gives the rewards as targets"


# --- replay memory --------------------------------------------------------------------------------------

STATE_SHAPE = (1, 3, 2, 2)


@dataclass(frozen=True)
class _Item:
    state: Tensor
    action: Tensor
    next_state: Tensor | None
    reward: Tensor


def _item(i: int) -> _Item:
    """Transition number i: its state is filled with i, every fourth one is terminal."""
    next_state = None if i % 4 == 3 else torch.full(STATE_SHAPE, i + 0.5)
    return _Item(torch.full(STATE_SHAPE, float(i)), torch.tensor([[i % 2]]), next_state, torch.tensor([float(i)]))


def _push(memory: Any, i: int) -> None:
    item = _item(i)
    _invoke(f"memory.push(<transition {i}>)", memory.push, item.state, item.action, item.next_state, item.reward)


def _memory(adapter: DQNAdapter, capacity: int, seed: int = 0) -> Any:
    assert adapter.make_memory is not None
    return _invoke(f"make_memory({capacity}, {seed})", adapter.make_memory, capacity, seed)


def _rows(sampled: Any) -> list[_Item]:
    """Normalise what `sample` returned (transitions, a learner.Batch or a TransitionBatch) to items."""
    if isinstance(sampled, TransitionBatch):
        nexts = sampled.next_states_or_none(sampled.terminated)
        return [
            _Item(sampled.states[i : i + 1], sampled.actions[i : i + 1], nexts[i], sampled.rewards[i : i + 1])
            for i in range(len(sampled.rewards))
        ]
    if hasattr(sampled, "non_final_mask"):  # dqnbench.learner.Batch
        nexts_iter = iter(sampled.non_final_next_states.split(1))
        return [
            _Item(
                sampled.states[i : i + 1],
                sampled.actions[i : i + 1],
                next(nexts_iter) if bool(m) else None,
                sampled.rewards[i : i + 1],
            )
            for i, m in enumerate(sampled.non_final_mask)
        ]
    rows = []
    for t in sampled:
        fields = (t.state, t.action, t.next_state, t.reward) if hasattr(t, "state") else tuple(t)[:4]
        rows.append(_Item(*fields))
    return rows


def _ids_of(rows: list[_Item], call: str, stored: int) -> list[int]:
    """The transition numbers of sampled rows; a sample of everything stored must hold each exactly once."""
    ids = [round(float(torch.as_tensor(r.state).flatten()[0])) for r in rows]
    if len(rows) == stored and len(set(ids)) < stored:
        raise _fail(
            f"{call} of a memory holding {stored}",
            f"expected every stored transition once, got {len(set(ids))} distinct ({sorted(ids)})",
            "sampling with replacement (see check_replay_distinct_samples)",
        )
    return ids


def _ids(memory: Any, batch_size: int) -> list[int]:
    call = f"memory.sample({batch_size})"
    rows = _rows(_invoke(call, memory.sample, batch_size))
    if len(rows) != batch_size:
        raise _fail(call, f"expected {batch_size} transitions, got {len(rows)}", None)
    return _ids_of(rows, call, _length(memory))


def _length(memory: Any) -> int:
    return int(_invoke("len(memory)", len, memory))


@_check("make_memory")
def check_replay_capacity(adapter: DQNAdapter) -> str:
    """len(memory) grows by one per push up to the capacity and then stays there."""
    capacity = 5
    memory = _memory(adapter, capacity)
    for i in range(3 * capacity):
        _push(memory, i)
        if _length(memory) != min(i + 1, capacity):
            raise _fail(
                f"len(memory) after {i + 1} pushes into make_memory({capacity}, 0)",
                f"expected {min(i + 1, capacity)}, got {_length(memory)} (exact)",
                "the memory is not bounded by its capacity"
                if i >= capacity
                else "push does not store every transition",
            )
    return f"len(memory) = min(pushes, {capacity}) for {3 * capacity} pushes"


@_check("make_memory")
def check_replay_eviction_order(adapter: DQNAdapter) -> str:
    """Once full, every push evicts the oldest transition (first in, first out)."""
    capacity = 5
    memory = _memory(adapter, capacity)
    for i in range(3 * capacity):
        _push(memory, i)
        size = min(i + 1, capacity)
        held = sorted(_ids(memory, size))
        expected = list(range(i + 1 - size, i + 1))
        if held != expected:
            newest = [*range(capacity - 1), i]
            cause = (
                "the newest transition is evicted instead of the oldest"
                if held == newest
                else "the ring's write position does not advance past the oldest transition"
            )
            raise _fail(
                f"memory.sample({size}) after pushing transitions 0..{i} into make_memory({capacity}, 0)",
                f"expected transitions {expected}, got {held}",
                cause,
            )
    return f"after each of {3 * capacity} pushes the memory holds exactly the {capacity} newest transitions"


@_check("make_memory")
def check_replay_cycling(adapter: DQNAdapter) -> str:
    """After many wraps of the ring every stored transition keeps its own action, next state and reward."""
    capacity, pushes = 7, 31
    memory = _memory(adapter, capacity)
    for i in range(pushes):
        _push(memory, i)
    sampled = _rows(_invoke(f"memory.sample({capacity})", memory.sample, capacity))
    held = _ids_of(sampled, f"memory.sample({capacity}) after {pushes} pushes", capacity)
    for row in sampled:
        i = round(float(torch.as_tensor(row.state).flatten()[0]))
        want = _item(i)
        checks = {
            "action": (torch.as_tensor(row.action).flatten(), want.action.flatten()),
            "reward": (torch.as_tensor(row.reward).flatten(), want.reward.flatten()),
        }
        for field, (got, exp) in checks.items():
            if got.tolist() != exp.tolist():
                raise _fail(
                    f"memory.sample({capacity}) after {pushes} pushes",
                    f"transition {i}: expected {field} {exp.tolist()}, got {got.tolist()}",
                    "a transition's fields were stored in different slots when the ring wrapped",
                )
        if (row.next_state is None) != (want.next_state is None) or (
            row.next_state is not None and float(torch.as_tensor(row.next_state).flatten()[0]) != i + 0.5
        ):
            raise _fail(
                f"memory.sample({capacity}) after {pushes} pushes",
                f"transition {i}: expected next_state {'None' if want.next_state is None else i + 0.5}, "
                f"got {None if row.next_state is None else float(torch.as_tensor(row.next_state).flatten()[0])}",
                "next_state=None (terminal) must be kept as such, and next states must stay with their transition",
            )
    expected = list(range(pushes - capacity, pushes))
    if sorted(held) != expected:
        raise _fail(
            f"memory.sample({capacity}) after {pushes} pushes",
            f"expected transitions {expected}, got {sorted(held)}",
            "the ring does not keep the newest transitions across several wraps",
        )
    return f"{pushes} pushes through a ring of {capacity}: the newest {capacity} kept, fields intact"


@_check("make_memory")
def check_replay_distinct_samples(adapter: DQNAdapter) -> str:
    """Samples are drawn without replacement, and asking for more than is stored raises."""
    capacity = 50
    memory = _memory(adapter, capacity)
    for i in range(capacity):
        _push(memory, i)
    for draw, size in enumerate([capacity] + [20] * 20):
        ids = _ids(memory, size)
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise _fail(
                f"memory.sample({size}) (draw {draw}) from a memory of {capacity}",
                f"expected {size} distinct transitions, got {len(set(ids))} distinct; repeated: {repeated[:10]}",
                "sampling with replacement (random.choices, np.random.randint): use random.sample",
            )
    try:
        memory.sample(capacity + 1)
    except Exception:
        return f"{21} draws without repeats; sample({capacity + 1}) of {capacity} raises"
    raise _fail(
        f"memory.sample({capacity + 1}) from a memory of {capacity}",
        "expected an exception, got a batch",
        "sampling with replacement hides a memory that is too small for the batch",
    )


@_check("make_memory")
def check_replay_no_aliasing(adapter: DQNAdapter) -> str:
    """The memory stores copies: the caller changing its tensors in place afterwards changes nothing stored."""
    memory = _memory(adapter, 4)
    item = _item(0)
    _invoke(
        "memory.push(state, action, next_state, reward)",
        memory.push,
        item.state,
        item.action,
        item.next_state,
        item.reward,
    )
    assert item.next_state is not None
    for tensor in (item.state, item.action, item.next_state, item.reward):
        tensor.fill_(-7)
    (row,) = _rows(_invoke("memory.sample(1)", memory.sample, 1))
    stored = {"state": row.state, "action": row.action, "next_state": row.next_state, "reward": row.reward}
    expected = {"state": 0.0, "action": 0.0, "next_state": 0.5, "reward": 0.0}
    for name, value in stored.items():
        got = float(torch.as_tensor(value).flatten()[0]) if value is not None else None
        if got != expected[name]:
            raise _fail(
                f"memory.sample(1) after the caller did {name}.fill_(-7) on the pushed tensor",
                f"expected the stored {name} to stay {expected[name]}, got {got}",
                "push stores a reference (alias) to the caller's tensor: store tensor.detach().clone()",
            )
    return "stored transitions are unaffected by in-place changes to the pushed tensors"


@_check("make_memory")
def check_replay_seeded_sampling(adapter: DQNAdapter) -> str:
    """Two memories with the same seed and pushes sample the same transitions, whatever the global RNGs do."""
    draws = []
    for global_seed in (1, 2):
        memory = _memory(adapter, 30, seed=3)
        for i in range(30):
            _push(memory, i)
        random.seed(global_seed)
        np.random.seed(global_seed)
        with _seeded(global_seed):
            draws.append([_ids(memory, 8) for _ in range(4)])
    if draws[0] != draws[1]:
        raise _fail(
            "memory.sample(8) x4 from two make_memory(30, 3) fed the same transitions",
            f"expected equal draws, got {draws[0][0]} vs {draws[1][0]} (first draw)",
            "sampling uses a global RNG (random, numpy or torch) instead of one seeded from the `seed` argument",
        )
    return "same seed, same pushes: same samples, independent of the global random/numpy/torch RNGs"


# --- exploration ----------------------------------------------------------------------------------------


def _epsilon_causes(rates: Callable[[int], Tensor]) -> dict[str, Tensor]:
    return {
        "off by one step: the rate was computed after incrementing steps_done (use the count before the step)": rates(
            +1
        ),
        "off by one step: the rate lags the step count by one": rates(-1),
    }


@_check("epsilon")
def check_epsilon_schedule(adapter: DQNAdapter) -> str:
    """epsilon(steps_done) = 0.05 + 0.85 * exp(-steps_done / 200) at the golden step counts."""
    assert adapter.epsilon is not None
    from dqnbench.policy import epsilon as reference

    data = golden.load().epsilon
    steps = data["steps"]
    got = torch.tensor([float(_invoke(f"epsilon({s})", adapter.epsilon, s)) for s in steps], dtype=torch.float64)
    expected = torch.tensor(data["values"], dtype=torch.float64)
    problem = _mismatch(got, expected, atol=1e-9, rtol=1e-7, labels=[f"steps_done={s}" for s in steps])
    if problem:
        cause = (
            _diagnose(
                got,
                _epsilon_causes(lambda shift: torch.tensor([reference(max(s + shift, 0)) for s in steps])),
                atol=1e-9,
                rtol=1e-7,
            )
            or "start 0.9, end 0.05 and decay 200 are the seed's constants; the decay is exp(-steps/decay)"
        )
        raise _fail("epsilon(steps_done) at the golden step counts", problem, cause)
    return f"{len(steps)} golden rates reproduced within atol=1e-9"


@_check("epsilon_trace")
def check_epsilon_trace(adapter: DQNAdapter) -> str:
    """Across episodes the acting loop uses epsilon(global step): no reset per episode, no off-by-one."""
    assert adapter.epsilon_trace is not None
    from dqnbench.policy import epsilon as reference

    data = golden.load().epsilon
    lengths = data["episode_lengths"]
    call = f"epsilon_trace({lengths})"
    got = torch.tensor([float(e) for e in _invoke(call, adapter.epsilon_trace, list(lengths))], dtype=torch.float64)
    expected = torch.tensor(data["trace"], dtype=torch.float64)
    starts = np.cumsum([0, *lengths[:-1]])
    labels = [f"episode {e}, step {t}" for e, n in enumerate(lengths) for t in range(n)]
    problem = _mismatch(got, expected, atol=1e-9, rtol=1e-7, labels=labels if len(got) == len(labels) else None)
    if problem:
        per_episode = torch.tensor([reference(t) for n in lengths for t in range(n)], dtype=torch.float64)
        causes = {"the step counter is reset every episode: count steps across episodes": per_episode}
        causes |= _epsilon_causes(lambda shift: torch.tensor([reference(max(s + shift, 0)) for s in range(len(got))]))
        cause = _diagnose(got, causes, atol=1e-9, rtol=1e-7) or (
            f"{call} must return one rate per step (episodes start at steps {starts.tolist()})"
        )
        raise _fail(call, problem, cause)
    return f"{len(expected)} steps over {len(lengths)} episodes use epsilon(global step)"


# --- acting ---------------------------------------------------------------------------------------------


def _acting_network(adapter: DQNAdapter, n_actions: int = golden.N_ACTIONS) -> nn.Module:
    """A network in train mode whose BatchNorm running statistics have moved away from their initial values."""
    net = _network(adapter, n_actions)
    with torch.no_grad():
        for seed in range(3):
            net(_screens(8, 100 + seed) * (seed + 1))
    return net


def _buffers(net: nn.Module) -> dict[str, Tensor]:
    return {name: b.detach().clone() for name, b in net.named_buffers()}


def _buffer_change(before: dict[str, Tensor], after: dict[str, Tensor]) -> str | None:
    for name, old in before.items():
        problem = _mismatch(after[name].cpu(), old.cpu(), atol=0, rtol=0, what=f"{name} entries")
        if problem:
            return f"buffer {name!r} changed: {problem}"
    return None


def _eval_argmax(net: nn.Module, states: Tensor) -> Tensor:
    frozen = copy.deepcopy(net).eval()
    with torch.no_grad():
        return frozen(states).argmax(dim=1, keepdim=True)


@_check("greedy_action")
def check_greedy_action_argmax(adapter: DQNAdapter) -> str:
    """greedy_action returns argmax_a Q(s, a) of the network in eval mode, as an (N, 1) long tensor."""
    assert adapter.greedy_action is not None
    net = _acting_network(adapter)
    states = _screens(16, 7)
    expected = _eval_argmax(net, states)
    got = _as_tensor(
        "greedy_action(net, states)", _invoke("greedy_action(net, 16 states)", adapter.greedy_action, net, states)
    )
    if got.dtype != torch.long or tuple(got.shape) != tuple(expected.shape):
        raise _fail(
            "greedy_action(net, 16 states)",
            f"expected a long tensor of shape (16, 1), got {got.dtype} {tuple(got.shape)}",
            "return q.argmax(dim=1, keepdim=True) (or q.max(1)[1].view(-1, 1))",
        )
    problem = _mismatch(got, expected, atol=0, rtol=0, what="actions")
    if problem:
        train_copy = copy.deepcopy(net).train()
        with torch.no_grad():
            train_choice = train_copy(states).argmax(dim=1, keepdim=True)
        cause = (
            "the network acted in train mode (BatchNorm used the batch's statistics): act in eval mode"
            if torch.equal(got, train_choice)
            else "not the arg max over actions (dim=1): argmin, or the wrong dimension?"
        )
        raise _fail("greedy_action(net, 16 states)", problem, cause)
    return "16 greedy actions equal argmax_a Q(s, a) in eval mode"


BN_CAUSE = (
    "the network acted in train mode, so BatchNorm running statistics moved towards the acted-on screen: "
    "switch to eval() around the forward pass and restore the mode afterwards"
)


@_check("greedy_action", "select_action", any_of=True)
def check_acting_keeps_batchnorm_stats(adapter: DQNAdapter) -> str:
    """Acting (greedy_action, select_action with eps=0) leaves BatchNorm statistics and the train mode as they were."""
    net = _acting_network(adapter)
    calls: list[tuple[str, Callable[[Tensor], Any]]] = []
    greedy, select = adapter.greedy_action, adapter.select_action
    if greedy is not None:
        calls.append(("greedy_action(net, state)", lambda s: greedy(net, s)))
    if select is not None:
        rng = random.Random(0)
        calls.append(("select_action(net, state, 0.0, 2, rng)", lambda s: select(net, s, 0.0, 2, rng)))
    for call, act in calls:
        before = _buffers(net)
        for i in range(3):
            _invoke(call, act, _screens(1, 200 + i))
        change = _buffer_change(before, _buffers(net))
        if change:
            raise _fail(f"{call} x3 on a network in train mode", change + " (exact match required)", BN_CAUSE)
        if not net.training:
            raise _fail(
                f"{call} on a network in train mode",
                "expected net.training=True afterwards, got False",
                "the mode is not restored after acting: training would go on in eval mode",
            )
    return f"{' and '.join(c for c, _ in calls)} leave BatchNorm buffers and train mode untouched"


@_check("select_action")
def check_select_action_epsilon_greedy(adapter: DQNAdapter) -> str:
    """eps=0 acts greedily; eps=1 acts uniformly at random using the rng passed in; (1, 1) long actions."""
    select = adapter.select_action
    assert select is not None
    n_actions, draws = 3, 600
    net = _acting_network(adapter, n_actions)
    states = _screens(4, 9)
    greedy = _eval_argmax(net, states)
    for i in range(len(states)):
        call = f"select_action(net, state {i}, 0.0, {n_actions}, rng)"
        got = _as_tensor(call, _invoke(call, select, net, states[i : i + 1], 0.0, n_actions, random.Random(i)))
        if got.dtype != torch.long or tuple(got.shape) != (1, 1):
            raise _fail(call, f"expected a (1, 1) long tensor, got {got.dtype} {tuple(got.shape)}", None)
        if int(got) != int(greedy[i]):
            raise _fail(
                call,
                f"expected the greedy action {int(greedy[i])}, got {int(got)}",
                "with eps=0 the action must be the arg max of Q (in eval mode)",
            )

    def random_actions(seed: int) -> list[int]:
        rng = random.Random(seed)
        call = f"select_action(net, state, 1.0, {n_actions}, rng)"
        return [int(_invoke(call, select, net, states[:1], 1.0, n_actions, rng)) for _ in range(draws)]

    first = random_actions(0)
    counts = [first.count(a) for a in range(n_actions)]
    mean, sd = draws / n_actions, (draws * (1 / n_actions) * (1 - 1 / n_actions)) ** 0.5
    worst = max(range(n_actions), key=lambda a: abs(counts[a] - mean))
    if abs(counts[worst] - mean) > 5 * sd:
        raise _fail(
            f"{draws} x select_action(net, state, 1.0, {n_actions}, rng)",
            f"action counts {counts}; expected about {mean:.0f} each, action {worst} is off by "
            f"{abs(counts[worst] - mean):.0f} > 5 standard deviations ({5 * sd:.0f})",
            "random actions must be uniform over range(n_actions): is n_actions hard-coded, or eps compared the "
            "wrong way round (random when rng.random() > eps)?",
        )
    if random_actions(0) != first:
        raise _fail(
            f"select_action(..., rng=random.Random(0)) x{draws}, twice",
            "expected the same actions from equally seeded rngs, got different ones",
            "random actions do not come from the rng argument (global random, numpy or torch RNG?)",
        )
    return f"eps=0 greedy on {len(states)} states; eps=1 uniform over {n_actions} actions ({counts}) from the given rng"


# --- optimisation ---------------------------------------------------------------------------------------


class RecordingSGD(torch.optim.SGD):
    """Plain SGD that keeps a copy of the gradients it was stepped with."""

    def __init__(self, params: Any, lr: float) -> None:
        super().__init__(params, lr=lr)
        self.recorded: list[list[Tensor | None]] = []

    def step(self, closure: Any = None) -> Any:
        self.recorded.append(
            [
                None if p.grad is None else p.grad.detach().clone()
                for group in self.param_groups
                for p in group["params"]
            ]
        )
        return super().step(closure)


OPTIMIZE_GAMMA = 0.9
DESCENT_STEPS = 10


def optimize_batch() -> TransitionBatch:
    """Screens of the seed's size with the golden batch's actions, rewards and episode-end flags."""
    data = golden.load().bellman
    size = len(data["rewards"])
    return TransitionBatch(
        states=_screens(size, 11),
        actions=torch.from_numpy(data["actions"]),
        rewards=torch.from_numpy(data["rewards"]),
        next_states=_screens(size, 12),
        terminated=torch.from_numpy(data["terminated"]),
        truncated=torch.from_numpy(data["truncated"]),
    )


def _loss_variants(
    policy: nn.Module, target: nn.Module, batch: TransitionBatch, gamma: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """The correct loss and, keyed by likely cause, the losses known bugs give; on copies of the networks."""
    policy, target = copy.deepcopy(policy).train(), copy.deepcopy(target)
    with torch.no_grad():
        q = policy(batch.states)
        q_next = target(batch.next_states)
    best = q_next.double().max(dim=1).values
    targets = batch.rewards.double() + gamma * torch.where(batch.terminated, torch.zeros_like(best), best)
    chosen = q.gather(1, batch.actions).squeeze(1).double()
    variants = {cause: F.smooth_l1_loss(chosen, t) for cause, t in _bellman_variants(q_next, batch, gamma).items()}
    variants["Q(s, a) gathered along dim 0 (the batch) instead of dim 1 (the actions)"] = F.smooth_l1_loss(
        q.gather(0, batch.actions).squeeze(1).double(), targets
    )
    variants["mean squared error instead of the Huber (smooth L1) loss"] = F.mse_loss(chosen, targets)
    return F.smooth_l1_loss(chosen, targets), variants


def _optimize_setup(adapter: DQNAdapter) -> tuple[nn.Module, nn.Module, TransitionBatch]:
    policy = _network(adapter)
    target = copy.deepcopy(policy).eval()
    target.requires_grad_(True)  # so that a missing detach shows as gradients in the target
    return policy, target, optimize_batch()


def _step(
    adapter: DQNAdapter,
    policy: nn.Module,
    target: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: TransitionBatch,
    grad_clip: float,
) -> float:
    assert adapter.optimize_step is not None
    call = f"optimize_step(policy, target, optimizer, batch, {OPTIMIZE_GAMMA}, {grad_clip:g})"
    loss = _invoke(call, adapter.optimize_step, policy, target, optimizer, batch, OPTIMIZE_GAMMA, grad_clip)
    return float(_as_tensor(call, loss))


@_check("optimize_step")
def check_optimize_loss(adapter: DQNAdapter) -> str:
    """The loss is the Huber loss of Q(s, a) against r + gamma * max_a Q_target(s', a), masked where terminated."""
    policy, target, batch = _optimize_setup(adapter)
    correct, variants = _loss_variants(policy, target, batch, OPTIMIZE_GAMMA)
    got = _step(adapter, policy, target, RecordingSGD(policy.parameters(), lr=1e-3), batch, 1.0)
    expected = float(correct)
    rtol, atol = 1e-4, 1e-6
    problem = _mismatch(torch.tensor(got), torch.tensor(expected), atol=atol, rtol=rtol, what="loss values")
    if problem:
        cause = _diagnose(torch.tensor(got), {k: v.float() for k, v in variants.items()}, atol=atol, rtol=rtol)
        raise _fail(
            f"optimize_step(policy, target, optimizer, batch, {OPTIMIZE_GAMMA}, 1) on an 11-transition batch",
            problem,
            cause or "the returned value is not the loss before the step, or the targets/Q-values differ",
        )
    return f"loss {got:.6g} equals the reference's within rtol={rtol:g}"


@_check("optimize_step")
def check_optimize_gradients_clamped(adapter: DQNAdapter) -> str:
    """optimizer.step() sees every gradient element clamped to [-grad_clip, grad_clip], the large ones at the bound."""
    policy, target, batch = _optimize_setup(adapter)
    names = [name for name, _ in policy.named_parameters()]
    optimizer = RecordingSGD(policy.parameters(), lr=1e-3)
    call = f"optimize_step(policy, target, optimizer, batch, {OPTIMIZE_GAMMA}, grad_clip={GRAD_CLIP_PROBE:g})"
    _step(adapter, policy, target, optimizer, batch, GRAD_CLIP_PROBE)
    if not optimizer.recorded:
        raise _fail(call, "optimizer.step() was never called", "step the optimizer that is passed in")
    grads = [(name, g) for name, g in zip(names, optimizer.recorded[-1], strict=True) if g is not None]
    for name, grad in grads:
        over = grad.abs() > GRAD_CLIP_PROBE * (1 + 1e-6)
        if bool(over.any()):
            index = tuple(int(i) for i in torch.nonzero(over)[0])
            raise _fail(
                call,
                f"gradient of {name!r} at {index} is {float(grad[index]):.4g}; expected within "
                f"[-{GRAD_CLIP_PROBE:g}, {GRAD_CLIP_PROBE:g}] ({int(over.sum())} elements outside)",
                "the gradient clamp is missing, ignores grad_clip, or runs after optimizer.step()",
            )
    # The seed network's gradients are mostly far above the probe clip, so an element-wise clamp leaves many
    # elements exactly at the bound; rescaling by the norm leaves none there.
    at_bound = sum(
        int(torch.isclose(g.abs(), torch.tensor(GRAD_CLIP_PROBE), rtol=1e-5, atol=0).sum()) for _, g in grads
    )
    if at_bound == 0:
        largest = max((float(g.abs().max()) for _, g in grads), default=0.0)
        raise _fail(
            call,
            f"expected gradient elements clamped to ±{GRAD_CLIP_PROBE:g}, got none at the bound (largest |grad| "
            f"{largest:.4g}, tolerance rtol=1e-5)",
            "gradients were rescaled (clip_grad_norm_) instead of clamped element-wise (clamp_(-c, c))"
            if largest > 0
            else "no gradient reached the optimizer: is backward() called before optimizer.step()?",
        )
    return f"{at_bound} gradient elements reached the optimizer clamped to ±{GRAD_CLIP_PROBE:g}, none beyond"


@_check("optimize_step")
def check_optimize_no_gradient_into_target(adapter: DQNAdapter) -> str:
    """The step changes neither the target network's parameters and buffers nor gives it gradients."""
    policy, target, batch = _optimize_setup(adapter)
    before = {name: t.detach().clone() for name, t in target.state_dict().items()}
    call = f"optimize_step(policy, target, optimizer, batch, {OPTIMIZE_GAMMA}, 1)"
    _step(adapter, policy, target, RecordingSGD(policy.parameters(), lr=1e-2), batch, 1.0)
    for name, param in target.named_parameters():
        if param.grad is not None and bool(param.grad.ne(0).any()):
            raise _fail(
                call + " with a target whose parameters require grad",
                f"target parameter {name!r} received a gradient (max |grad| {float(param.grad.abs().max()):.4g}); "
                "expected none",
                "missing detach: the next-state values must be computed under torch.no_grad() or detached",
            )
    for name, value in target.state_dict().items():
        problem = _mismatch(value.cpu(), before[name].cpu(), atol=0, rtol=0, what=f"{name} entries")
        if problem:
            cause = (
                "the target network ran in train mode: BatchNorm statistics moved (keep the target in eval mode)"
                if "running" in name or "num_batches" in name
                else "the target's parameters were updated: is the target aliased to the policy network?"
            )
            raise _fail(call, f"target {name!r} changed: {problem}", cause)
    return "target parameters and buffers unchanged, no gradient reached them"


@_check("optimize_step")
def check_optimize_loss_decreases(adapter: DQNAdapter) -> str:
    """Steps on one fixed batch (Adam, lr 1e-3, fixed target) drive the loss below half its first value."""
    policy, target, batch = _optimize_setup(adapter)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    losses = [_step(adapter, policy, target, optimizer, batch, 1.0) for _ in range(DESCENT_STEPS)]
    # Adam's first steps overshoot on 11 transitions; the mean of the last three is a steadier measure.
    final = sum(losses[-3:]) / 3
    if not final < 0.5 * losses[0]:
        raise _fail(
            f"{DESCENT_STEPS} x optimize_step(policy, target, Adam(lr=1e-3), fixed batch, 0.9, 1)",
            f"expected the mean of the last 3 losses below half the first ({0.5 * losses[0]:.4g}), got {final:.4g} "
            f"(losses {[round(x, 4) for x in losses]})",
            "the step does not descend the TD loss: optimizer.zero_grad()/backward()/step() missing or in the wrong "
            "order, or the gradient has the wrong sign",
        )
    return f"loss {losses[0]:.4g} -> {final:.4g} (mean of the last 3) in {DESCENT_STEPS} steps on a fixed batch"


# --- target network -------------------------------------------------------------------------------------


def _perturb(net: nn.Module) -> None:
    """Change every parameter and BatchNorm buffer of `net` in place."""
    with torch.no_grad():
        for param in net.parameters():
            param.add_(0.25)
        net.train()
        net(_screens(8, 300) * 2)


def _first_difference(a: nn.Module, b: nn.Module) -> str | None:
    state_a, state_b = a.state_dict(), b.state_dict()
    for name, value in state_a.items():
        problem = _mismatch(state_b[name].cpu(), value.cpu(), atol=0, rtol=0, what=f"{name} entries")
        if problem:
            return f"{name!r}: {problem}"
    return None


def _shared_storage(a: nn.Module, b: nn.Module) -> list[str]:
    pointers = {t.data_ptr() for t in a.state_dict().values() if t.numel()}
    return [name for name, t in b.state_dict().items() if t.numel() and t.data_ptr() in pointers]


@_check("make_target")
def check_target_not_aliased(adapter: DQNAdapter) -> str:
    """make_target returns an equal but independent copy: changing the policy afterwards leaves it alone."""
    assert adapter.make_target is not None
    policy = _network(adapter)
    target = _invoke("make_target(policy)", adapter.make_target, policy)
    if target is policy:
        raise _fail(
            "make_target(policy)",
            "expected a new module, got the policy network itself",
            "the target is aliased to the policy network: use copy.deepcopy(policy)",
        )
    difference = _first_difference(policy, target)
    if difference:
        raise _fail(
            "make_target(policy)",
            f"target differs from the policy at {difference}",
            "the target must start as an exact copy (parameters and buffers)",
        )
    shared = _shared_storage(policy, target)
    if shared:
        raise _fail(
            "make_target(policy)",
            f"target shares storage with the policy for {shared[:5]}",
            "the target is aliased to the policy network's tensors: use copy.deepcopy",
        )
    _perturb(policy)
    if _first_difference(policy, target) is None:
        raise _fail(
            "make_target(policy), then changing the policy in place",
            "expected the target to keep its values, got the policy's new values",
            "the target is aliased to the policy network",
        )
    return "the target is an exact, independent copy"


@_check("make_target")
def check_target_eval_mode(adapter: DQNAdapter) -> str:
    """The target network is in eval mode (every submodule) after make_target and after sync_target."""
    assert adapter.make_target is not None
    policy = _network(adapter)
    target = _invoke("make_target(policy)", adapter.make_target, policy)
    # Inspect after each call: sync_target may switch the target to eval and hide make_target's omission.
    _require_eval_mode("make_target(policy)", target)
    if adapter.sync_target is not None:
        _invoke("sync_target(policy, target)", adapter.sync_target, policy, target)
        _require_eval_mode("make_target(policy); sync_target(policy, target)", target)
    return "target in eval mode" + (" after creation and after sync" if adapter.sync_target else " after creation")


def _require_eval_mode(call: str, module: nn.Module) -> None:
    training = [name or "<root>" for name, m in module.named_modules() if m.training]
    if training:
        raise _fail(
            call,
            f"expected every submodule in eval mode, got train mode in {training[:5]}",
            "target left in train mode: its BatchNorm layers would use batch statistics and move "
            "their running statistics; call target.eval()",
        )


@_check("sync_target")
def check_target_sync(adapter: DQNAdapter) -> str:
    """sync_target copies every parameter and BatchNorm buffer, keeps the target in eval mode and shares nothing."""
    assert adapter.sync_target is not None
    policy = _network(adapter)
    target = _network(adapter, seed=1).eval()
    _perturb(policy)
    _invoke("sync_target(policy, target)", adapter.sync_target, policy, target)
    difference = _first_difference(policy, target)
    if difference:
        cause = (
            "BatchNorm running statistics were not copied: copy buffers too (load_state_dict(policy.state_dict()))"
            if "running" in difference or "num_batches" in difference
            else "parameters were not copied"
        )
        raise _fail("sync_target(policy, target)", f"target differs from the policy at {difference}", cause)
    if target.training:
        raise _fail(
            "sync_target(policy, target)",
            "expected the target in eval mode, got train mode",
            "sync_target must leave the target in eval mode",
        )
    shared = _shared_storage(policy, target)
    if shared:
        raise _fail(
            "sync_target(policy, target)",
            f"target shares storage with the policy for {shared[:5]}",
            "the target is aliased to the policy network's tensors: copy values, not references",
        )
    return "parameters and BatchNorm buffers copied, eval mode kept, no shared storage"


# --- screen extraction ----------------------------------------------------------------------------------


def _screen_cause(got: Tensor, expected: Tensor) -> str:
    if tuple(got.shape) != tuple(expected.shape):
        return "crop or resize differ from the seed's: rows 40%-80%, a 60%-wide window on the cart, resize to 40 rows"
    if float(got.max()) > 1.5:
        return "pixel values were not divided by 255"
    if bool(torch.isclose(got.flip(1), expected, atol=SCREEN_ATOL).all()):
        return "colour channels reversed (RGB vs BGR)"
    return (
        "the crop window or the cart's pixel column differs (clamping at the edges? the screen width taken from "
        "the frame, not assumed 600?) or a different resize (the seed uses PIL bicubic on uint8)"
    )


def _compare_patch(call: str, raw: Any, expected: Tensor) -> None:
    got = _as_tensor(call, raw).to(torch.float32)
    problem = _mismatch(got, expected, atol=SCREEN_ATOL, rtol=0, what="pixels")
    if problem:
        raise _fail(call, problem, _screen_cause(got, expected))


def _golden_patch(uint8: np.ndarray) -> Tensor:
    return torch.from_numpy(uint8.astype(np.float32) / 255)


def _check_frames(adapter: DQNAdapter, frames: Sequence[np.ndarray], states: np.ndarray, patches: np.ndarray) -> None:
    assert adapter.extract_screen is not None
    for frame, state, patch in zip(frames, states, patches, strict=True):
        given = frame.copy()
        call = f"extract_screen(<{frame.shape[0]}x{frame.shape[1]} frame>, cart_x={float(state[0]):g})"
        _compare_patch(call, _invoke(call, adapter.extract_screen, given, float(state[0])), _golden_patch(patch))
        if not np.array_equal(given, frame):
            raise _fail(call, "the frame passed in was modified", "the extraction writes into the caller's frame")


@_check("extract_screen")
def check_screen_patches(adapter: DQNAdapter) -> str:
    """extract_screen reproduces the golden patches of 400x600 renders (cart centred and clamped at both edges)."""
    data = golden.load().screens
    _check_frames(adapter, list(data["frames"]), data["cart_states"], data["patches"])
    return f"{len(data['frames'])} golden 400x600 patches within atol=1/255"


@_check("extract_screen")
def check_screen_large_render(adapter: DQNAdapter) -> str:
    """extract_screen handles an 800x1200 render (the seed notes gym sometimes returns one) like the reference."""
    data = golden.load().screens
    _check_frames(adapter, [data["large_frame"]], data["large_cart_state"][None], data["large_patch"][None])
    return "the 800x1200 golden patch within atol=1/255"


@_check("get_screen")
def check_get_screen(adapter: DQNAdapter) -> str:
    """get_screen(env) equals the reference's patch of the same live render, for several cart positions."""
    assert adapter.get_screen is not None
    from dqnbench.envs import make_env
    from dqnbench.screen import extract_screen

    env = make_env("CartPole-v1")
    try:
        env.reset(seed=0)
        cartpole: Any = env.unwrapped
        for state in golden.CART_STATES[::2]:
            cartpole.state = np.array(state)
            call = f"get_screen(env) with the cart at x={state[0]:g}"
            raw = _invoke(call, adapter.get_screen, env)
            expected = extract_screen(np.asarray(env.render()), state[0], cartpole.x_threshold, golden.SCREEN_HEIGHT)
            _compare_patch(call, raw, expected)
    finally:
        env.close()
    return f"{len(golden.CART_STATES[::2])} live renders match the reference's patch within atol=1/255"
