"""Learning from replayed transitions: collation, Bellman targets, the TD loss and one optimiser step."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dqnbench.replay import Transition


@dataclass(frozen=True)
class Batch:
    """A sampled minibatch in the seed's layout: next states only for the transitions that continue."""

    states: Tensor
    """(B, C, H, W) float."""
    actions: Tensor
    """(B, 1) long."""
    rewards: Tensor
    """(B,) float."""
    non_final_mask: Tensor
    """(B,) bool: True where the transition bootstraps from its next state."""
    non_final_next_states: Tensor
    """(K, C, H, W) with K = non_final_mask.sum(); K may be 0."""

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device, non_blocking=True) for t in vars(self).values()))

    def materialize(self) -> Batch:
        return self


class ReplayBatch(Protocol):
    """What a replay memory samples: a `Batch`, or a compact form of one that the optimisation step expands
    where it runs (`dqnbench.fast.memory.ScreenBatch` keeps uint8 screens until then)."""

    def to(self, device: torch.device | str) -> ReplayBatch: ...

    def materialize(self) -> Batch:
        """The batch as float states, computed exactly as the memory that sampled it would have."""
        ...


def collate(transitions: Sequence[Transition]) -> Batch:
    """Stack transitions into a `Batch`; a batch in which every transition is final is valid."""
    if not transitions:
        raise ValueError("collate(transitions=[]): cannot build a batch from no transitions")
    states = torch.cat([t.state for t in transitions])
    next_states = [t.next_state for t in transitions if t.next_state is not None]
    return Batch(
        states=states,
        actions=torch.cat([t.action for t in transitions]),
        rewards=torch.cat([t.reward for t in transitions]).to(torch.float32),
        non_final_mask=torch.tensor([t.next_state is not None for t in transitions], device=states.device),
        # torch.cat([]) raises, which crashed the seed on an all-final batch.
        non_final_next_states=torch.cat(next_states) if next_states else states.new_empty((0, *states.shape[1:])),
    )


def bellman_targets(rewards: Tensor, next_state_values: Tensor, non_final_mask: Tensor, gamma: float) -> Tensor:
    """r + gamma * V(s') where the transition continues, r alone where it terminated.

    `next_state_values` has one entry per transition; entries of final transitions are ignored, so they
    may hold anything (the seed filled them with zeros).
    """
    return rewards + gamma * torch.where(non_final_mask, next_state_values, torch.zeros_like(next_state_values))


def best_next_values(target_net: nn.Module, next_states: Tensor, policy_net: nn.Module | None = None) -> Tensor:
    """max_a Q_target(s', a) per row of `next_states`, without building a graph.

    With `policy_net` given, Double DQN: the policy network picks the action, the target evaluates it.
    """
    with torch.no_grad():
        q_next = target_net(next_states)
        if policy_net is None:
            return q_next.max(dim=1).values
        was_training = policy_net.training
        policy_net.eval()  # choosing an action must not move the policy's BatchNorm statistics
        try:
            choice = policy_net(next_states).argmax(dim=1, keepdim=True)
        finally:
            policy_net.train(was_training)
        return q_next.gather(1, choice).squeeze(1)


def next_state_values(target_net: nn.Module, batch: Batch, policy_net: nn.Module | None = None) -> Tensor:
    """max_a Q_target(s', a) per transition (0 for final ones), without building a graph.

    With `policy_net` given, Double DQN (`best_next_values`).
    """
    values = torch.zeros(batch.rewards.shape[0], device=batch.rewards.device, dtype=batch.rewards.dtype)
    if batch.non_final_next_states.shape[0] == 0:
        return values
    best = best_next_values(target_net, batch.non_final_next_states, policy_net)
    values[batch.non_final_mask] = best.to(values.dtype)
    return values


def td_loss(policy_net: nn.Module, batch: Batch, targets: Tensor) -> Tensor:
    """Huber (smooth L1, beta 1) loss between Q(s, a) of the taken actions and the targets."""
    state_action_values = policy_net(batch.states).gather(1, batch.actions)
    return F.smooth_l1_loss(state_action_values, targets.unsqueeze(1))


def clamp_gradients(net: nn.Module, limit: float) -> None:
    """Clamp every gradient element to [-limit, limit], as the seed did."""
    for param in net.parameters():
        if param.grad is not None:
            param.grad.clamp_(-limit, limit)


def optimize_step(
    policy_net: nn.Module,
    target_net: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    *,
    gamma: float,
    grad_clip: float = 1.0,
    double_dqn: bool = False,
) -> Tensor:
    """One gradient step on the TD loss; returns the loss before the step (detached, still on device)."""
    values = next_state_values(target_net, batch, policy_net if double_dqn else None)
    targets = bellman_targets(batch.rewards, values, batch.non_final_mask, gamma)
    loss = td_loss(policy_net, batch, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clamp_gradients(policy_net, grad_clip)
    optimizer.step()
    return loss.detach()


def make_target(policy_net: nn.Module) -> nn.Module:
    """A frozen copy of the policy network: eval mode, no gradients."""
    target = copy.deepcopy(policy_net)
    target.eval()
    target.requires_grad_(False)
    return target


def sync_target(policy_net: nn.Module, target_net: nn.Module) -> None:
    """Copy parameters and buffers (BatchNorm running statistics included); the target stays in eval mode."""
    target_net.load_state_dict(policy_net.state_dict())
    target_net.eval()
