"""Optimize-step checks: the loss, the gradient clamp, the target's isolation, descent."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dqnbench.conformance import golden
from dqnbench.conformance.adapter import DQNAdapter, TransitionBatch
from dqnbench.conformance.checks.bellman import bellman_variants
from dqnbench.conformance.checks.core import (
    GRAD_CLIP_PROBE,
    as_tensor,
    build_network,
    diagnose,
    fail,
    invoke,
    mismatch,
    register_check,
    screens,
)


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
        states=screens(size, 11),
        actions=torch.from_numpy(data["actions"]),
        rewards=torch.from_numpy(data["rewards"]),
        next_states=screens(size, 12),
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
    variants = {cause: F.smooth_l1_loss(chosen, t) for cause, t in bellman_variants(q_next, batch, gamma).items()}
    variants["Q(s, a) gathered along dim 0 (the batch) instead of dim 1 (the actions)"] = F.smooth_l1_loss(
        q.gather(0, batch.actions).squeeze(1).double(), targets
    )
    variants["mean squared error instead of the Huber (smooth L1) loss"] = F.mse_loss(chosen, targets)
    return F.smooth_l1_loss(chosen, targets), variants


def _optimize_setup(adapter: DQNAdapter) -> tuple[nn.Module, nn.Module, TransitionBatch]:
    policy = build_network(adapter)
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
    loss = invoke(call, adapter.optimize_step, policy, target, optimizer, batch, OPTIMIZE_GAMMA, grad_clip)
    return float(as_tensor(call, loss))


@register_check("optimize_step")
def check_optimize_loss(adapter: DQNAdapter) -> str:
    """The loss is the Huber loss of Q(s, a) against r + gamma * max_a Q_target(s', a), masked where terminated."""
    policy, target, batch = _optimize_setup(adapter)
    correct, variants = _loss_variants(policy, target, batch, OPTIMIZE_GAMMA)
    got = _step(adapter, policy, target, RecordingSGD(policy.parameters(), lr=1e-3), batch, 1.0)
    expected = float(correct)
    rtol, atol = 1e-4, 1e-6
    problem = mismatch(torch.tensor(got), torch.tensor(expected), atol=atol, rtol=rtol, what="loss values")
    if problem:
        cause = diagnose(torch.tensor(got), {k: v.float() for k, v in variants.items()}, atol=atol, rtol=rtol)
        raise fail(
            f"optimize_step(policy, target, optimizer, batch, {OPTIMIZE_GAMMA}, 1) on an 11-transition batch",
            problem,
            cause or "the returned value is not the loss before the step, or the targets/Q-values differ",
        )
    return f"loss {got:.6g} equals the reference's within rtol={rtol:g}"


@register_check("optimize_step")
def check_optimize_gradients_clamped(adapter: DQNAdapter) -> str:
    """optimizer.step() sees every gradient element clamped to [-grad_clip, grad_clip], the large ones at the bound."""
    policy, target, batch = _optimize_setup(adapter)
    names = [name for name, _ in policy.named_parameters()]
    optimizer = RecordingSGD(policy.parameters(), lr=1e-3)
    call = f"optimize_step(policy, target, optimizer, batch, {OPTIMIZE_GAMMA}, grad_clip={GRAD_CLIP_PROBE:g})"
    _step(adapter, policy, target, optimizer, batch, GRAD_CLIP_PROBE)
    if not optimizer.recorded:
        raise fail(call, "optimizer.step() was never called", "step the optimizer that is passed in")
    grads = [(name, g) for name, g in zip(names, optimizer.recorded[-1], strict=True) if g is not None]
    for name, grad in grads:
        over = grad.abs() > GRAD_CLIP_PROBE * (1 + 1e-6)
        if bool(over.any()):
            index = tuple(int(i) for i in torch.nonzero(over)[0])
            raise fail(
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
        raise fail(
            call,
            f"expected gradient elements clamped to ±{GRAD_CLIP_PROBE:g}, got none at the bound (largest |grad| "
            f"{largest:.4g}, tolerance rtol=1e-5)",
            "gradients were rescaled (clip_grad_norm_) instead of clamped element-wise (clamp_(-c, c))"
            if largest > 0
            else "no gradient reached the optimizer: is backward() called before optimizer.step()?",
        )
    return f"{at_bound} gradient elements reached the optimizer clamped to ±{GRAD_CLIP_PROBE:g}, none beyond"


@register_check("optimize_step")
def check_optimize_no_gradient_into_target(adapter: DQNAdapter) -> str:
    """The step changes neither the target network's parameters and buffers nor gives it gradients."""
    policy, target, batch = _optimize_setup(adapter)
    before = {name: t.detach().clone() for name, t in target.state_dict().items()}
    call = f"optimize_step(policy, target, optimizer, batch, {OPTIMIZE_GAMMA}, 1)"
    _step(adapter, policy, target, RecordingSGD(policy.parameters(), lr=1e-2), batch, 1.0)
    for name, param in target.named_parameters():
        if param.grad is not None and bool(param.grad.ne(0).any()):
            raise fail(
                call + " with a target whose parameters require grad",
                f"target parameter {name!r} received a gradient (max |grad| {float(param.grad.abs().max()):.4g}); "
                "expected none",
                "missing detach: the next-state values must be computed under torch.no_grad() or detached",
            )
    for name, value in target.state_dict().items():
        problem = mismatch(value.cpu(), before[name].cpu(), atol=0, rtol=0, what=f"{name} entries")
        if problem:
            cause = (
                "the target network ran in train mode: BatchNorm statistics moved (keep the target in eval mode)"
                if "running" in name or "num_batches" in name
                else "the target's parameters were updated: is the target aliased to the policy network?"
            )
            raise fail(call, f"target {name!r} changed: {problem}", cause)
    return "target parameters and buffers unchanged, no gradient reached them"


@register_check("optimize_step")
def check_optimize_loss_decreases(adapter: DQNAdapter) -> str:
    """Steps on one fixed batch (Adam, lr 1e-3, fixed target) drive the loss below half its first value."""
    policy, target, batch = _optimize_setup(adapter)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    losses = [_step(adapter, policy, target, optimizer, batch, 1.0) for _ in range(DESCENT_STEPS)]
    # Adam's first steps overshoot on 11 transitions; the mean of the last three is a steadier measure.
    final = sum(losses[-3:]) / 3
    if not final < 0.5 * losses[0]:
        raise fail(
            f"{DESCENT_STEPS} x optimize_step(policy, target, Adam(lr=1e-3), fixed batch, 0.9, 1)",
            f"expected the mean of the last 3 losses below half the first ({0.5 * losses[0]:.4g}), got {final:.4g} "
            f"(losses {[round(x, 4) for x in losses]})",
            "the step does not descend the TD loss: optimizer.zero_grad()/backward()/step() missing or in the wrong "
            "order, or the gradient has the wrong sign",
        )
    return f"loss {losses[0]:.4g} -> {final:.4g} (mean of the last 3) in {DESCENT_STEPS} steps on a fixed batch"
