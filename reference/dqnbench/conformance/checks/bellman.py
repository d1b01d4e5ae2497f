"""Bellman-target checks on the golden batch: values, terminal masking, truncation, detach."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from dqnbench.conformance import golden
from dqnbench.conformance.adapter import DQNAdapter, TransitionBatch
from dqnbench.conformance.checks.core import (
    ATOL,
    RTOL,
    diagnose,
    fail,
    invoke,
    mismatch,
    register_check,
)


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


def bellman_variants(q_next: Tensor, batch: TransitionBatch, gamma: float) -> dict[str, Tensor]:
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
    raw = invoke(
        call,
        adapter.bellman_targets,
        probe,
        batch,
        gamma,
    )
    if not isinstance(raw, Tensor):
        raise fail(call, f"returned a {type(raw).__name__}, expected a (B,) tensor", None)
    return raw, probe, call


def _check_bellman_rows(adapter: DQNAdapter, rows: Tensor, description: str) -> str:
    data = golden.load().bellman
    batch, gamma = golden_transition_batch(data), float(data["gamma"])
    raw, _, call = _bellman_call(adapter, batch, gamma)
    got = raw.detach().cpu()
    if tuple(got.shape) != tuple(batch.rewards.shape):
        shape_cause = "gather or max on the wrong dimension, or a missing squeeze"
        raise fail(call, f"expected shape {tuple(batch.rewards.shape)}, got {tuple(got.shape)}", shape_cause)
    expected = torch.from_numpy(data["targets"])
    kinds = [str(k) for k in data["kinds"]]
    indices = torch.nonzero(rows).flatten()
    problem = mismatch(
        got[indices],
        expected[indices],
        atol=ATOL,
        rtol=RTOL,
        labels=[f"row {int(i)}, {kinds[int(i)]}" for i in indices],
        what=f"{description} rows",
    )
    if problem:
        q_next = ProbeQNetwork()(batch.next_states).detach()
        # A cause only when every row, not just the failing ones, is what a known bug gives.
        cause = diagnose(got, bellman_variants(q_next, batch, gamma), atol=ATOL, rtol=RTOL)
        raise fail(call, problem, cause)
    return f"{len(indices)} {description} rows match the golden targets within atol={ATOL:g}, rtol={RTOL:g}"


@register_check("bellman_targets")
def check_bellman_targets(adapter: DQNAdapter) -> str:
    """r + gamma * max_a Q_target(s', a), no bootstrap where terminated, on the whole golden batch."""
    data = golden.load().bellman
    return _check_bellman_rows(
        adapter,
        torch.ones(len(data["rewards"]), dtype=torch.bool),
        "golden",
    )


@register_check("bellman_targets")
def check_bellman_terminal_masking(adapter: DQNAdapter) -> str:
    """Terminated transitions (truncated or not) are not bootstrapped: their target is the reward alone."""
    batch = golden_transition_batch()
    return _check_bellman_rows(
        adapter,
        batch.terminated,
        "terminated",
    )


@register_check("bellman_targets")
def check_bellman_truncation_bootstraps(adapter: DQNAdapter) -> str:
    """Truncated (time-limit) transitions that did not terminate are bootstrapped from their next state."""
    batch = golden_transition_batch()
    return _check_bellman_rows(
        adapter,
        batch.truncated & ~batch.terminated,
        "truncated",
    )


@register_check("bellman_targets")
def check_bellman_no_gradient(adapter: DQNAdapter) -> str:
    """The targets carry no gradient: nothing can flow back into the target network."""
    data = golden.load().bellman
    raw, probe, call = _bellman_call(adapter, golden_transition_batch(data), float(data["gamma"]))
    if raw.requires_grad or raw.grad_fn is not None:
        raw.sum().backward()
        grad = probe.scale.grad
        reached = f"; backward() put {float(grad):.4g} into the target's parameter" if grad is not None else ""
        raise fail(
            call,
            f"the targets require grad (grad_fn={type(raw.grad_fn).__name__}); expected requires_grad=False{reached}",
            "missing detach: compute the next-state values under torch.no_grad() or .detach() them",
        )
    return "targets carry no gradient into a target network whose parameters require grad"


@register_check("bellman_targets")
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
    problem = mismatch(raw.detach().cpu(), batch.rewards, atol=ATOL, rtol=RTOL, what="targets")
    if problem:
        bootstrapped = (
            batch.rewards.double() + 0.9 * ProbeQNetwork()(batch.next_states).detach().double().max(dim=1).values
        )
        cause = diagnose(
            raw.detach().cpu(), {"terminated transitions were bootstrapped": bootstrapped}, atol=ATOL, rtol=RTOL
        )
        raise fail(call + " with every row terminated", problem, cause)
    return "an all-terminated batch gives the rewards as targets"
