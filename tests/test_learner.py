"""Learning: collation, Bellman targets and their masking, the TD step, and the frozen target network."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dqnbench.learner import (
    Batch,
    bellman_targets,
    collate,
    make_target,
    next_state_values,
    optimize_step,
    sync_target,
    td_loss,
)
from dqnbench.nets import DQN
from dqnbench.replay import Transition
from support import assert_same_state, changed_entries, snapshot

# Two-valued "screens" read directly as Q-values by an identity network make hand computation easy.
NEXT_STATES = [[1.0, 5.0], None, [7.0, 2.0], None]


def _vector_batch(next_states, rewards=None, actions=None) -> Batch:
    n = len(next_states)
    rewards = rewards if rewards is not None else [1.0] * n
    actions = actions if actions is not None else [0] * n
    return collate(
        [
            Transition(
                torch.tensor([[float(i), -float(i)]]),
                torch.tensor([[a]]),
                None if s is None else torch.tensor([s]),
                torch.tensor([r]),
            )
            for i, (s, r, a) in enumerate(zip(next_states, rewards, actions, strict=True))
        ]
    )


def _negation() -> nn.Linear:
    """Q(s) = -s: its argmax is the identity network's argmin."""
    net = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(-torch.eye(2))
    return net


def test_bellman_targets_against_hand_values():
    got = bellman_targets(
        rewards=torch.tensor([1.0, 1.0, 1.0, 0.5]),
        next_state_values=torch.tensor([2.0, 3.0, 4.0, 10.0]),
        non_final_mask=torch.tensor([True, False, True, False]),
        gamma=0.9,
    )
    # 1 + 0.9 * 2, 1 (final), 1 + 0.9 * 4, 0.5 (final)
    torch.testing.assert_close(got, torch.tensor([2.8, 1.0, 4.6, 0.5]))


def test_bellman_targets_ignore_whatever_a_final_transition_holds():
    got = bellman_targets(
        torch.tensor([1.0, 2.0]), torch.tensor([float("nan"), float("inf")]), torch.tensor([False, False]), 0.99
    )
    torch.testing.assert_close(got, torch.tensor([1.0, 2.0]))


def test_collate_keeps_the_seeds_layout():
    batch = _vector_batch(NEXT_STATES, rewards=[1.0, 2.0, 3.0, 4.0], actions=[0, 1, 1, 0])
    torch.testing.assert_close(batch.states, torch.tensor([[0.0, 0.0], [1.0, -1.0], [2.0, -2.0], [3.0, -3.0]]))
    torch.testing.assert_close(batch.actions, torch.tensor([[0], [1], [1], [0]]))
    torch.testing.assert_close(batch.rewards, torch.tensor([1.0, 2.0, 3.0, 4.0]))
    torch.testing.assert_close(batch.non_final_mask, torch.tensor([True, False, True, False]))
    torch.testing.assert_close(batch.non_final_next_states, torch.tensor([[1.0, 5.0], [7.0, 2.0]]))


def test_collate_refuses_an_empty_list():
    with pytest.raises(ValueError, match="no transitions"):
        collate([])


@pytest.mark.parametrize(
    ("next_states", "expected"),
    [
        (NEXT_STATES, [5.0, 0.0, 7.0, 0.0]),
        ([None, None, None], [0.0, 0.0, 0.0]),  # all final: the seed's torch.cat([]) crashed here
        ([[1.0, 5.0], [7.0, 2.0], [-3.0, -4.0]], [5.0, 7.0, -3.0]),  # none final
    ],
    ids=["mixed", "all-final", "none-final"],
)
def test_next_state_values_are_the_targets_max_and_zero_for_final(next_states, expected):
    batch = _vector_batch(next_states)
    assert batch.non_final_next_states.shape[0] == sum(s is not None for s in next_states)
    got = next_state_values(nn.Identity(), batch)
    torch.testing.assert_close(got, torch.tensor(expected))
    targets = bellman_targets(batch.rewards, got, batch.non_final_mask, 0.5)
    torch.testing.assert_close(targets, 1.0 + 0.5 * torch.tensor(expected))


def test_double_dqn_evaluates_the_policys_argmax_with_the_target():
    batch = _vector_batch(NEXT_STATES)
    # The policy (-s) prefers the smaller entry, so the target (s) is read there: the min, not the max.
    got = next_state_values(nn.Identity(), batch, policy_net=_negation())
    torch.testing.assert_close(got, torch.tensor([1.0, 0.0, 2.0, 0.0]))


def test_optimize_step_with_double_dqn_uses_the_policys_choice():
    batch = _vector_batch(NEXT_STATES, rewards=[1.0, 2.0, 3.0, 4.0], actions=[0, 1, 1, 0])
    policy = _negation()
    # Q(s, a) = -s[a] = [0, 1, 2, -3]; targets r + 0.5 * V = [1 + 0.5, 2, 3 + 1, 4] with V = target at policy argmax.
    expected = F.smooth_l1_loss(torch.tensor([0.0, 1.0, 2.0, -3.0]), torch.tensor([1.5, 2.0, 4.0, 4.0]))
    got = optimize_step(
        policy, nn.Identity(), torch.optim.SGD(policy.parameters(), lr=0.0), batch, gamma=0.5, double_dqn=True
    )
    torch.testing.assert_close(got, expected)
    # Without Double DQN the same batch bootstraps from the max: targets [1 + 2.5, 2, 3 + 3.5, 4].
    expected_plain = F.smooth_l1_loss(torch.tensor([0.0, 1.0, 2.0, -3.0]), torch.tensor([3.5, 2.0, 6.5, 4.0]))
    got_plain = optimize_step(policy, nn.Identity(), torch.optim.SGD(policy.parameters(), lr=0.0), batch, gamma=0.5)
    torch.testing.assert_close(got_plain, expected_plain)


# Real networks, small screens: 30x40 leaves a 1x2 map after the three convolutions.
HEIGHT, WIDTH = 30, 40


def _screen_batch(seed: int = 0, size: int = 16, final_every: int = 4, reward: float = 1.0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    return collate(
        [
            Transition(
                torch.randn(1, 3, HEIGHT, WIDTH, generator=generator),
                torch.tensor([[i % 2]]),
                None if i % final_every == 0 else torch.randn(1, 3, HEIGHT, WIDTH, generator=generator),
                torch.tensor([reward]),
            )
            for i in range(size)
        ]
    )


def _policy(seed: int = 0) -> DQN:
    torch.manual_seed(seed)
    return DQN(HEIGHT, WIDTH, 2)


def test_double_dqn_choice_leaves_the_policys_statistics_and_mode_alone():
    policy, target = _policy(0), make_target(_policy(1))
    before = snapshot(policy)
    next_state_values(target, _screen_batch(), policy_net=policy)
    assert policy.training, "next_state_values left the policy network in eval mode"
    assert_same_state(before, snapshot(policy), "policy network after choosing Double DQN actions")


def test_no_gradient_reaches_the_target_network():
    policy = _policy()
    # A plain copy that still requires gradients: only optimize_step's own care can keep them away.
    target = copy.deepcopy(policy).eval()
    before = snapshot(target)
    optimize_step(policy, target, torch.optim.RMSprop(policy.parameters()), _screen_batch(), gamma=0.999)
    with_grad = [name for name, p in target.named_parameters() if p.grad is not None]
    assert with_grad == [], f"gradients reached the target network: {with_grad}"
    assert_same_state(before, snapshot(target), "target network after an optimize step")
    assert all(p.grad is not None for p in policy.parameters()), "the policy network got no gradient"


def test_make_target_is_a_frozen_independent_copy():
    policy = _policy()
    target = make_target(policy)
    assert not target.training
    assert not any(p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in policy.parameters()), "make_target froze the policy network too"
    assert_same_state(snapshot(policy), snapshot(target), "make_target")
    with torch.no_grad():
        policy.head.weight.add_(1.0)
    assert "head.weight" in changed_entries(snapshot(policy), snapshot(target)), "the copy shares storage"


def test_sync_target_copies_parameters_and_batchnorm_buffers_and_keeps_eval_mode():
    policy = _policy()
    target = make_target(policy)
    optimize_step(policy, target, torch.optim.RMSprop(policy.parameters()), _screen_batch(), gamma=0.999)
    stale = changed_entries(snapshot(policy), snapshot(target))
    # Both kinds of state must differ before the sync, or the check below proves nothing.
    assert {"head.weight", "features.1.running_var", "features.1.num_batches_tracked"} <= set(stale), stale
    sync_target(policy, target)
    assert_same_state(snapshot(policy), snapshot(target), "target after sync_target")
    assert not target.training, "sync_target put the target network in train mode"
    assert not any(p.requires_grad for p in target.parameters())


def test_optimize_step_lowers_the_td_loss_on_its_batch():
    policy = _policy()
    target = make_target(_policy(1))
    batch = _screen_batch()
    targets = bellman_targets(batch.rewards, next_state_values(target, batch), batch.non_final_mask, 0.999)
    with torch.no_grad():
        before = td_loss(policy, batch, targets)
    # RMSprop's first step moves every weight by about 10 * lr; 1e-4 keeps it a small descent step.
    returned = optimize_step(policy, target, torch.optim.RMSprop(policy.parameters(), lr=1e-4), batch, gamma=0.999)
    torch.testing.assert_close(
        returned, before, msg=lambda m: f"optimize_step must return the loss before its step: {m}"
    )
    assert not returned.requires_grad
    with torch.no_grad():
        after = td_loss(policy, batch, targets)
    assert after < before, (
        f"TD loss on its batch did not decrease: before {before.item():.6f}, after {after.item():.6f}"
    )


def _largest_gradient_seen_by_the_optimiser(policy: nn.Module, grad_clip: float) -> list[float]:
    optimizer = torch.optim.RMSprop(policy.parameters())
    seen: list[float] = []
    optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: seen.append(max(p.grad.abs().max().item() for p in policy.parameters()))
    )
    optimize_step(policy, make_target(policy), optimizer, _screen_batch(), gamma=0.999, grad_clip=grad_clip)
    return seen


@pytest.mark.parametrize("grad_clip", [1.0, 0.25])
def test_the_optimiser_sees_gradients_clamped(grad_clip):
    policy = _policy()
    # A steep head makes the convolutions' raw gradients far larger than the limit (Huber caps the loss's own).
    with torch.no_grad():
        policy.head.weight.mul_(1000.0)
    raw = _largest_gradient_seen_by_the_optimiser(copy.deepcopy(policy), float("inf"))
    assert raw[0] > 10 * grad_clip, f"degenerate case: the raw gradients ({raw}) do not exceed the limit"
    seen = _largest_gradient_seen_by_the_optimiser(policy, grad_clip)
    assert seen == [grad_clip], f"largest gradient element the optimiser saw: {seen}, expected exactly {grad_clip}"
