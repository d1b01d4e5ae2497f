"""Helpers shared by the correctness tests."""

import copy
from collections.abc import Mapping

import pytest
import torch
from torch import Tensor, nn

from dqnbench.bench.subjects import fast_subject
from dqnbench.bench.workload import render_screens, sampled_batch
from dqnbench.learner import Batch, make_target, optimize_step

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, needs_cuda])]
"""A test's `device` parameter: the CPU always, CUDA where a GPU is present (`pytest -m cuda` selects it)."""


def snapshot(net: nn.Module) -> dict[str, Tensor]:
    """A copy of every parameter and buffer (BatchNorm running statistics and batch counts included)."""
    return {name: value.detach().clone() for name, value in net.state_dict().items()}


def assert_same_state(expected: Mapping[str, Tensor], got: Mapping[str, Tensor], what: str) -> None:
    """Element-by-element equality of two state dicts; a failure names the entry and the largest difference."""
    assert expected.keys() == got.keys(), f"{what}: entries differ: {sorted(expected.keys() ^ got.keys())}"
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=lambda m, name=name: f"{what}, {name}: {m}")


def changed_entries(before: Mapping[str, Tensor], after: Mapping[str, Tensor]) -> list[str]:
    return [name for name, value in before.items() if not torch.equal(value, after[name])]


STEP_TOLERANCE = 1e-5
GRADIENT_NOISE = 1e-4
"""RMSprop's first step moves every parameter by about lr / sqrt(1 - alpha) = 0.1 in the direction of its
gradient, whatever the gradient's size. Gradients that are zero up to float rounding (a conv bias followed by
BatchNorm, which cancels it) therefore get a +-0.1 step whose sign is rounding noise, in any implementation.
Updates are compared where the expected gradient is above this."""


def assert_same_step(
    call: str,
    expected: nn.Module,
    got: nn.Module,
    expected_loss: Tensor,
    got_loss: Tensor,
    exact: nn.Module | None = None,
) -> int:
    """After one optimisation step on each network: loss, gradients, buffers and (where the gradient is clearly
    not noise) parameters equal within `STEP_TOLERANCE`. Returns how many parameter entries were compared.

    With `exact` (the float64 step, `float64_step`), a gradient that float32 cannot pin down to 1e-5, one the
    expected step itself has more than 1e-5 from float64 (a conv bias before BatchNorm: zero by construction,
    rounding only), need only be as close to float64 as the expected one is (`_as_accurate`).
    """
    tol = STEP_TOLERANCE
    torch.testing.assert_close(got_loss, expected_loss, rtol=tol, atol=tol, msg=lambda m: f"{call}: loss: {m}")
    compared = 0
    exact_grads = [p.grad for p in exact.parameters()] if exact is not None else [None for _ in got.parameters()]
    for (name, p_expected), p_got, exact_grad in zip(
        expected.named_parameters(), got.parameters(), exact_grads, strict=True
    ):
        if exact_grad is not None and _error(p_expected.grad, exact_grad) > tol:
            _as_accurate(call, f"grad {name}", exact_grad, p_expected.grad, p_got.grad)
        else:
            torch.testing.assert_close(
                p_got.grad, p_expected.grad, rtol=tol, atol=tol, msg=lambda m, n=name: f"{call}: grad {n}: {m}"
            )
        clear = p_expected.grad.abs() > GRADIENT_NOISE
        torch.testing.assert_close(
            p_got.detach()[clear],
            p_expected.detach()[clear],
            rtol=tol,
            atol=tol,
            msg=lambda m, n=name: f"{call}: {n} after the step, where |grad| > {GRADIENT_NOISE:g}: {m}",
        )
        compared += int(clear.sum())
    for (name, b_expected), b_got in zip(expected.named_buffers(), got.buffers(), strict=True):
        torch.testing.assert_close(
            b_got, b_expected, rtol=tol, atol=tol, msg=lambda m, n=name: f"{call}: buffer {n}: {m}"
        )
    return compared


def screen_batch(size: int = 128) -> Batch:
    """A batch of the seed's real states: differences of drawn CartPole screens, about 90 % zeros.

    Unlike uniform random states, the first conv's output is then dominated by its bias: what a BatchNorm
    summing its statistics naively in float32 gets wrong (`dqnbench.fast.batchnorm`).
    """
    subject = fast_subject()
    return sampled_batch(subject, render_screens(subject, 64, torch.device("cpu")), size).materialize()


def float64_step(
    reference: nn.Module, batch: Batch, *, gamma: float, lr: float, double_dqn: bool = False
) -> tuple[nn.Module, Tensor]:
    """The reference's step in float64 on a copy of `reference` (as it was before its own step): the oracle."""
    exact = copy.deepcopy(reference).double()
    in_float64 = Batch(
        batch.states.double(), batch.actions, batch.rewards.double(), batch.non_final_mask,
        batch.non_final_next_states.double(),
    )  # fmt: skip
    loss = optimize_step(exact, make_target(exact), torch.optim.RMSprop(exact.parameters(), lr=lr), in_float64,
                         gamma=gamma, double_dqn=double_dqn)  # fmt: skip
    return exact, loss


def assert_as_accurate_as_reference(
    call: str, exact: nn.Module, reference: nn.Module, got: nn.Module, exact_loss: Tensor, got_loss: Tensor
) -> None:
    """Each gradient and buffer (BatchNorm's running statistics) of `got` is as close to the float64 step's as
    the float32 reference's is, give or take `STEP_TOLERANCE`: |got - exact| <= 2 |reference - exact| + 1e-5 per
    tensor.

    For implementations that do not share the reference's kernels (CUDA against the CPU), where elementwise
    equality within 1e-5 is not a property of float32 at all: the reference itself is up to 6e-5 from float64
    on screen differences (conv biases under BatchNorm, whose exact gradient is zero, hold only rounding).
    """
    torch.testing.assert_close(got_loss.double(), exact_loss, rtol=STEP_TOLERANCE, atol=STEP_TOLERANCE,
                               msg=lambda m: f"{call}: loss vs float64: {m}")  # fmt: skip
    gradients = [
        (f"grad {name}", p_exact.grad, p_reference.grad, p_got.grad)
        for (name, p_exact), p_reference, p_got in zip(
            exact.named_parameters(), reference.parameters(), got.parameters(), strict=True
        )
    ]
    buffers = [
        (f"buffer {name}", b_exact, b_reference, b_got)
        for (name, b_exact), b_reference, b_got in zip(
            exact.named_buffers(), reference.buffers(), got.buffers(), strict=True
        )
    ]
    for what, exact_value, reference_value, got_value in gradients + buffers:
        _as_accurate(call, what, exact_value, reference_value, got_value)


def _error(value: Tensor, exact: Tensor) -> float:
    return float((value.double() - exact.double()).abs().max())


def _as_accurate(call: str, what: str, exact: Tensor, reference: Tensor, got: Tensor) -> None:
    """|got - exact| <= 2 |reference - exact| + `STEP_TOLERANCE` (largest elementwise differences)."""
    reference_error, got_error = _error(reference, exact), _error(got, exact)
    allowed = 2 * reference_error + STEP_TOLERANCE
    assert got_error <= allowed, (
        f"{call}: {what} is {got_error:.3g} from the float64 step's, the reference's is "
        f"{reference_error:.3g}; allowed 2 x that + {STEP_TOLERANCE:g} = {allowed:.3g}"
    )
