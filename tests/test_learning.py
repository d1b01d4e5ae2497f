"""Learning, not just running: the real learner pieces must converge to values known in closed form.

Each test fills the real `ReplayMemory` with every transition of a tiny MDP, then runs the real
`optimize_step` (Huber loss, gradient clamp, Double DQN or not) with a target network synced by
`sync_target`, on a small MLP over state vectors. The fixed point of that procedure is the Q-function
computed by hand below; a bug in the Bellman target, the terminal/truncation mask, the max/argmax or the
target sync moves the fixed point by far more than the tolerance. The loss is Huber's, so where a target
lies more than 1 away its pull is capped at 1: the fixed points below are the Huber ones, not least squares'.

Tolerance and seeds: `ATOL` (absolute, in units of reward) after `UPDATES` updates, on seeds `SEEDS`. The
values the tests tell apart differ by >= 10x `ATOL`, so the seeds only check that convergence does not
depend on luck.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from dqnbench.learner import collate, make_target, optimize_step, sync_target
from dqnbench.replay import ReplayMemory

SEEDS = (0, 1, 2)
ATOL = 0.05
"""Largest accepted |Q - Q*|, in units of reward; values under test are 0.6 to 5."""
UPDATES = 600
SYNC_EVERY = 10
"""Updates between target syncs: each sync is one step of value iteration, contracting the error by gamma."""
LEFT, RIGHT = 0, 1


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: a thread pool only adds overhead (and the CI machine's cores are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mlp(n_inputs: int, n_actions: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_inputs, 32), nn.ReLU(), nn.Linear(32, n_actions))


def one_hot(index: int, size: int) -> Tensor:
    return nn.functional.one_hot(torch.tensor([index]), size).float()


def fit_q(
    memory: ReplayMemory, n_inputs: int, n_actions: int, *, gamma: float, seed: int, double_dqn: bool = False
) -> nn.Module:
    """Train an MLP on the whole memory (every transition in every batch) as the training loop would."""
    torch.manual_seed(seed)
    policy = mlp(n_inputs, n_actions)
    target = make_target(policy)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    for update in range(UPDATES):
        batch = collate(memory.sample(len(memory)))
        optimize_step(policy, target, optimizer, batch, gamma=gamma, grad_clip=10.0, double_dqn=double_dqn)
        if update % SYNC_EVERY == SYNC_EVERY - 1:
            sync_target(policy, target)
    return policy


def assert_q(net: nn.Module, states: Tensor, expected: Tensor, what: str) -> None:
    with torch.no_grad():
        got = net(states)
    torch.testing.assert_close(
        got,
        expected,
        atol=ATOL,
        rtol=0,
        msg=lambda m: (
            f"{what}: Q after {UPDATES} optimize_step calls is not Q*.\nexpected:\n{expected}\ngot:\n{got}\n"
            f"{m}\nLikely cause: the Bellman target, the final-transition mask or the target sync."
        ),
    )


# A time limit of T steps on a task that never terminates, rewarding 1 per step whatever the action. The
# observation carries no clock (like CartPole's), so every step shows the same state s. One action only: with
# two, the max would pick the one that never happened to end an episode.
GAMMA_LIMIT = 0.8
TIME_LIMIT = 10


def constant_reward_episode(*, bootstrap_truncated: bool, seed: int) -> ReplayMemory:
    state = torch.ones(1, 1)
    memory = ReplayMemory(TIME_LIMIT, seed=seed)
    for step in range(1, TIME_LIMIT + 1):
        truncated = step == TIME_LIMIT
        # What the training loop stores: the next state, unless the episode ends and truncation is not bootstrapped.
        next_state = None if truncated and not bootstrap_truncated else state
        memory.push(state, torch.tensor([[0]]), next_state, torch.tensor([1.0]))
    return memory


@pytest.mark.parametrize("seed", SEEDS)
def test_truncation_that_bootstraps_learns_the_infinite_horizon_value(seed: int) -> None:
    """Q(s) = 1 + gamma * Q(s) on every transition, so Q* = 1 / (1 - gamma) = 5."""
    net = fit_q(constant_reward_episode(bootstrap_truncated=True, seed=seed), 1, 1, gamma=GAMMA_LIMIT, seed=seed)
    expected = torch.full((1, 1), 1 / (1 - GAMMA_LIMIT))
    assert_q(net, torch.ones(1, 1), expected, f"bootstrapped time limit, seed {seed}")


@pytest.mark.parametrize("seed", SEEDS)
def test_truncation_treated_as_terminal_learns_a_shrunken_value(seed: int) -> None:
    """The seed's `done`: 1 transition in T is final, so Q* < 1 / (1 - gamma) = 5.

    Huber's fixed point: T-1 targets 1 + gamma Q lie within 1 of Q, the final target 1 lies further than 1
    below it and pulls with a capped gradient of -1, so (T-1)(1 + gamma Q - Q) = 1, i.e.
    Q = (1 - 1/(T-1)) / (1 - gamma) = 4.44 for gamma 0.8 and T 10 (least squares would give 3.57). Either
    way the time limit leaks into a value the state cannot explain (Pardo et al., "Time Limits in
    Reinforcement Learning", 2018).
    """
    net = fit_q(constant_reward_episode(bootstrap_truncated=False, seed=seed), 1, 1, gamma=GAMMA_LIMIT, seed=seed)
    expected = torch.full((1, 1), (1 - 1 / (TIME_LIMIT - 1)) / (1 - GAMMA_LIMIT))
    assert_q(net, torch.ones(1, 1), expected, f"time limit as terminal, seed {seed}")


def test_a_clock_in_the_state_gives_the_finite_horizon_value() -> None:
    """With the time step in the state, treating the limit as terminal is exact.

    Q*(t) = (1 - gamma^(T-t)) / (1 - gamma): every target is consistent, so Huber and least squares agree.
    """
    horizon, gamma, seed = 5, GAMMA_LIMIT, SEEDS[0]
    memory = ReplayMemory(2 * horizon, seed=seed)
    for t in range(horizon):
        next_state = one_hot(t + 1, horizon) if t + 1 < horizon else None
        for action in (LEFT, RIGHT):
            memory.push(one_hot(t, horizon), torch.tensor([[action]]), next_state, torch.tensor([1.0]))
    net = fit_q(memory, horizon, 2, gamma=gamma, seed=seed)
    values = torch.tensor([(1 - gamma ** (horizon - t)) / (1 - gamma) for t in range(horizon)])
    assert_q(net, torch.eye(horizon), values[:, None].expand(horizon, 2), "finite horizon with a clock")


# A chain of N states. RIGHT moves one state right; RIGHT at the last state ends the episode with reward 1.
# LEFT moves one state left (staying put at state 0). Every other reward is 0.
CHAIN = 5
GAMMA_CHAIN = 0.9


def chain_memory(seed: int) -> ReplayMemory:
    memory = ReplayMemory(2 * CHAIN, seed=seed)
    for s in range(CHAIN):
        end = s == CHAIN - 1
        memory.push(
            one_hot(s, CHAIN),
            torch.tensor([[RIGHT]]),
            None if end else one_hot(s + 1, CHAIN),
            torch.tensor([1.0 if end else 0.0]),
        )
        memory.push(one_hot(s, CHAIN), torch.tensor([[LEFT]]), one_hot(max(s - 1, 0), CHAIN), torch.tensor([0.0]))
    return memory


def chain_q_star() -> Tensor:
    """V*(s) = gamma^(N-1-s); Q*(s, RIGHT) = gamma^(N-1-s); Q*(s, LEFT) = gamma V*(max(s-1, 0))."""
    v = [GAMMA_CHAIN ** (CHAIN - 1 - s) for s in range(CHAIN)]
    return torch.tensor([[GAMMA_CHAIN * v[max(s - 1, 0)], v[s]] for s in range(CHAIN)])


@pytest.mark.parametrize("double_dqn", [False, True], ids=["dqn", "double_dqn"])
@pytest.mark.parametrize("seed", SEEDS)
def test_chain_mdp_learns_q_star_and_the_optimal_policy(seed: int, double_dqn: bool) -> None:
    net = fit_q(chain_memory(seed), CHAIN, 2, gamma=GAMMA_CHAIN, seed=seed, double_dqn=double_dqn)
    states = torch.eye(CHAIN)
    assert_q(net, states, chain_q_star(), f"chain MDP, seed {seed}, double_dqn={double_dqn}")
    with torch.no_grad():
        greedy = net(states).argmax(dim=1)
    assert greedy.tolist() == [RIGHT] * CHAIN, f"greedy policy of the learned Q is {greedy.tolist()}, not all RIGHT"
