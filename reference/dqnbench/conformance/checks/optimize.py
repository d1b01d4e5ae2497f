"""Optimize-step checks: the loss, the gradient clamp, the target's isolation, descent."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dqnbench.conformance import golden
from dqnbench.conformance.adapter import DQNAdapter, TransitionBatch
from dqnbench.conformance.checks.bellman import bellman_variants
from dqnbench.conformance.checks.core import (
    GRAD_CLIP_PROBE,
    NotApplicable,
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
    gamma: float = OPTIMIZE_GAMMA,
) -> float:
    assert adapter.optimize_step is not None
    call = f"optimize_step(policy, target, optimizer, batch, {gamma:g}, {grad_clip:g})"
    loss = invoke(call, adapter.optimize_step, policy, target, optimizer, batch, gamma, grad_clip)
    return float(as_tensor(call, loss))


BOOTSTRAP_OFFSET, BOOTSTRAP_SCALE = 10.0, 5.0
"""The distinct target's head is scaled by 5 and shifted by 10, so that its Q-values (about 10, and varying
between actions and states) dominate the TD targets: a wrong source of bootstrap values, or a wrong discount,
moves the loss by far more than the tolerance."""
LOSS_RTOL, LOSS_ATOL = 1e-4, 1e-6
LOSSES: dict[str, Callable[..., Tensor]] = {"Huber": F.smooth_l1_loss, "MSE": F.mse_loss}
"""The TD losses the bootstrap and discount checks accept: they judge the targets, whichever loss is used
(`check_optimize_loss` judges the loss itself)."""


def distinct_target(adapter: DQNAdapter) -> nn.Module:
    """A target network that differs from the policy: other weights, and a head scaled to dominate the targets."""
    target = build_network(adapter, seed=1).eval()
    heads = [m for m in target.modules() if isinstance(m, nn.Linear)]
    if not heads:
        raise NotApplicable(
            f"the check scales the Q-network's last nn.Linear layer so that bootstrap values dominate, and "
            f"{adapter.name}'s network has none"
        )
    with torch.no_grad():
        heads[-1].weight.mul_(BOOTSTRAP_SCALE)
        if heads[-1].bias is not None:
            heads[-1].bias.add_(BOOTSTRAP_OFFSET)
    return target.requires_grad_(True)


def _chosen_q(policy: nn.Module, batch: TransitionBatch) -> Tensor:
    """Q(s, a) of the policy in train mode (as the step computes it), on a copy."""
    with torch.no_grad():
        return copy.deepcopy(policy).train()(batch.states).gather(1, batch.actions).squeeze(1).double()


def _values(net: nn.Module, states: Tensor, *, train: bool = False) -> Tensor:
    with torch.no_grad():
        return copy.deepcopy(net).train(train)(states).double()


def _td_targets(best: Tensor, batch: TransitionBatch, gamma: float) -> Tensor:
    return batch.rewards.double() + gamma * torch.where(batch.terminated, torch.zeros_like(best), best)


DOUBLE_DQN = "Double DQN targets (the policy picks the next action, the target values it) where plain DQN is declared"


def _double_dqn_values(policy: nn.Module, q_target: Tensor, batch: TransitionBatch) -> list[Tensor]:
    """Double-DQN bootstrap values, the policy choosing the next action in eval mode, then in train mode."""
    return [
        q_target.gather(1, _values(policy, batch.next_states, train=train).argmax(dim=1, keepdim=True)).squeeze(1)
        for train in (False, True)
    ]


def _losses(chosen: Tensor, targets: Tensor) -> dict[str, float]:
    return {name: round(float(loss(chosen, targets)), 6) for name, loss in LOSSES.items()}


def _matching_loss(got: float, chosen: Tensor, targets: Tensor) -> str | None:
    """The name of the accepted loss that `targets` give the value `got`, if any."""
    for name, loss in LOSSES.items():
        if math.isclose(got, float(loss(chosen, targets)), rel_tol=LOSS_RTOL, abs_tol=LOSS_ATOL):
            return name
    return None


def _discount_used(got: float, chosen: Tensor, best: Tensor, batch: TransitionBatch) -> float | None:
    """The discount on `DISCOUNT_GRID` whose loss (Huber or MSE) is `got`, if one is."""
    targets = batch.rewards.double() + DISCOUNT_GRID[:, None] * torch.where(batch.terminated, 0.0, best)[None]
    for loss in LOSSES.values():
        curve = loss(chosen.expand_as(targets), targets, reduction="none").mean(dim=1)
        close = torch.isclose(curve, torch.tensor(got, dtype=torch.float64), rtol=LOSS_RTOL, atol=LOSS_ATOL)
        if bool(close.any()):
            matches = DISCOUNT_GRID[close]
            return float(matches[len(matches) // 2])
    return None


def _bootstrap_setup(adapter: DQNAdapter) -> tuple[nn.Module, nn.Module, TransitionBatch, Tensor, Tensor]:
    """A policy, a distinct target, the batch, Q(s, a) as the step sees it and the target's Q(s', .)."""
    policy, target, batch = build_network(adapter), distinct_target(adapter), optimize_batch()
    return policy, target, batch, _chosen_q(policy, batch), _values(target, batch.next_states)


@register_check("optimize_step")
def check_optimize_bootstraps_from_target(adapter: DQNAdapter) -> str:
    """With a target that differs from the policy, the TD targets bootstrap from max_a Q_target(s', a)."""
    policy, target, batch, chosen, q_target = _bootstrap_setup(adapter)
    q_policy = _values(policy, batch.next_states)
    from_policy = "bootstrapped from the policy network, not the target: the policy is passed or copied into the target"
    # In train mode BatchNorm normalises with the batch's statistics: those of every next state, or of the
    # non-final ones only (the seed's layout), depending on the implementation.
    continuing = ~batch.terminated
    policy_train_nonfinal = torch.zeros_like(chosen)
    policy_train_nonfinal[continuing] = _values(policy, batch.next_states[continuing], train=True).max(dim=1).values
    variants = [
        (f"{from_policy} (in eval mode: a sync at every step?)", q_policy.max(dim=1).values),
        (f"{from_policy} (in train mode)", _values(policy, batch.next_states, train=True).max(dim=1).values),
        (f"{from_policy} (in train mode)", policy_train_nonfinal),
        (
            "the target network was evaluated in train mode (BatchNorm normalised with the batch's statistics)",
            _values(target, batch.next_states, train=True).max(dim=1).values,
        ),
        *((DOUBLE_DQN, best) for best in _double_dqn_values(policy, q_target, batch)),
    ]
    call = f"optimize_step(policy, target, optimizer, batch, {OPTIMIZE_GAMMA}, 1) with a target that differs"
    got = _step(adapter, policy, target, RecordingSGD(policy.parameters(), lr=1e-3), batch, 1.0)
    correct = _td_targets(q_target.max(dim=1).values, batch, OPTIMIZE_GAMMA)
    loss_name = _matching_loss(got, chosen, correct)
    if loss_name is None:
        matching = [c for c, best in variants if _matching_loss(got, chosen, _td_targets(best, batch, OPTIMIZE_GAMMA))]
        raise fail(
            call,
            f"expected the loss of targets r + gamma * max_a Q_target(s', a), {_losses(chosen, correct)}, got "
            f"{got:.6g} (rtol={LOSS_RTOL:g})",
            matching[0] if matching else None,
        )
    return f"the {loss_name} loss of targets bootstrapped from the target network ({got:.6g})"


DISCOUNT_PROBES = (0.5, 0.97)
DISCOUNT_STEP = 1e-4
DISCOUNT_GRID = torch.arange(0.0, 1.5 + DISCOUNT_STEP, DISCOUNT_STEP, dtype=torch.float64)
"""Discounts the check tries, 1e-4 apart, to name the one a wrong loss was computed with."""


def _discount_cause(used: dict[float, float | None]) -> str | None:
    """A cause only when one wrong discount explains both probes: the same one, or the same offset from gamma."""
    pairs = [(gamma, u) for gamma, u in used.items() if u is not None]
    if len(pairs) < len(used):
        return None
    (gamma_a, used_a), (gamma_b, used_b) = pairs
    # Two grid points apart at most: the grid's resolution, not a coincidence.
    if abs(used_a - used_b) <= 2 * DISCOUNT_STEP:
        return f"the discount is hard-coded to {pairs[0][1]:.4g}: the gamma passed is ignored"
    if abs((used_a - gamma_a) - (used_b - gamma_b)) <= 2 * DISCOUNT_STEP:
        return f"the discount used is gamma {pairs[0][1] - pairs[0][0]:+.4g}: gamma is changed inside the step"
    return None


@register_check("optimize_step")
def check_optimize_discount(adapter: DQNAdapter) -> str:
    """The gamma passed is the discount used: checked at 0.5 and 0.97 with bootstrap values that dominate."""
    policy0, target0, batch, chosen, q_target = _bootstrap_setup(adapter)
    # The check judges the discount alone, so Double-DQN bootstrap values are as good as plain DQN's here.
    candidates = [q_target.max(dim=1).values, *_double_dqn_values(policy0, q_target, batch)]
    got, used = {}, {}
    for gamma in DISCOUNT_PROBES:
        policy, target = copy.deepcopy(policy0), copy.deepcopy(target0)
        got[gamma] = _step(adapter, policy, target, RecordingSGD(policy.parameters(), lr=1e-3), batch, 1.0, gamma)
    best = next(
        (v for v in candidates if all(_matching_loss(got[g], chosen, _td_targets(v, batch, g)) for g in got)),
        candidates[0],
    )
    for gamma in DISCOUNT_PROBES:
        used[gamma] = _discount_used(got[gamma], chosen, best, batch)
    wrong = [
        gamma for gamma in DISCOUNT_PROBES if not _matching_loss(got[gamma], chosen, _td_targets(best, batch, gamma))
    ]
    if wrong:
        gamma = wrong[0]
        # The control: with every transition terminated the loss cannot depend on the discount. Only when the
        # control is right do the probes' discounts point at the discount rather than at Q(s, a) or the loss.
        final = replace(batch, terminated=torch.ones_like(batch.terminated))
        policy, target = copy.deepcopy(policy0), copy.deepcopy(target0)
        control = _step(adapter, policy, target, RecordingSGD(policy.parameters(), lr=1e-3), final, 1.0, gamma)
        control_ok = _matching_loss(control, chosen, _td_targets(best, final, gamma)) is not None
        raise fail(
            f"optimize_step(policy, target, optimizer, batch, gamma={gamma:g}, 1), bootstrap values about "
            f"{float(best.mean()):.3g}",
            f"expected the loss for gamma={gamma:g}, {_losses(chosen, _td_targets(best, batch, gamma))}, got "
            f"{got[gamma]:.6g} (rtol={LOSS_RTOL:g}); the losses at gamma={DISCOUNT_PROBES} are those of discounts "
            f"{[None if u is None else round(u, 4) for u in used.values()]}",
            _discount_cause(used) if control_ok else None,
        )
    return f"the loss follows gamma at {DISCOUNT_PROBES} with bootstrap values about {float(best.mean()):.3g}"


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
            cause,
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
    """The step leaves a target that differs from the policy unchanged (parameters, buffers) and gradient-free."""
    policy, target, batch = build_network(adapter), distinct_target(adapter), optimize_batch()
    before = {name: t.detach().clone() for name, t in target.state_dict().items()}
    policy_before = {name: t.detach().clone() for name, t in policy.state_dict().items()}
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
            raise fail(call, f"target {name!r} changed: {problem}", _target_change_cause(target, before, policy_before))
    return "target parameters and buffers unchanged, no gradient reached them"


def _target_change_cause(target: nn.Module, before: dict[str, Tensor], policy: dict[str, Tensor]) -> str | None:
    after = target.state_dict()
    if all(torch.equal(after[name].cpu(), value.cpu()) for name, value in policy.items() if name in after):
        return "the step copied the policy network into the target (a sync at every step)"
    moved = [name for name, value in after.items() if not torch.equal(value.cpu(), before[name].cpu())]
    if all("running" in name or "num_batches" in name for name in moved):
        return "the target network ran in train mode: BatchNorm statistics moved (keep the target in eval mode)"
    return None


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
            None,
        )
    return f"loss {losses[0]:.4g} -> {final:.4g} (mean of the last 3) in {DESCENT_STEPS} steps on a fixed batch"
