"""The uint8 screen memory rebuilds exactly the reference's states, and samples the reference's transitions."""

import random

import pytest
import torch

from dqnbench.config import DQNConfig
from dqnbench.fast.memory import ScreenMemory, StateMemory
from dqnbench.learner import ReplayBatch
from dqnbench.parts import ReferenceMemory
from dqnbench.train import StateBuilder
from support import DEVICES

SCREEN = (1, 3, 8, 10)


def _screen(rng: random.Random) -> torch.Tensor:
    # Screens are multiples of 1/255, as the seed's ToPILImage -> ToTensor round trip makes them.
    generator = torch.Generator().manual_seed(rng.randrange(2**31))
    return torch.randint(0, 256, SCREEN, generator=generator, dtype=torch.uint8).to(torch.float32).div(255)


def _feed(memories, config: DQNConfig, episodes: list[tuple[int, str]], seed: int = 0, device: str = "cpu") -> None:
    """Drive memories as the training loop does: observe every screen, push states built by StateBuilder.

    Each episode is (length, ending) with ending "terminated" (next_state None) or "truncated" (kept).
    """
    rng = random.Random(seed)
    states = StateBuilder(config)
    for length, ending in episodes:
        screen = _screen(rng).to(device)
        for memory in memories:
            memory.observe(screen, first=True)
        state = states.reset(screen)
        for t in range(length):
            screen = _screen(rng).to(device)
            for memory in memories:
                memory.observe(screen, first=False)
            next_state = states.push(screen)
            final = ending == "terminated" and t == length - 1
            action = torch.tensor([[rng.randrange(2)]], device=device)
            reward = torch.tensor([rng.random()], device=device)
            for memory in memories:
                memory.push(state, action, None if final else next_state, reward)
            state = next_state


def _assert_same_batch(expected: ReplayBatch, got: ReplayBatch, where: str) -> None:
    expected, got = expected.materialize(), got.materialize()
    for field in ("states", "actions", "rewards", "non_final_mask", "non_final_next_states"):
        torch.testing.assert_close(
            getattr(got, field),
            getattr(expected, field),
            rtol=0,
            atol=0,
            msg=lambda m, field=field: f"{where}, Batch.{field} vs the reference memory: {m}",
        )


EPISODES = [(5, "terminated"), (1, "terminated"), (7, "truncated"), (3, "terminated"), (12, "terminated")] * 6


@pytest.mark.parametrize(
    "config",
    [DQNConfig(), DQNConfig(state="stack", stack_frames=4), DQNConfig(state="stack", stack_frames=1)],
    ids=["difference", "stack4", "stack1"],
)
@pytest.mark.parametrize("capacity", [1000, 23], ids=["roomy", "wrapping"])
@pytest.mark.parametrize("device", DEVICES)
def test_screen_memory_samples_exactly_the_reference_batches(config, capacity, device):
    reference, fast = ReferenceMemory(capacity, seed=5), ScreenMemory(capacity, seed=5)
    _feed([reference, fast], config, EPISODES, device=device)
    assert len(fast) == len(reference), f"len: reference {len(reference)}, ScreenMemory {len(fast)}"
    for draw in range(5):
        size = min(16, len(reference))
        _assert_same_batch(reference.sample_batch(size), fast.sample_batch(size), f"draw {draw} of {size}")


@pytest.mark.parametrize("config", [DQNConfig(), DQNConfig(state="stack", stack_frames=3)], ids=["difference", "stack"])
def test_screen_memory_batches_outlive_the_next_sample_and_pushes(config):
    # A batch holds copies of its screens: the ring overwriting them later must not change it.
    memory = ScreenMemory(100, seed=0)
    _feed([memory], config, EPISODES)
    first = memory.sample_batch(8)
    kept = {name: getattr(first.materialize(), name).clone() for name in ("states", "non_final_next_states")}
    memory.sample_batch(8)
    _feed([memory], config, EPISODES, seed=1)
    for name, value in kept.items():
        torch.testing.assert_close(
            getattr(first.materialize(), name), value, rtol=0, atol=0, msg=lambda m, n=name: f"{n}: {m}"
        )


def test_screen_memory_stores_one_uint8_screen_per_transition():
    memory = ScreenMemory(100, seed=0)
    _feed([memory], DQNConfig(), [(30, "terminated")] * 10)
    assert memory._screens is not None
    assert memory._screens.dtype == torch.uint8
    # 100 transitions, plus the few slots kept so the oldest transition's earlier screen survives a wrap.
    assert memory._screens.shape[0] <= 100 + 16, f"{memory._screens.shape[0]} screen slots for 100 transitions"


def test_screen_memory_grows_when_time_limits_keep_extra_screens():
    # Every truncated episode keeps its last screen, one more than its transitions: the ring must grow
    # rather than overwrite a screen a stored transition still needs.
    reference, fast = ReferenceMemory(40, seed=1), ScreenMemory(40, seed=1)
    _feed([reference, fast], DQNConfig(), [(1, "truncated")] * 60)
    _assert_same_batch(reference.sample_batch(40), fast.sample_batch(40), "after 60 one-step truncated episodes")


def test_screen_memory_refuses_states_it_cannot_rebuild():
    memory = ScreenMemory(10)
    memory.observe(torch.zeros(SCREEN), first=True)
    memory.observe(torch.ones(SCREEN), first=False)
    with pytest.raises(ValueError, match="neither the difference of the last two observed screens nor a stack"):
        memory.push(torch.full(SCREEN, 0.5), torch.tensor([[0]]), None, torch.tensor([1.0]))


def test_screen_memory_needs_a_screen_before_each_push():
    memory = ScreenMemory(10)
    memory.observe(torch.zeros(SCREEN), first=True)
    with pytest.raises(RuntimeError, match=r"call observe\(screen, first=False\)"):
        memory.push(torch.zeros(SCREEN), torch.tensor([[0]]), None, torch.tensor([1.0]))


@pytest.mark.parametrize("memory_class", [StateMemory, ScreenMemory])
def test_fast_memories_refuse_oversized_samples_naming_both_numbers(memory_class):
    memory = memory_class(10)
    _feed([memory], DQNConfig(), [(3, "terminated")])
    with pytest.raises(ValueError, match=r"sample\(batch_size=4\): the memory holds only 3 transitions"):
        memory.sample_batch(4)


def test_state_memory_samples_exactly_the_reference_batches():
    reference, fast = ReferenceMemory(23, seed=2), StateMemory(23, seed=2)
    _feed([reference, fast], DQNConfig(), EPISODES)
    for draw in range(5):
        _assert_same_batch(reference.sample_batch(16), fast.sample_batch(16), f"StateMemory draw {draw}")


@pytest.mark.parametrize("config", [DQNConfig(), DQNConfig(state="stack", stack_frames=3)], ids=["difference", "stack"])
def test_screen_batch_moves_as_uint8_and_materializes_the_same_states(config):
    memory = ScreenMemory(100, seed=0)
    _feed([memory], config, EPISODES)
    batch = memory.sample_batch(16)
    moved = batch.to("cpu")
    assert moved.screens.dtype == torch.uint8 and moved.stack == batch.stack, "to() must keep the uint8 screens"
    _assert_same_batch(batch, moved, "ScreenBatch.to('cpu')")


@pytest.mark.parametrize("config", [DQNConfig(), DQNConfig(state="stack", stack_frames=4)], ids=["difference", "stack"])
def test_screen_memory_states_come_in_the_layout_each_step_needs(config):
    # dense() feeds the fast network, which runs channels-last: a contiguous state would be copied once more.
    # materialize() feeds any network, the reference's included, and a network given channels-last input
    # sums in another order than the reference's on the same numbers.
    memory = ScreenMemory(100, seed=0)
    _feed([memory], config, EPISODES)
    batch = memory.sample_batch(16)
    dense, seed = batch.dense(), batch.materialize()
    for name, tensor in [("dense().states", dense.states), ("dense().next_states", dense.next_states)]:
        assert tensor.is_contiguous(memory_format=torch.channels_last), f"{name}: strides {tensor.stride()}"
    for name in ("states", "non_final_next_states"):
        tensor = getattr(seed, name)
        assert tensor.is_contiguous(), f"materialize().{name}: strides {tensor.stride()}, expected contiguous"


def test_screen_memory_refuses_screens_without_batch_and_channel_dimensions():
    memory = ScreenMemory(10)
    with pytest.raises(ValueError, match=r"screen of shape \(8, 10\), expected \(1, C, H, W\)"):
        memory.observe(torch.zeros(8, 10), first=True)


def test_a_screen_of_another_size_is_refused_naming_both_sizes():
    memory = ScreenMemory(4)
    memory.observe(torch.zeros(1, 3, 40, 90), first=True)
    with pytest.raises(ValueError, match=r"screen of shape \(1, 3, 40, 80\), but this memory holds screens of "
                       r"\(1, 3, 40, 90\)"):  # fmt: skip
        memory.observe(torch.zeros(1, 3, 40, 80), first=False)
