"""The training loop: determinism, how transitions are stored, interruption, and refusing to lose results."""

import csv
import dataclasses
import json
import math
import random

import matplotlib.image
import pytest
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from dqnbench.cli import main
from dqnbench.config import SEED_CONFIG, DQNConfig
from dqnbench.envs import make_env
from dqnbench.nets import DQN
from dqnbench.parts import REFERENCE_PARTS, screen_for
from dqnbench.train import CSV_HEADER, Experience, Progress, StateBuilder, TrainResult, resolve_device, train
from support import assert_same_state, changed_entries, needs_cuda

# Small enough that a dozen optimisation steps take about a second.
SMALL = {"batch_size": 4, "learning_starts": 4, "memory_capacity": 200, "device": "cpu"}


def _checkpoint(out) -> dict:
    return torch.load(out / "checkpoint.pt", weights_only=True)


class ScriptedCartPole(CartPoleEnv):
    """CartPole whose every episode ends at step `end_at`, either terminated or truncated.

    Optionally raises KeyboardInterrupt, as Ctrl-C would, at the `interrupt_at`-th step of the run.
    """

    def __init__(self, end: str = "terminated", end_at: int = 3, interrupt_at: int | None = None) -> None:
        super().__init__(render_mode="rgb_array")
        self.end, self.end_at, self.interrupt_at = end, end_at, interrupt_at
        self.episode_steps = self.run_steps = 0

    def reset(self, **kwargs):
        self.episode_steps = 0
        return super().reset(**kwargs)

    def step(self, action):
        self.run_steps += 1
        if self.run_steps == self.interrupt_at:
            raise KeyboardInterrupt
        obs, reward, _, _, info = super().step(action)
        self.episode_steps += 1
        over = self.episode_steps == self.end_at
        return obs, reward, over and self.end == "terminated", over and self.end == "truncated", info


@pytest.fixture
def scripted_env(monkeypatch):
    """Make `train` use a ScriptedCartPole built with the given options."""

    def use(**options):
        monkeypatch.setattr("dqnbench.train.make_env", lambda env_id: ScriptedCartPole(**options))

    return use


def test_same_seed_gives_identical_parameters_element_by_element(tmp_path):
    config = DQNConfig(episodes=50, max_env_steps=16, seed=3, target_update_episodes=1, **SMALL)
    runs = [train(config.replace(out=tmp_path / name), progress=False) for name in ("a", "b")]
    assert runs[0].total_steps == 16, "the run should stop at max_env_steps"
    assert runs[0].durations == runs[1].durations
    first, second = _checkpoint(tmp_path / "a"), _checkpoint(tmp_path / "b")
    for net in ("policy", "target"):
        assert_same_state(first[net], second[net], f"{net} network of two runs with seed 3")
    # The comparison can fail: 13 optimisation steps moved the policy away from its (seeded) initial weights.
    torch.manual_seed(3)
    initial = DQN(40, 90, 2).state_dict()
    assert "head.weight" in changed_entries(initial, first["policy"])


def test_another_seed_gives_other_parameters(tmp_path):
    config = DQNConfig(episodes=1, max_env_steps=6, **SMALL)
    for seed in (0, 1):
        train(config.replace(seed=seed, out=tmp_path / str(seed)), progress=False)
    differing = changed_entries(_checkpoint(tmp_path / "0")["policy"], _checkpoint(tmp_path / "1")["policy"])
    assert "head.weight" in differing


@pytest.mark.parametrize(
    ("end", "bootstrap_truncated", "stores_next_state"),
    [
        ("terminated", True, False),
        ("terminated", False, False),
        ("truncated", True, True),  # a time limit is not the end of the task: bootstrap from s'
        ("truncated", False, False),  # the seed's `done` conflated the two
    ],
)
def test_the_last_transition_of_an_episode_bootstraps_only_when_it_should(
    monkeypatch, tmp_path, scripted_env, end, bootstrap_truncated, stores_next_state
):
    memories = []

    def recording_memory(capacity, seed):
        memories.append(REFERENCE_PARTS.make_memory(capacity, seed))
        return memories[-1]

    parts = dataclasses.replace(REFERENCE_PARTS, make_memory=recording_memory)
    monkeypatch.setattr("dqnbench.train.training_parts", lambda impl: parts)
    scripted_env(end=end, end_at=3)
    config = DQNConfig(
        episodes=2, batch_size=1, learning_starts=1000, bootstrap_truncated=bootstrap_truncated, out=tmp_path / "run"
    )
    assert train(config, progress=False).durations == [3, 3]

    transitions = memories[0].oldest_first()
    assert [t.next_state is not None for t in transitions] == [True, True, stores_next_state] * 2
    for earlier, later in [(0, 1), (1, 2), (3, 4), (4, 5)]:
        torch.testing.assert_close(transitions[earlier].next_state, transitions[later].state, rtol=0, atol=0)


def _read_csv(out) -> list[dict[str, str]]:
    text = (out / "durations.csv").read_text()
    assert text.startswith(CSV_HEADER)
    return list(csv.DictReader(text.splitlines()))


def _assert_results_complete(out, config: DQNConfig, episodes: int) -> None:
    rows = _read_csv(out)
    assert [int(r["episode"]) for r in rows] == list(range(episodes))
    for row in rows:
        assert all(value != "" for value in row.values()), f"incomplete row {row}"
        float(row["mean_loss"]), float(row["wall_s"]), float(row["epsilon"]), float(row["mean_max_q"])  # parseable
    checkpoint = _checkpoint(out)
    assert checkpoint["episodes_done"] == episodes
    assert sum(int(r["duration"]) for r in rows) <= checkpoint["total_steps"]
    DQN(40, 90, 2).load_state_dict(checkpoint["policy"])
    assert matplotlib.image.imread(out / "durations.png").ndim == 3
    assert json.loads((out / "config.json").read_text()) == config.to_json_dict()
    leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [], f"half-written files left behind: {leftovers}"


def test_ctrl_c_keeps_every_finished_episode_and_complete_files(tmp_path, scripted_env):
    # Episodes end every 5 steps; Ctrl-C arrives in the middle of the third episode, after 9 updates.
    scripted_env(end="terminated", end_at=5, interrupt_at=13)
    config = DQNConfig(episodes=10, out=tmp_path / "run", **SMALL)
    result = train(config, progress=False)
    assert result.interrupted
    assert result.durations == [5, 5]
    _assert_results_complete(config.out, config, episodes=2)
    assert _checkpoint(config.out)["optimizer"]["state"], "the optimiser state was not saved"


def test_ctrl_c_in_the_first_episode_still_leaves_complete_files_and_exit_code_130(tmp_path, scripted_env, capsys):
    scripted_env(interrupt_at=1)
    out = tmp_path / "run"
    assert main(["train", "--episodes", "3", "--out", str(out), "--device", "cpu"]) == 130
    assert "interrupted after 0 episodes" in capsys.readouterr().out
    _assert_results_complete(out, DQNConfig(episodes=3, out=out, device="cpu"), episodes=0)


def test_an_existing_out_folder_is_never_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "durations.csv").write_text("precious results\n")
    with pytest.raises(FileExistsError, match=r"output folder .*run already exists.*pass a new --out"):
        train(DQNConfig(episodes=1, out=out), progress=False)
    assert [p.name for p in out.iterdir()] == ["durations.csv"]
    assert (out / "durations.csv").read_text() == "precious results\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when CUDA is absent")
def test_device_cuda_without_cuda_is_a_clear_error_that_creates_nothing(tmp_path, capsys):
    with pytest.raises(RuntimeError, match=r"--device cuda was requested but .*is False; use --device cpu"):
        resolve_device("cuda")
    out = tmp_path / "run"
    assert main(["train", "--device", "cuda", "--out", str(out)]) == 2
    assert "dqnbench train: error: --device cuda was requested" in capsys.readouterr().err
    assert not out.exists(), "a failed start left a folder behind, so the corrected re-run would be refused"


@pytest.mark.cuda
@needs_cuda
def test_training_on_cuda_writes_a_checkpoint_that_loads_on_the_cpu(tmp_path):
    config = DQNConfig(episodes=50, max_env_steps=12, **SMALL).replace(device="cuda", out=tmp_path / "run")
    result = train(config, progress=False)
    assert result.total_steps == 12
    checkpoint = torch.load(config.out / "checkpoint.pt", map_location="cpu", weights_only=True)
    net = DQN(40, 90, 2)
    net.load_state_dict(checkpoint["policy"])
    assert not any(p.is_cuda for p in net.parameters())


def test_resolve_device_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_state_builder_makes_the_seeds_difference_starting_at_zero():
    first, second = torch.full((1, 3, 2, 2), 2.0), torch.full((1, 3, 2, 2), 5.0)
    states = StateBuilder(DQNConfig())
    torch.testing.assert_close(states.reset(first), torch.zeros(1, 3, 2, 2))
    torch.testing.assert_close(states.push(second), torch.full((1, 3, 2, 2), 3.0))


def test_state_builder_stacks_the_last_screens_oldest_first():
    screens = [torch.full((1, 3, 2, 2), float(i)) for i in range(6)]
    states = StateBuilder(DQNConfig(state="stack", stack_frames=4))
    torch.testing.assert_close(states.reset(screens[0]), torch.zeros(1, 12, 2, 2))
    for screen in screens[1:]:
        state = states.push(screen)
    expected = torch.cat([torch.full((1, 3, 2, 2), float(i)) for i in (2, 3, 4, 5)], dim=1)
    torch.testing.assert_close(state, expected)


def test_progress_line_shows_episode_duration_mean_and_speed(capsys):
    progress = Progress(total=50)
    progress.update(TrainResult(durations=[10, 20, 33]), steps_per_s=123.456)
    assert capsys.readouterr().err.strip() == (
        "[#...................] episode 3/50 | duration 33 | mean100 21.0 | 123.5 steps/s"
    )
    progress.update(TrainResult(durations=[10] * 50), steps_per_s=1.0)
    assert capsys.readouterr().err.strip().startswith("[" + "#" * 20 + "] episode 50/50")
    # Bounded by environment steps: half the step budget fills half the bar, whatever the episode count.
    by_steps = Progress(total=100_000, max_steps=1000)
    by_steps.update(TrainResult(durations=[250, 250], total_steps=500), steps_per_s=1.0)
    assert capsys.readouterr().err.strip().startswith("[" + "#" * 10 + "." * 10 + "] episode 2/100000")


def test_batch_norm_false_trains_a_network_without_batchnorm(tmp_path):
    config = SEED_CONFIG.replace(
        episodes=2, batch_size=8, learning_starts=8, batch_norm=False, out=tmp_path / "run", device="cpu"
    )
    train(config, progress=False)
    weights = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["policy"]
    assert not [name for name in weights if "running_mean" in name], sorted(weights)


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_a_whole_track_view_trains_a_network_sized_for_its_wider_screens(tmp_path, impl):
    config = SEED_CONFIG.replace(
        episodes=2, batch_size=8, learning_starts=8, impl=impl, view_fraction=1.0, out=tmp_path / "run", device="cpu"
    )
    train(config, progress=False)
    weights = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["policy"]
    expected = DQN(40, 150, 2).head.weight.shape
    assert weights["head.weight"].shape == expected, (
        f"{impl}: head {tuple(weights['head.weight'].shape)} after training on 40 x 150 screens, {tuple(expected)} "
        "expected; is view_fraction passed to the screen function?"
    )


def test_a_screen_function_without_a_view_is_refused_a_view_other_than_the_seeds():
    calls = []

    def seed_view_only(env, height):
        calls.append((env, height))
        return torch.zeros(1, 3, height, 90)

    with pytest.raises(ValueError, match=r"view_fraction=1.0: the screen function '.*seed_view_only' cannot take"):
        screen_for(seed_view_only, SEED_CONFIG.replace(view_fraction=1.0))
    screen_for(seed_view_only, SEED_CONFIG)("env")
    assert calls == [("env", 40)], f"at the seed's view a screen function is called as (env, height), got {calls}"


def test_a_replay_memory_that_cannot_fit_is_refused_before_anything_is_written(tmp_path, capsys):
    # 10**9 transitions of two float difference states (43 kB each: 80466.3 GiB) fit no machine this runs
    # on; the run must say so, name the fixes, and leave no folder behind.
    out = tmp_path / "run"
    code = main(["train", "--memory-capacity", "1000000000", "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--memory-capacity 1000000000 with --impl reference: a full replay memory takes ~80466.3 GiB" in err
    assert "lower --memory-capacity, or use --impl fast" in err
    assert not out.exists()


def test_replay_sizes_of_the_reference_and_fast_memories():
    from dqnbench.fast.parts import FAST_PARTS
    from dqnbench.parts import REFERENCE_PARTS

    # The tuned configuration's 4 stacked screens: float states for the reference, one uint8 screen for fast.
    assert REFERENCE_PARTS.replay_bytes(100_000, (12, 40, 90)) == 100_000 * 2 * 12 * 40 * 90 * 4
    assert FAST_PARTS.replay_bytes(100_000, (12, 40, 90)) == 100_000 * 3 * 40 * 90


def test_mean_max_q_averages_max_q_over_the_greedy_steps_only():
    config = DQNConfig(**SMALL)
    env = make_env(config.env_id)
    torch.manual_seed(0)
    net = DQN(40, 90, 2).eval()
    memory = REFERENCE_PARTS.make_memory(100, 0)
    experience = Experience(env, REFERENCE_PARTS.get_screen, memory, config, torch.device("cpu"), random.Random(0))
    try:
        env.reset(seed=0)
        state = experience.start_episode()
        expected = []
        for _ in range(4):
            with torch.no_grad():
                expected.append(float(net(state).max()))
            state, _, _ = experience.step(net, state, eps=0.0)
        assert len(set(expected)) > 1, "the states should differ, or the mean would not test the averaging"
        assert experience.take_max_q() == pytest.approx(sum(expected) / 4, rel=1e-6), expected
        assert math.isnan(experience.take_max_q()), "take_max_q must start afresh"
        experience.step(net, state, eps=1.0)
        assert math.isnan(experience.take_max_q()), "a random action's step has no max-Q to report"
    finally:
        env.close()
