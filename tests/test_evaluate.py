"""`dqnbench evaluate`: a trained run's policy is played back, and each episode's ending is named right."""

import math
from collections import Counter

import numpy as np
import pytest

from dqnbench.cli import main
from dqnbench.config import DQNConfig
from dqnbench.envs import make_env
from dqnbench.evaluate import Evaluation, ending, evaluate
from dqnbench.train import train

SMALL = {"batch_size": 4, "learning_starts": 4, "memory_capacity": 200, "device": "cpu"}


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """Two tiny runs: the seed's network, and a stacked-screen one of the whole track without BatchNorm on the
    fast parts."""
    root = tmp_path_factory.mktemp("runs")
    seed = DQNConfig(episodes=2, out=root / "seed", **SMALL)
    stacked = DQNConfig(
        episodes=2,
        out=root / "stacked",
        impl="fast",
        state="stack",
        stack_frames=3,
        batch_norm=False,
        view_fraction=1.0,
        **SMALL,
    )
    for config in (seed, stacked):
        train(config, progress=False)
    return seed.out, stacked.out


def test_a_trained_run_plays_back_with_every_episode_ending_named(trained_runs, capsys):
    for run in trained_runs:
        result = evaluate(run, episodes=3, eps=0.5, seed=1)
        assert len(result.durations) == 3 and all(d >= 1 for d in result.durations), result
        assert sum(result.endings.values()) == 3, result.endings
        assert main(["evaluate", str(run), "--episodes", "2"]) == 0
        assert f"{run}: 2 episodes: mean duration" in capsys.readouterr().out


def test_where_the_cart_ended_is_recorded_for_every_episode(trained_runs):
    result = evaluate(trained_runs[1], episodes=4, eps=0.5, seed=2)
    assert len(result.end_positions) == 4, result
    off_track = sum(abs(x) > 2.4 for x in result.end_positions)
    assert off_track == result.endings["cart left the track"], (result.end_positions, result.endings)
    assert all(abs(x) < 3.0 for x in result.end_positions), f"not a cart position: {result.end_positions}"


def test_describe_names_the_median_distance_from_the_centre_where_episodes_ended():
    played = Evaluation([120, 140, 90], Counter({"pole fell": 3}), 13.2, (-2.2, 1.0, -1.6))
    assert "the cart ended at median |x| 1.60; mean max-Q 13.2" in played.describe()
    assert "median |x|" not in Evaluation([5], Counter({"terminated": 1}), end_positions=(math.nan,)).describe()


def test_the_same_seed_plays_the_same_episodes(trained_runs):
    run = trained_runs[0]
    assert evaluate(run, episodes=2, eps=0.3, seed=5) == evaluate(run, episodes=2, eps=0.3, seed=5)


@pytest.mark.parametrize(
    ("state", "terminated", "expected"),
    [
        ([2.5, 0.0, 0.0, 0.0], True, "cart left the track"),
        ([-2.5, 0.0, 0.05, 0.0], True, "cart left the track"),
        ([0.3, 0.0, 0.25, 0.0], True, "pole fell"),
        ([0.3, 0.0, 0.01, 0.0], False, "time limit"),
    ],
)
def test_endings_of_cartpole(state, terminated, expected):
    env = make_env()
    env.reset(seed=0)
    env.unwrapped.state = np.array(state)
    try:
        assert ending(env, terminated) == expected
    finally:
        env.close()


def test_a_folder_without_a_run_is_named_with_the_fix(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "no config.json and no checkpoint.pt; pass the --out folder of a `dqnbench train` run" in (
        capsys.readouterr().err
    )


def test_bad_episode_counts_are_refused(trained_runs):
    with pytest.raises(ValueError, match="need episodes >= 1"):
        evaluate(trained_runs[0], episodes=0)


def test_mean_max_q_is_reported_for_greedy_play_only(trained_runs, capsys):
    run = trained_runs[1]
    greedy = evaluate(run, episodes=2, eps=0.0, seed=3)
    assert np.isfinite(greedy.mean_max_q), greedy
    assert np.isnan(evaluate(run, episodes=2, eps=1.0, seed=3).mean_max_q), "random play has no greedy max-Q"
    assert main(["evaluate", str(run), "--episodes", "1"]) == 0
    assert "mean max-Q" in capsys.readouterr().out
