"""Exploration: the epsilon schedule, greedy = argmax, and acting without moving BatchNorm statistics."""

import random

import pytest
import torch

from dqnbench.nets import DQN
from dqnbench.policy import epsilon, greedy_action, select_action
from support import assert_same_state, changed_entries, snapshot


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (0, 0.9),  # EPS_START
        (200, 0.05 + 0.85 * 0.36787944117144233),  # one time constant: e^-1
        (1000, 0.05 + 0.85 * 0.006737946999085467),  # five time constants: e^-5
        (10**6, 0.05),  # EPS_END in the limit
    ],
)
def test_epsilon_follows_the_seeds_schedule(steps, expected):
    torch.testing.assert_close(epsilon(steps, start=0.9, end=0.05, decay=200.0), expected, rtol=0, atol=1e-12)
    # A step count held in a tensor (VectorTrainer counts on its device) follows the same schedule.
    counted = epsilon(torch.tensor(steps), start=0.9, end=0.05, decay=200.0)
    assert counted.dtype == torch.float64, f"epsilon(tensor) dtype {counted.dtype}, expected float64"
    torch.testing.assert_close(counted.item(), expected, rtol=0, atol=1e-12)


def test_epsilon_defaults_are_the_seeds():
    assert epsilon(200) == epsilon(200, 0.9, 0.05, 200.0)


def _net_and_states(seed: int = 0, n: int = 6) -> tuple[DQN, torch.Tensor]:
    torch.manual_seed(seed)
    net = DQN(40, 90, 3)
    # Large head weights make the best action differ between random states, so argmax is really tested.
    torch.nn.init.normal_(net.head.weight, std=1.0)
    net.train()
    net(torch.randn(16, 3, 40, 90))  # move the running statistics away from their initial values
    return net, torch.randn(n, 3, 40, 90)


def test_greedy_action_is_the_argmax_of_the_q_values():
    net, states = _net_and_states()
    with torch.no_grad():
        expected = net.eval()(states).argmax(dim=1, keepdim=True)
    net.train()
    got = greedy_action(net, states)
    assert got.dtype == torch.long
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert len(set(expected.flatten().tolist())) > 1, "degenerate case: every state has the same best action"


@pytest.mark.parametrize("training", [True, False], ids=["train-mode", "eval-mode"])
def test_acting_leaves_batchnorm_statistics_and_mode_unchanged(training):
    net, states = _net_and_states()
    net.train(training)
    before = snapshot(net)
    rng = random.Random(0)
    for state in states.split(1):
        greedy_action(net, state)
        select_action(net, state, 0.0, 3, rng)
    assert net.training is training, "acting did not restore the network's mode"
    assert all(m.training is training for m in net.modules()), "acting did not restore every submodule's mode"
    assert_same_state(before, snapshot(net), "network state after acting")


def test_the_seeds_train_mode_forward_would_move_the_statistics():
    # The check above can fail: a forward pass in train mode, as the seed acted, changes these buffers.
    net, states = _net_and_states()
    before = snapshot(net)
    with torch.no_grad():
        net(states[:2])
    changed = changed_entries(before, snapshot(net))
    assert "features.1.running_mean" in changed
    assert "features.1.num_batches_tracked" in changed


def test_select_action_with_epsilon_zero_is_greedy_and_one_is_uniform():
    net, states = _net_and_states()
    state = states[:1]
    rng = random.Random(0)
    greedy = greedy_action(net, state)
    for _ in range(20):
        torch.testing.assert_close(select_action(net, state, 0.0, 3, rng), greedy, rtol=0, atol=0)
    random_actions = [select_action(net, state, 1.0, 3, rng) for _ in range(300)]
    assert all(a.shape == (1, 1) and a.dtype == torch.long for a in random_actions)
    counts = [sum(int(a.item()) == k for a in random_actions) for k in range(3)]
    assert all(60 <= c <= 140 for c in counts), f"300 random actions over 3 choices should be near 100 each: {counts}"


def test_select_action_draws_only_from_its_own_generator():
    net, states = _net_and_states()
    python_state, torch_state = random.getstate(), torch.get_rng_state()
    first = [select_action(net, states[:1], 0.5, 3, random.Random(4)).item() for _ in range(5)]
    assert random.getstate() == python_state, "select_action used the global `random` generator"
    torch.testing.assert_close(torch.get_rng_state(), torch_state, rtol=0, atol=0)
    rng = random.Random(4)
    again = [select_action(net, states[:1], 0.5, 3, rng).item() for _ in range(5)]
    assert first[0] == again[0]
