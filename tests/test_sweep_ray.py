"""`dqnbench sweep --backend ray`: same results as the local backend, failures and Ctrl-C handled per task.

The scheduling logic is tested against a stand-in for Ray (deterministic, no cluster); one slow test runs a
real local Ray instance and compares it with the local backend element by element.
"""

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

from dqnbench.cli import main
from dqnbench.config import DQNConfig
from dqnbench.sweep_ray import SeedFiles, _drive, gpus_per_seed, import_ray, write_seed_files
from support import assert_same_state


class FakeRayError(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class FakeCancelled(FakeRayError):
    pass


class FakeRay:
    """Runs each task when the driver asks for its result; `interrupt_after` raises KeyboardInterrupt in the
    driver's n-th wait, as Ctrl-C would."""

    class exceptions:  # mirrors ray.exceptions
        RayError = FakeRayError
        TaskCancelledError = FakeCancelled

    def __init__(self, outcome, interrupt_after: int | None = None) -> None:
        self.outcome = outcome
        self.interrupt_after = interrupt_after
        self.waits = 0
        self.submitted: list[int] = []
        self.cancelled: list[int] = []

    def task(self):
        fake = self

        class Task:
            @staticmethod
            def remote(config, threads, eval_episodes):
                fake.submitted.append(config.seed)
                return config

        return Task

    def wait(self, refs, num_returns):
        self.waits += 1
        if self.interrupt_after is not None and self.waits > self.interrupt_after:
            raise KeyboardInterrupt
        return refs[:num_returns], refs[num_returns:]

    def cancel(self, ref):
        self.cancelled.append(ref.seed)

    def get(self, ref):
        return self.outcome(ref, cancelled=ref.seed in self.cancelled)


def _configs(tmp_path: Path, seeds) -> list[DQNConfig]:
    return [DQNConfig(seed=seed, device="cpu", out=tmp_path / f"seed{seed}") for seed in seeds]


def _files(config, interrupted=False) -> SeedFiles:
    return SeedFiles(
        seed=config.seed,
        files={"durations.csv": f"seed {config.seed}\n".encode(), "config.json": b"{node's path}"},
        interrupted=interrupted,
    )


def test_a_failed_seed_is_named_with_its_error_and_the_others_are_written(tmp_path):
    def outcome(config, cancelled):
        if config.seed == 1:
            raise FakeRayError(ValueError("gymnasium.error.NameNotFound: NoSuchEnv"))
        return _files(config)

    fake = FakeRay(outcome)
    failures = _drive(fake, fake.task(), _configs(tmp_path, [0, 1, 2]), 1, 0, jobs=2)
    assert failures == [(1, "ValueError: gymnasium.error.NameNotFound: NoSuchEnv")]
    assert fake.submitted == [0, 1, 2], "a failure must not stop the seeds after it"
    for seed in (0, 2):
        assert (tmp_path / f"seed{seed}" / "durations.csv").read_text() == f"seed {seed}\n"
        written = json.loads((tmp_path / f"seed{seed}" / "config.json").read_text())
        assert written["out"] == str(tmp_path / f"seed{seed}"), "config.json must name DIR/seed<N>, not the node's"
    assert not (tmp_path / "seed1").exists()


def test_ctrl_c_cancels_every_task_keeps_what_ran_and_starts_nothing_more(tmp_path):
    def outcome(config, cancelled):
        if cancelled and config.seed == 1:
            raise FakeCancelled(RuntimeError("cancelled before it started"))
        return _files(config, interrupted=cancelled)

    fake = FakeRay(outcome, interrupt_after=1)
    with pytest.raises(KeyboardInterrupt):
        _drive(fake, fake.task(), _configs(tmp_path, [0, 1, 2, 3]), 1, 0, jobs=2)
    # Wait 1 returned seed 0, seed 2 was submitted in its place; wait 2 was interrupted with 1 and 2 running.
    assert fake.submitted == [0, 1, 2]
    assert sorted(fake.cancelled) == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed0", "seed2"], "seed 2's stopped run must be kept"


def test_without_ray_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RuntimeError, match=r"pip install 'dqnbench\[ray\]'"):
        import_ray()


@pytest.mark.parametrize(
    ("device", "cluster_gpus", "requested", "expected"),
    [
        pytest.param("cpu", 4.0, None, 0.0, id="cpu_asks_for_no_gpu"),
        pytest.param("auto", 0.0, None, 0.0, id="auto_on_a_cpu_cluster"),
        pytest.param("auto", 2.0, None, 0.25, id="auto_on_a_gpu_cluster"),
        pytest.param("cuda", 1.0, 0.5, 0.5, id="requested_share"),
    ],
)
def test_gpu_share_of_a_seed(device, cluster_gpus, requested, expected):
    assert gpus_per_seed(DQNConfig(device=device), cluster_gpus, requested) == expected


@pytest.mark.parametrize(
    ("device", "cluster_gpus", "requested", "message"),
    [
        pytest.param("cpu", 1.0, 0.5, "with --device cpu: drop one of them", id="gpu_share_on_cpu"),
        pytest.param("auto", 0.0, 0.5, "the Ray cluster has no GPU", id="no_gpu_in_cluster"),
        pytest.param("cuda", 0.0, None, "--device cuda: the Ray cluster has no GPU", id="cuda_without_gpu"),
        pytest.param("cuda", 2.0, 1.5, r"a fraction in \[0, 1\] or a whole number", id="fractional_over_one"),
    ],
)
def test_gpu_share_refusals_name_the_options(device, cluster_gpus, requested, message):
    with pytest.raises(ValueError, match=message):
        gpus_per_seed(DQNConfig(device=device), cluster_gpus, requested)


def test_write_seed_files_keeps_the_task_files(tmp_path):
    config = DQNConfig(seed=3, out=tmp_path / "seed3")
    write_seed_files(config, SeedFiles(seed=3, files={"evaluation.json": b'{"mean": 9.0}'}, interrupted=False))
    assert (tmp_path / "seed3" / "evaluation.json").read_bytes() == b'{"mean": 9.0}'
    assert json.loads((tmp_path / "seed3" / "config.json").read_text()) == config.to_json_dict()


def test_ray_options_need_the_ray_backend(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--seeds", "0", "--address", "10.0.0.1:6379", "--device", "cpu", "--out", str(out)]) == 2
    assert "--address and --gpus-per-seed are options of --backend ray" in capsys.readouterr().err
    assert not out.exists()


def _rows(path: Path, drop: str = "wall_s") -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return [{k: v for k, v in row.items() if k != drop} for row in csv.DictReader(handle)]


def _without(record: dict, *keys: str) -> dict:
    return {k: v for k, v in record.items() if k not in keys}


@pytest.mark.slow
def test_a_ray_sweep_gives_the_local_sweeps_results_bit_for_bit(tmp_path, monkeypatch):
    """2 seeds, 2 episodes with optimisation steps, on a local Ray instance and on the local backend."""
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'dqnbench[ray]')")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    small = ["--seeds", "0", "1", "--episodes", "2", "--batch-size", "4", "--learning-starts", "4"]
    small += ["--device", "cpu", "--threads", "1", "--eval-episodes", "3"]
    assert main(["sweep", "--backend", "ray", *small, "--out", str(tmp_path / "ray")]) == 0
    assert main(["sweep", "--jobs", "2", *small, "--out", str(tmp_path / "local")]) == 0

    ray_dir, local_dir = tmp_path / "ray", tmp_path / "local"
    for seed in (0, 1):
        got, expected = ray_dir / f"seed{seed}", local_dir / f"seed{seed}"
        assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in expected.iterdir())
        ray_rows, local_rows = _rows(got / "durations.csv"), _rows(expected / "durations.csv")
        assert ray_rows == local_rows, f"seed {seed}: episodes differ between the Ray and the local backend"
        assert any(row["mean_loss"] != "nan" for row in local_rows), "no optimisation step: a weak comparison"
        ray_eval, local_eval = (json.loads((d / "evaluation.json").read_text()) for d in (got, expected))
        assert _without(ray_eval, "wall_s") == _without(local_eval, "wall_s")
        ray_config, local_config = (json.loads((d / "config.json").read_text()) for d in (got, expected))
        assert _without(ray_config, "out") == _without(local_config, "out")
        assert ray_config["out"] == str(got)
        weights = [torch.load(d / "checkpoint.pt", weights_only=True)["policy"] for d in (expected, got)]
        assert_same_state(weights[0], weights[1], f"seed {seed}: final policy, local vs Ray")

    def figures(directory: Path) -> dict:
        summary = json.loads((directory / "summary.json").read_text())
        summary["seeds"] = [_without(s, "wall_s", "steps_per_s") for s in summary["seeds"]]
        return summary

    assert figures(ray_dir) == figures(local_dir)
