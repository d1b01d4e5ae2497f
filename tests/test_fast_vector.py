"""The vectorised CartPole follows gymnasium's equations; the vectorised trainer and the GPU check run on CPU."""

import json

import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from dqnbench.config import DQNConfig
from dqnbench.fast import gpu_check
from dqnbench.fast.raster import CartPoleRaster
from dqnbench.fast.vector import VectorCartPole, VectorReplay, VectorTrainer


def test_vector_cartpole_steps_as_gymnasium():
    vector = VectorCartPole(6, seed=3)
    env = CartPoleEnv()
    env.reset(seed=0)
    actions = torch.tensor([0, 1, 1, 0, 1, 0])
    start = vector.state.clone()
    terminated, truncated = vector.step(actions)
    for i, action in enumerate(actions.tolist()):
        env.unwrapped.state = start[i].numpy().copy()
        _, _, done, _, _ = env.step(action)
        np.testing.assert_allclose(
            vector.state[i].numpy(), env.unwrapped.state, rtol=0, atol=1e-12, err_msg=f"env {i}, action {action}"
        )
        assert bool(terminated[i]) == done, f"env {i}: terminated {bool(terminated[i])}, gymnasium {done}"
    assert not truncated.any(), "no environment can reach the 500-step limit in one step"


def test_vector_cartpole_restarts_only_finished_environments():
    vector = VectorCartPole(4, seed=0)
    vector.state[1, 2] = 1.0  # far past the 12-degree limit
    terminated, _ = vector.step(torch.zeros(4, dtype=torch.long))
    assert terminated.tolist() == [False, True, False, False], f"terminated {terminated.tolist()}"
    kept = vector.state[[0, 2, 3]].clone()
    vector.restart(terminated)
    torch.testing.assert_close(vector.state[[0, 2, 3]], kept, rtol=0, atol=0)
    assert vector.state[1].abs().max() <= 0.05, f"restarted state {vector.state[1].tolist()} not within 0.05"
    assert vector.steps.tolist() == [1, 0, 1, 1], f"step counters {vector.steps.tolist()}"


def test_vector_replay_rebuilds_difference_states():
    replay = VectorReplay(8, (3, 2, 2), torch.device("cpu"))
    screens = torch.randint(0, 256, (3, 3, 3, 2, 2), dtype=torch.uint8)
    replay.push(screens, torch.tensor([0, 1, 2]), torch.tensor([1.0, 2.0, 3.0]), torch.tensor([False, True, False]))
    batch = replay.sample(3)
    floats = screens.float() / 255
    for row, action in enumerate(batch.actions[:, 0].tolist()):  # the actions tell which transition a row is
        torch.testing.assert_close(batch.states[row], floats[action, 1] - floats[action, 0], rtol=0, atol=0)
        torch.testing.assert_close(batch.next_states[row], floats[action, 2] - floats[action, 1], rtol=0, atol=0)
        assert float(batch.rewards[row]) == action + 1.0
        assert bool(batch.continues[row]) == (action != 1), f"transition {action}: continues {batch.continues[row]}"


def test_dense_targets_ignore_the_next_state_of_final_rows():
    replay = VectorReplay(4, (3, 2, 2), torch.device("cpu"))
    replay.push(
        torch.randint(0, 256, (2, 3, 3, 2, 2), dtype=torch.uint8),
        torch.tensor([0, 1]),
        torch.ones(2),
        torch.tensor([True, False]),
    )
    batch = replay.sample(2)

    def target(states):
        return torch.full((states.shape[0], 2), 10.0)

    expected = torch.where(batch.continues, 1 + 0.5 * 10.0, 1.0)
    torch.testing.assert_close(batch.targets(target, 0.5), expected, rtol=0, atol=0)


def test_vector_trainer_learns_from_its_first_batch_on_cpu():
    config = DQNConfig(batch_size=8, learning_starts=8, memory_capacity=64, device="cpu")
    trainer = VectorTrainer(config, envs=4)
    assert trainer.raster.shape == CartPoleRaster().shape
    trainer.run(1)
    assert trainer.optimize_steps == 0, "no optimisation before the ring holds one batch"
    trainer.run(2)
    assert trainer.env_steps == 12 and trainer.optimize_steps == 2, (trainer.env_steps, trainer.optimize_steps)
    assert_device_counters_follow_the_host(trainer)


def assert_device_counters_follow_the_host(trainer: VectorTrainer) -> None:
    """What the device counts (read back here, never inside the loop) equals what the host counted."""
    device = (int(trainer.vector_steps), int(trainer.memory.stored), int(trainer.memory.next_slot))
    host = (trainer.env_steps // trainer.envs, trainer.memory.size, trainer.memory.next)
    assert device == host, f"(vector steps, stored, next slot): device {device}, host {host}"


def test_the_ring_wraps_with_its_counters_on_the_device():
    replay = VectorReplay(8, (3, 2, 2), torch.device("cpu"))
    for value in range(10):
        screens = torch.full((1, 3, 3, 2, 2), value, dtype=torch.uint8)
        replay.push(screens, torch.tensor([value]), torch.ones(1), torch.tensor([False]))
    assert (int(replay.stored), int(replay.next_slot), replay.size, replay.next) == (8, 2, 8, 2)
    # The two oldest (0 and 1) were overwritten by 8 and 9, in their slots.
    assert replay.actions[:, 0].tolist() == [8, 9, 2, 3, 4, 5, 6, 7]


def test_sampling_is_uniform_without_replacement_over_stored_slots_only():
    replay = VectorReplay(16, (3, 2, 2), torch.device("cpu"), seed=1)
    replay.push(
        torch.zeros(5, 3, 3, 2, 2, dtype=torch.uint8), torch.arange(5), torch.ones(5), torch.zeros(5, dtype=torch.bool)
    )
    counts = torch.zeros(5)
    draws = 4000
    for _ in range(draws):
        picked = replay.sample(2).actions[:, 0]
        assert picked.unique().numel() == 2, f"a transition drawn twice in one batch: {picked.tolist()}"
        counts += torch.bincount(picked, minlength=5)[:5].float()
        assert int(picked.max()) < 5, f"drew an empty slot: {picked.tolist()}"
    expected = draws * 2 / 5  # 1600 each; binomial sd ~31
    assert (counts - expected).abs().max() < 6 * 31, f"draw counts {counts.tolist()}, expected ~{expected:.0f} each"


def test_a_cuda_graph_needs_a_cuda_device():
    config = DQNConfig(batch_size=8, learning_starts=8, memory_capacity=64, device="cuda", cuda_graph=True, impl="fast")
    with pytest.raises(ValueError, match="VectorTrainer: cuda_graph needs a CUDA device, got device=cpu"):
        VectorTrainer(config, envs=4, device=torch.device("cpu"))


def test_gpu_check_reports_every_figure_on_cpu(capsys):
    result = gpu_check.main(
        [
            "--device",
            "cpu",
            "--seconds",
            "0.1",
            "--optimize-steps",
            "1",
            "--envs",
            "8",
            "--batch-size",
            "8",
            "--raster-states",
            "8",
        ]
    )
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == result
    for key in ("optimize_ms_reference", "optimize_ms_fast", "env_steps_per_s", "raster_screens_per_s"):
        assert result[key] > 0, f"{key} = {result[key]}"


@pytest.mark.parametrize(
    "option",
    [
        {"optimizer": "adam"},
        {"double_dqn": True},
        {"learning_rate_final": 1e-4, "max_env_steps": 10},
        {"target_update_episodes": 5},
        {"target_update_episodes": 10, "target_update_steps": 500},  # the episodes' syncs would be dropped
    ],
)
def test_vector_trainer_refuses_options_it_does_not_implement(option):
    config = DQNConfig(batch_size=8, learning_starts=8, memory_capacity=64, **option)
    name, value = next(iter(option.items()))
    with pytest.raises(ValueError, match=rf"does not implement: {name}={value!r} "):
        VectorTrainer(config, envs=4)


def test_vector_trainer_syncs_by_the_steps_it_is_given():
    config = DQNConfig(
        batch_size=8, learning_starts=8, memory_capacity=64, target_update_episodes=0, target_update_steps=3
    )
    trainer = VectorTrainer(config, envs=4)
    initial = [p.detach().clone() for p in trainer.target.parameters()]
    while trainer.optimize_steps < 2:
        trainer.step()
    for before, now in zip(initial, trainer.target.parameters(), strict=True):
        torch.testing.assert_close(now, before, rtol=0, atol=0, msg="the target changed before its 3rd step")
    trainer.step()
    assert trainer.optimize_steps == 3, trainer.optimize_steps
    for policy, target in zip(trainer.policy.parameters(), trainer.target.parameters(), strict=True):
        torch.testing.assert_close(target, policy, rtol=0, atol=0, msg="the target was not synced at step 3")
