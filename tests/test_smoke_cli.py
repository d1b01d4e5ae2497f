"""End to end: `dqnbench train` runs and writes every promised file."""

import csv
import json

from dqnbench.cli import main


def test_train_three_episodes_writes_csv_png_checkpoint_and_config(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--episodes", "3", "--seed", "1", "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "durations.csv").read_text().splitlines()))
    assert [int(r["episode"]) for r in rows] == [0, 1, 2]
    assert all(int(r["duration"]) >= 1 for r in rows)
    assert (out / "durations.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "checkpoint.pt").stat().st_size > 0
    assert json.loads((out / "config.json").read_text())["episodes"] == 3
