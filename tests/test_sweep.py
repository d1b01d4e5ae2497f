"""`dqnbench sweep`: the summary statistics, the folder layout the reports read, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dqnbench.cli import main
from dqnbench.evaluate import evaluate
from dqnbench.sweep_summary import (
    bootstrap_ci,
    interquartile_mean,
    read_durations,
    steps_to_threshold,
    summarise,
)
from dqnbench.train import CSV_HEADER


def write_run(folder: Path, durations: list[int], seconds_per_step: float = 0.01) -> None:
    """A durations.csv as `dqnbench train` writes it."""
    folder.mkdir(parents=True)
    rows, total = [CSV_HEADER], 0
    for episode, duration in enumerate(durations):
        total += duration
        rows.append(f"{episode},{duration},{total},0.05,0.1,{total * seconds_per_step:.3f}\n")
    (folder / "durations.csv").write_text("".join(rows))


def test_steps_to_threshold_is_the_step_count_when_the_100_episode_mean_first_reaches_it():
    # 100 episodes of 10 steps, then episodes of 300: after k of them the window mean is (300k + 10(100-k))/100,
    # which first reaches 195 at k = 64 (194.6 at k = 63). Steps by then: 100*10 + 64*300.
    durations = [10] * 100 + [300] * 100
    steps = list(_cumsum(durations))
    assert steps_to_threshold(durations, steps, threshold=195.0) == 100 * 10 + 64 * 300


def test_steps_to_threshold_is_none_before_a_full_window_or_when_never_reached():
    assert steps_to_threshold([500] * 99, list(_cumsum([500] * 99))) is None
    assert steps_to_threshold([194] * 300, list(_cumsum([194] * 300))) is None
    assert steps_to_threshold([195] * 100, list(_cumsum([195] * 100))) == 19_500


def _cumsum(values: list[int]) -> list[int]:
    total, out = 0, []
    for value in values:
        total += value
        out.append(total)
    return out


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([7.0], 7.0, id="one_value"),
        pytest.param([0.0, 10.0, 100.0], (0 + 4 * 10 + 100) / 6, id="three_seeds_weighted"),
        pytest.param([100.0, 1.0, 2.0, -50.0], 1.5, id="four_keeps_the_middle_two"),
        pytest.param([8.0, 1.0, 7.0, 2.0, 6.0, 3.0, 5.0, 4.0], 4.5, id="eight_keeps_3_to_6"),
    ],
)
def test_interquartile_mean_averages_the_middle_half_of_the_mass(values, expected):
    assert interquartile_mean(values) == pytest.approx(expected, abs=1e-12)


def test_interquartile_mean_and_bootstrap_reject_no_values():
    with pytest.raises(ValueError, match=r"interquartile_mean\(values=\[\]\)"):
        interquartile_mean([])
    with pytest.raises(ValueError, match=r"bootstrap_ci\(values=\[\]\)"):
        bootstrap_ci([])


def test_bootstrap_ci_is_reproducible_brackets_the_iqm_and_collapses_without_spread():
    values = [20.0, 35.0, 180.0, 210.0, 500.0]
    low, high = bootstrap_ci(values)
    assert (low, high) == bootstrap_ci(values), "same values and seed must give the same interval"
    assert min(values) <= low < interquartile_mean(values) < high <= max(values), (low, high)
    assert bootstrap_ci([42.0, 42.0, 42.0]) == (42.0, 42.0)


def test_summarise_reads_every_seed_folder(tmp_path):
    write_run(tmp_path / "seed0", [10] * 100 + [300] * 100)
    write_run(tmp_path / "seed1", [20] * 150)
    write_run(tmp_path / "seed2", [30] * 40)
    (tmp_path / "notes").mkdir()  # not a seed folder: ignored
    summary = summarise(tmp_path)
    seeds = {s["seed"]: s for s in summary["seeds"]}
    assert sorted(seeds) == [0, 1, 2]
    assert seeds[0]["final_mean"] == 300.0
    assert seeds[0]["steps_to_threshold"] == 20_200
    assert seeds[1]["steps_to_threshold"] is None
    assert seeds[2]["full_window"] is False and seeds[2]["final_mean"] == 30.0
    assert seeds[1]["steps_per_s"] == pytest.approx(100.0, rel=1e-3)
    assert summary["reached"] == 1
    assert summary["iqm_final_mean"] == pytest.approx((20 + 4 * 30 + 300) / 6)
    low, high = summary["iqm_ci"]
    assert 20.0 <= low <= high <= 300.0


def test_read_durations_names_the_missing_columns(tmp_path):
    path = tmp_path / "durations.csv"
    path.write_text("episode,length\n0,12\n")
    with pytest.raises(ValueError, match=r"columns \['duration', 'total_steps', 'wall_s'\] missing"):
        read_durations(path)


def test_sweep_summary_prints_writes_once_and_refuses_to_overwrite(tmp_path, capsys):
    write_run(tmp_path / "seed3", [25] * 120)
    assert main(["sweep-summary", str(tmp_path)]) == 0
    assert "IQM of final means across 1 seeds: 25.0" in capsys.readouterr().out
    assert not (tmp_path / "summary.json").exists(), "without --write nothing is written"
    assert main(["sweep-summary", str(tmp_path), "--write"]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["seeds"][0]["seed"] == 3
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")
    assert main(["sweep-summary", str(tmp_path), "--write"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_sweep_summary_of_a_folder_without_seeds_says_how_to_make_one(tmp_path, capsys):
    assert main(["sweep-summary", str(tmp_path)]) == 2
    assert "no seed<N> folders" in capsys.readouterr().err


TINY = ["--episodes", "1", "--batch-size", "4", "--learning-starts", "4", "--device", "cpu", "--eval-episodes", "3"]


def test_sweep_trains_each_seed_into_its_folder_and_summarises(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--seeds", "4", "7", "--jobs", "1", *TINY, "--out", str(out)]) == 0
    for seed in (4, 7):
        config = json.loads((out / f"seed{seed}" / "config.json").read_text())
        assert (config["seed"], config["episodes"]) == (seed, 1)
        assert len(read_durations(out / f"seed{seed}" / "durations.csv")[0]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert [s["seed"] for s in summary["seeds"]] == [4, 7]
    assert summary["interrupted"] is False and summary["failed"] == []
    for seed_summary in summary["seeds"]:
        run = out / f"seed{seed_summary['seed']}"
        again = evaluate(run, episodes=3, eps=0.0)  # the final policy, played again independently
        recorded = json.loads((run / "evaluation.json").read_text())
        assert recorded["durations"] == again.durations, f"{run}: evaluation.json is not the final policy's play"
        assert recorded["end_x"] == [round(x, 3) for x in again.end_positions], f"{run}: end_x"
        assert seed_summary["final_eval_mean"] == pytest.approx(again.mean_duration)
        assert seed_summary["eval_episodes"] == 3
    evals = [s["final_eval_mean"] for s in summary["seeds"]]
    assert summary["evaluated"] == 2
    assert summary["iqm_final_eval_mean"] == pytest.approx(interquartile_mean(evals))
    assert "seed" not in summary["config"] and summary["config"]["batch_size"] == 4
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")
    assert "IQM of final means across 2 seeds" in capsys.readouterr().out


@pytest.mark.slow
def test_sweep_in_parallel_processes_gives_the_same_runs_as_one_at_a_time(tmp_path):
    """Two spawned workers; each seed's durations must equal those of the same seed trained in this process."""
    seeds = ["--seeds", "1", "2", "--threads", "1", *TINY]
    assert main(["sweep", *seeds, "--jobs", "2", "--out", str(tmp_path / "p")]) == 0
    assert main(["sweep", *seeds, "--jobs", "1", "--out", str(tmp_path / "s")]) == 0
    for seed in (1, 2):
        parallel = read_durations(tmp_path / "p" / f"seed{seed}" / "durations.csv")[0]
        serial = read_durations(tmp_path / "s" / f"seed{seed}" / "durations.csv")[0]
        assert parallel == serial, f"seed {seed}: durations {parallel} in a worker, {serial} in-process"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--seed", "3"], "--seed is not an option here", id="seed_instead_of_seeds"),
        pytest.param(["--seeds", "1", "1"], "each seed may appear once", id="duplicate_seed"),
        pytest.param(["--jobs", "0"], "--jobs must be >= 1, got 0", id="no_jobs"),
        pytest.param(["--threads", "0"], "--threads must be >= 1, got 0", id="no_threads"),
    ],
)
def test_sweep_rejects_bad_options_before_training(tmp_path, capsys, args, message):
    out = tmp_path / "sweep"
    assert main(["sweep", *args, *TINY, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists(), "nothing may be written when the options are rejected"


def test_sweep_never_overwrites_an_earlier_sweep(tmp_path, capsys):
    write_run(tmp_path / "seed0", [12, 13])
    before = (tmp_path / "seed0" / "durations.csv").read_text()
    assert main(["sweep", "--seeds", "0", *TINY, "--out", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "seed0" / "durations.csv").read_text() == before


def test_a_seed_that_has_not_finished_an_episode_counts_as_none_run(tmp_path):
    write_run(tmp_path / "seed0", [30] * 120)
    (tmp_path / "seed1").mkdir()  # started, stopped before its first episode ended
    summary = summarise(tmp_path)
    seeds = {s["seed"]: s for s in summary["seeds"]}
    assert seeds[1]["episodes"] == 0 and seeds[1]["steps_to_threshold"] is None
    assert summary["iqm_final_mean"] == 30.0, "the IQM is over the seeds with episodes"
    assert main(["sweep-summary", str(tmp_path), "--write"]) == 0
    written = json.loads((tmp_path / "summary.json").read_text(), parse_constant=pytest.fail)
    assert written["seeds"][1]["final_mean"] is None, "NaN must be written as null (strict JSON)"


@pytest.mark.slow
def test_a_seed_that_fails_in_its_worker_is_named_with_its_exit_code(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--seeds", "5", "6", "--jobs", "2", "--threads", "1", *TINY, "--env-id", "NoSuchEnv-v0"]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 of 2 seeds failed (seed 5: exit code 1; seed 6: exit code 1)" in err, err


def test_ctrl_c_stops_the_sweep_keeps_what_ran_and_summarises_it(tmp_path, monkeypatch, capsys):
    import dqnbench.train

    started = []

    def interrupted_train(config, *, progress=True):
        # What `train` does on Ctrl-C: the finished episodes are on disk, and it returns interrupted.
        started.append(config.seed)
        write_run(config.out, [20, 30])
        return dqnbench.train.TrainResult(durations=[20, 30], interrupted=True, out=config.out)

    monkeypatch.setattr(dqnbench.train, "train", interrupted_train)
    out = tmp_path / "sweep"
    assert main(["sweep", "--seeds", "0", "1", "--jobs", "1", *TINY, "--out", str(out)]) == 130
    assert started == [0], "no further seed may start after an interrupt"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and [s["seed"] for s in summary["seeds"]] == [0]
    assert "interrupted: the figures are those of the episodes finished" in capsys.readouterr().out
