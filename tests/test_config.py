"""DQNConfig: the seed's defaults, documented fields, and bad values rejected by name."""

import dataclasses
import json
from pathlib import Path

import pytest

from dqnbench.config import SEED_CONFIG, TUNED_CONFIG, DQNConfig, config_from_dict, field_docs, load_config


def test_every_field_has_a_docstring():
    fields = [f.name for f in dataclasses.fields(DQNConfig)]
    docs = field_docs()
    missing = [name for name in fields if len(docs.get(name, "")) < 10]
    assert missing == [], f"DQNConfig fields without a docstring: {missing}"


def test_seed_config_is_the_notebooks():
    expected = {
        "episodes": 50,
        "batch_size": 128,
        "gamma": 0.999,
        "eps_start": 0.9,
        "eps_end": 0.05,
        "eps_decay": 200.0,
        "target_update_episodes": 10,
        "memory_capacity": 10000,
        "optimizer": "rmsprop",
        "learning_rate": 0.01,  # torch's RMSprop default, which the seed used
        "grad_clip": 1.0,
        "double_dqn": False,
        "state": "difference",
        "screen_height": 40,
        "view_fraction": 0.6,
    }
    got = {name: getattr(SEED_CONFIG, name) for name in expected}
    assert got == expected


def test_config_is_frozen_and_keyword_only():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SEED_CONFIG.episodes = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        DQNConfig(50)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"episodes": 0}, "episodes must be >= 1, got 0"),
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"memory_capacity": 0}, "memory_capacity must be >= 1, got 0"),
        ({"train_every": 0}, "train_every must be >= 1, got 0"),
        ({"stack_frames": 0}, "stack_frames must be >= 1, got 0"),
        ({"screen_height": 0}, "screen_height must be >= 1, got 0"),
        ({"view_fraction": 0.0}, r"view_fraction must lie in \(0, 1\], got 0.0"),
        ({"view_fraction": 1.5}, r"view_fraction must lie in \(0, 1\], got 1.5"),
        ({"gamma": 1.5}, r"gamma must lie in \[0, 1\], got 1.5"),
        ({"eps_start": 0.01}, "eps_start=0.01, eps_end=0.05"),
        ({"eps_end": -0.1}, "eps_start=0.9, eps_end=-0.1"),
        ({"eps_decay": 0.0}, "eps_decay must be > 0, got 0.0"),
        ({"grad_clip": -1.0}, "grad_clip must be > 0, got -1.0"),
        ({"learning_rate": 0.0}, "learning_rate must be > 0, got 0.0"),
        ({"target_update_episodes": -1}, "target_update_episodes and target_update_steps must be >= 0"),
        ({"target_update_episodes": 0}, "target_update_episodes=0 and target_update_steps=0"),
        ({"learning_starts": 100}, "learning_starts=100 < batch_size=128"),
        ({"memory_capacity": 64}, "memory_capacity=64 < batch_size=128"),
        ({"max_env_steps": 0}, "max_env_steps must be >= 1 or None, got 0"),
        ({"compile": True}, "compile=True needs impl='fast' \\(got impl='reference'\\)"),
    ],
)
def test_bad_values_are_rejected_naming_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        SEED_CONFIG.replace(**changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"episodes": "ten"}, "episodes must be int, got 'ten'"),
        ({"episodes": 2.5}, "episodes must be int, got 2.5"),
        ({"episodes": True}, "episodes must be int, got True"),
        ({"gamma": "0.9"}, "gamma must be float, got '0.9'"),
        ({"double_dqn": "no"}, "double_dqn must be bool, got 'no'"),
        ({"optimizer": "sgd"}, "optimizer must be one of 'rmsprop', 'adam', got 'sgd'"),
        ({"device": "gpu"}, "device must be one of 'auto', 'cpu', 'cuda', got 'gpu'"),
        ({"max_env_steps": "5"}, "max_env_steps must be int or None, got '5'"),
    ],
)
def test_values_of_the_wrong_type_are_rejected_naming_the_field(changes, message):
    # A JSON file can hold anything; nothing may be silently misread (e.g. "sgd" training with RMSprop).
    with pytest.raises(ValueError, match=f"my.json: invalid DQNConfig: {message}"):
        config_from_dict(changes, origin="my.json")


def test_integers_are_accepted_for_float_fields():
    assert config_from_dict({"gamma": 1, "eps_decay": 300}).eps_decay == 300


def test_named_configurations():
    assert load_config("seed") is SEED_CONFIG
    assert load_config("tuned") is TUNED_CONFIG
    assert TUNED_CONFIG.in_channels == 3 * TUNED_CONFIG.stack_frames
    assert SEED_CONFIG.in_channels == 3


def test_a_json_file_is_laid_over_the_seed_config(tmp_path):
    path = tmp_path / "my.json"
    path.write_text(json.dumps({"episodes": 7, "gamma": 0.9, "out": "somewhere"}))
    assert load_config(path) == SEED_CONFIG.replace(episodes=7, gamma=0.9, out=Path("somewhere"))


def test_the_written_config_json_loads_back_to_the_same_config(tmp_path):
    config = TUNED_CONFIG.replace(out=tmp_path / "run", max_env_steps=None, learning_rate_final=None)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_json_dict()))
    assert load_config(path) == config


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"episodes": 3, "epsiodes": 4}', r"my.json: unknown DQNConfig field\(s\) \['epsiodes'\]"),
        ('{"episodes": 3,}', "my.json: not valid JSON"),
        ("[1, 2]", "my.json: expected a JSON object of DQNConfig fields, got list"),
    ],
    ids=["unknown-key", "invalid-json", "not-an-object"],
)
def test_bad_json_files_are_rejected_with_the_file_named(tmp_path, content, message):
    path = tmp_path / "my.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_config(path)


def test_an_unknown_config_name_lists_the_named_ones(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'fancy': neither a named configuration \(seed, tuned\)"):
        load_config("fancy")


def test_resolved_out_is_the_given_folder_or_a_fresh_timestamped_one(tmp_path):
    assert SEED_CONFIG.replace(out=tmp_path).resolved_out() == tmp_path
    default = SEED_CONFIG.replace(seed=5).resolved_out()
    assert default.parent == Path("runs")
    assert default.name.startswith("train-")
    assert default.name.endswith("-seed5")
