"""`dqnbench train`: options generated from DQNConfig, configs from names and files, and a run end to end."""

import csv
import dataclasses
import json
import re
import signal
import subprocess
import sys
import time
from importlib.metadata import entry_points

import pytest

import dqnbench.cli
from dqnbench.cli import build_parser, config_from_args, main
from dqnbench.config import SEED_CONFIG, TUNED_CONFIG, DQNConfig, field_docs


def _config(argv: list[str]) -> DQNConfig:
    return config_from_args(build_parser().parse_args(["train", *argv]))


def _argv_for(config: DQNConfig) -> list[str]:
    """Every field of `config` spelled as command-line options."""
    argv = []
    for name, value in config.to_json_dict().items():
        option = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(option if value else "--no-" + name.replace("_", "-"))
        else:
            argv += [option, "none" if value is None else str(value)]
    return argv


def test_the_console_script_is_the_cli_main():
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "dqnbench"]
    assert script.value == "dqnbench.cli:main"


def test_every_field_has_an_option_helped_by_its_docstring(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "10000")  # no wrapping, so each docstring appears in one piece
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    docs = field_docs()
    for f in dataclasses.fields(DQNConfig):
        option = "--" + f.name.replace("_", "-")
        assert option in help_text, f"no {option} option for DQNConfig.{f.name}"
        assert docs[f.name] in help_text, f"{option}'s help is not DQNConfig.{f.name}'s docstring"


def test_every_field_can_be_set_from_the_command_line(tmp_path):
    # The tuned config differs from the seed's in many fields; out and max_env_steps cover the optional ones.
    for wanted in (TUNED_CONFIG.replace(out=tmp_path / "run"), SEED_CONFIG.replace(max_env_steps=None)):
        assert _config(_argv_for(wanted)) == wanted


def test_options_override_the_named_config():
    assert _config(["--config", "tuned"]) == TUNED_CONFIG
    assert _config(["--config", "tuned", "--episodes", "5", "--no-double-dqn"]) == TUNED_CONFIG.replace(
        episodes=5, double_dqn=False
    )
    assert _config([]) == SEED_CONFIG


def test_options_override_a_json_config(tmp_path):
    path = tmp_path / "my.json"
    path.write_text(json.dumps({"episodes": 7, "gamma": 0.9}))
    assert _config(["--config", str(path), "--gamma", "0.5"]) == SEED_CONFIG.replace(episodes=7, gamma=0.5)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--gamma", "2"], r"command line: invalid DQNConfig: gamma must lie in \[0, 1\], got 2.0"),
        (["--batch-size", "256"], "learning_starts=128 < batch_size=256"),
        (["--config", "{json}"], r"unknown DQNConfig field\(s\) \['epsiodes'\]"),
        (["--config", "nonsense"], r"--config 'nonsense': neither a named configuration"),
    ],
    ids=["bad-value", "bad-combination", "unknown-json-key", "unknown-config"],
)
def test_bad_configs_exit_2_with_the_problem_named_and_create_nothing(tmp_path, capsys, argv, message):
    path = tmp_path / "bad.json"
    path.write_text('{"epsiodes": 3}')
    out = tmp_path / "run"
    argv = [arg.replace("{json}", str(path)) for arg in argv]
    assert main(["train", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dqnbench train: error: ")
    assert re.search(message, err), f"expected {message!r} in {err!r}"
    assert not out.exists()


@pytest.mark.parametrize("argv", [["--device", "gpu"], ["--episodes", "ten"], ["--epsiodes", "3"], []], ids=str)
def test_malformed_options_are_argparse_errors(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *argv] if argv else argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_train_three_episodes_writes_csv_png_checkpoint_and_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--episodes", "3", "--seed", "1", "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "durations.csv").read_text().splitlines()))
    assert [int(r["episode"]) for r in rows] == [0, 1, 2]
    assert all(int(r["duration"]) >= 1 for r in rows)
    assert (out / "durations.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "checkpoint.pt").stat().st_size > 0
    assert json.loads((out / "config.json").read_text())["episodes"] == 3
    captured = capsys.readouterr()
    assert "finished 3 episodes" in captured.out
    progress = captured.err.splitlines()
    assert [line.split(" | ")[0].split("] ")[1] for line in progress] == ["episode 1/3", "episode 2/3", "episode 3/3"]
    assert progress[-1].endswith("steps/s")


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "dqnbench.cli", "--help"],
        ["-m", "dqnbench.cli", "train", "--help"],
        ["-m", "dqnbench.cli", "report", "--help"],
        ["-m", "dqnbench.cli", "sweep", "--help"],
        ["-m", "dqnbench.cli", "golden", "--help"],
        ["-m", "dqnbench.bench.history", "store", "--help"],
        ["-m", "dqnbench.bench.compare", "--help"],
        ["-m", "dqnbench.cli", "bench", "ab", "--help"],
        ["-m", "dqnbench.cli", "bench", "calibrate", "--help"],
        ["-m", "dqnbench.cli", "bench", "run", "--help"],
    ],
    ids=lambda argv: " ".join(argv[1:-1]).replace("dqnbench.", "") or "cli",
)
def test_every_command_prints_its_help(argv):
    # argparse formats help text with %, so a stray "10%" in any help string only fails here.
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"python {' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}"
    assert "usage:" in done.stdout


def test_sigterm_stops_training_like_ctrl_c_with_every_file_complete(tmp_path):
    # SDL used to swallow SIGTERM, and a plain SIGTERM would skip the final writes.
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "dqnbench.cli", "train", "--episodes", "10000", "--out", str(out)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        deadline = time.monotonic() + 120
        while not ((out / "durations.csv").is_file() and len((out / "durations.csv").read_text().splitlines()) > 2):
            assert run.poll() is None, f"training ended early: {run.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no episode finished within 120 s"
            time.sleep(0.2)
        run.send_signal(signal.SIGTERM)
        stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, f"exit {run.returncode}, expected 130 (interrupted):\n{stderr[-2000:]}"
    assert "interrupted after" in stdout
    rows = list(csv.DictReader((out / "durations.csv").read_text().splitlines()))
    assert len(rows) >= 2
    assert (out / "durations.png").read_bytes().startswith(b"\x89PNG")
    import torch

    assert torch.load(out / "checkpoint.pt", weights_only=True)["episodes_done"] >= len(rows)


def test_every_command_pins_the_allocator_before_it_runs(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(dqnbench.cli, "pin_glibc_allocator", lambda: calls.append("pinned"))
    assert main(["train", "--episodes", "0"]) == 2  # fails validation, after pinning
    assert calls == ["pinned"], "dqnbench.cli.main did not pin glibc's allocator thresholds"
    assert "episodes must be >= 1" in capsys.readouterr().err
