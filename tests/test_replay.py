"""Replay memory: a seeded ring buffer that stores copies and samples without replacement."""

import random

import pytest
import torch

from dqnbench.replay import ReplayMemory


def _push_numbered(memory: ReplayMemory, numbers) -> None:
    """Push transitions whose reward is their number, so each stored item can be identified."""
    for n in numbers:
        state = torch.full((1, 3, 2, 2), float(n))
        memory.push(state, torch.tensor([[n % 2]]), state + 1, torch.tensor([float(n)]))


def _numbers(transitions) -> list[int]:
    return [int(t.reward.item()) for t in transitions]


def test_fills_up_then_wraps_evicting_the_oldest_first():
    memory = ReplayMemory(3)
    _push_numbered(memory, range(2))
    assert _numbers(memory.oldest_first()) == [0, 1]
    _push_numbered(memory, range(2, 7))
    assert len(memory) == 3
    assert _numbers(memory.oldest_first()) == [4, 5, 6]


@pytest.mark.parametrize("pushed", [0, 1, 4, 5, 6, 13])
def test_len_is_the_pushed_count_capped_at_capacity(pushed):
    memory = ReplayMemory(5)
    _push_numbered(memory, range(pushed))
    assert len(memory) == min(pushed, 5), f"len after {pushed} pushes into capacity 5"


def test_samples_are_distinct_and_only_from_stored_items():
    memory = ReplayMemory(8, seed=3)
    _push_numbered(memory, range(20))  # 12..19 remain
    for batch_size in (1, 5, 8):
        got = _numbers(memory.sample(batch_size))
        assert len(got) == batch_size
        assert len(set(got)) == batch_size, f"sample({batch_size}) repeated an item: {got}"
        assert set(got) <= set(range(12, 20)), f"sample({batch_size}) returned evicted items: {got}"
    assert sorted(_numbers(memory.sample(8))) == list(range(12, 20))


def _sample_sequence(seed: int) -> list[list[int]]:
    memory = ReplayMemory(50, seed=seed)
    _push_numbered(memory, range(60))
    return [_numbers(memory.sample(10)) for _ in range(5)]


def test_same_seed_gives_the_same_samples_and_another_seed_does_not():
    assert _sample_sequence(7) == _sample_sequence(7)
    assert _sample_sequence(7) != _sample_sequence(8)


def test_sampling_leaves_the_global_rngs_untouched():
    memory = ReplayMemory(10, seed=0)
    _push_numbered(memory, range(10))
    python_state, torch_state = random.getstate(), torch.get_rng_state()
    memory.sample(10)
    assert random.getstate() == python_state, "ReplayMemory.sample used the global `random` generator"
    torch.testing.assert_close(torch.get_rng_state(), torch_state, rtol=0, atol=0)


def test_samples_do_not_depend_on_the_global_rng():
    def sample_after_global_seed(global_seed: int) -> list[int]:
        random.seed(global_seed)
        torch.manual_seed(global_seed)
        memory = ReplayMemory(20, seed=1)
        _push_numbered(memory, range(20))
        return _numbers(memory.sample(10))

    assert sample_after_global_seed(0) == sample_after_global_seed(12345)


def test_pushed_tensors_are_copied_not_aliased():
    memory = ReplayMemory(2)
    state, action = torch.zeros(1, 3, 2, 2), torch.tensor([[1]])
    next_state, reward = torch.ones(1, 3, 2, 2), torch.tensor([1.0])
    memory.push(state, action, next_state, reward)
    for tensor in (state, action, next_state, reward):
        tensor.add_(10)  # the caller reuses its buffers in place
    stored = memory.oldest_first()[0]
    torch.testing.assert_close(stored.state, torch.zeros(1, 3, 2, 2))
    torch.testing.assert_close(stored.action, torch.tensor([[1]]))
    torch.testing.assert_close(stored.next_state, torch.ones(1, 3, 2, 2))
    torch.testing.assert_close(stored.reward, torch.tensor([1.0]))


def test_stored_tensors_are_detached_from_any_graph():
    memory = ReplayMemory(1)
    state = torch.zeros(1, 3, 2, 2, requires_grad=True)
    memory.push(state * 2, torch.tensor([[0]]), None, torch.tensor([1.0]))
    stored = memory.oldest_first()[0]
    assert not stored.state.requires_grad
    assert stored.next_state is None


def test_asking_for_more_than_it_holds_names_both_numbers():
    memory = ReplayMemory(10)
    _push_numbered(memory, range(3))
    with pytest.raises(ValueError, match=r"batch_size=5\).*holds only 3 transitions"):
        memory.sample(5)


def test_capacity_below_one_is_refused():
    with pytest.raises(ValueError, match=r"capacity=0"):
        ReplayMemory(0)
