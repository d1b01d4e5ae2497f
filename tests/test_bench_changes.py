"""History verdicts (`dqnbench.bench.changes`, `dqnbench bench compare`) on synthetic histories: a true step, a
single outlier, slow drift, a machine change, same-commit repeats, and a host that slows everything at once."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dqnbench.bench import changes, compare, history
from dqnbench.bench.changes import RunPoint

BENCHMARKS = ("alpha", "beta", "gamma", "delta", "epsilon")
FACTS = {"release": "6.1", "dqnbench.torch": "2.14.1", "dqnbench.torch_threads": 1}
THRESHOLD = 0.10


def _history(
    levels: dict[str, list[float]],
    *,
    commits: list[str] | None = None,
    host: list[float] | None = None,
    facts: list[dict[str, Any]] | None = None,
    noise: float = 0.02,
    seed: int = 0,
) -> list[RunPoint]:
    """Runs with each benchmark at `levels[name][i]` (1.0 elsewhere) times the run's `host` factor, with noise."""
    count = len(next(iter(levels.values())))
    rng = np.random.default_rng(seed)
    runs = []
    for index in range(count):
        scale = (host or [1.0] * count)[index]
        medians = {
            name: 1e-3 * levels.get(name, [1.0] * count)[index] * scale * float(np.exp(rng.normal(0, noise)))
            for name in BENCHMARKS
        }
        commit = (commits or [f"c{i:02d}" for i in range(count)])[index]
        runs.append(RunPoint(f"run{index:02d}", commit, {**FACTS, **(facts or [{}] * count)[index]}, medians))
    return runs


def _steps(runs: list[RunPoint]) -> tuple[list[changes.Step], list[changes.Break]]:
    return changes.steps(runs, lambda name: THRESHOLD)


def test_a_true_step_is_found_and_attributed_to_its_commit_range() -> None:
    runs = _history({"beta": [1.0] * 6 + [1.25] * 5})
    found, breaks = _steps(runs)
    assert breaks == []
    assert [(s.benchmark, s.last_before, s.first_after) for s in found] == [("beta", "c05", "c06")], found
    assert found[0].slower and found[0].ratio == pytest.approx(1.25, rel=0.05)
    assert "c05..c06" in found[0].describe()


def test_a_single_outlier_is_not_a_step() -> None:
    for where in (0, 5, 10):  # first, middle, newest run
        level = [1.0] * 11
        level[where] = 1.6
        found, _ = _steps(_history({"gamma": level}))
        assert found == [], f"an outlier in run {where} was called a step: {found}"


def test_slow_drift_is_not_pinned_on_a_commit() -> None:
    drift = [1.0 + 0.03 * i for i in range(12)]  # +36 % over the history, 3 % per commit
    found, _ = _steps(_history({"delta": drift}, noise=0.005))
    assert found == [], f"a 3 %-per-commit drift was pinned on one commit range: {found}"


def test_a_machine_change_is_a_break_not_a_regression() -> None:
    kernel = [{"release": "6.1"}] * 5 + [{"release": "6.2"}] * 5
    # The new kernel runs everything but alpha as before and alpha 40 % slower: a break, whatever the timings.
    runs = _history({"alpha": [1.0] * 5 + [1.4] * 5}, facts=kernel)
    found, breaks = _steps(runs)
    assert found == [], found
    assert len(breaks) == 1 and breaks[0].differences == ("release: '6.1' -> '6.2'",)
    assert (breaks[0].before, breaks[0].after) == ("run04", "run05")


def test_same_commit_repeats_are_pooled_and_never_a_step() -> None:
    # Ten runs of one commit with a 30 % swing half-way (the host): no step can fall inside one commit.
    runs = _history({"epsilon": [1.0] * 5 + [1.3] * 5}, commits=["same"] * 10)
    assert _steps(runs)[0] == []
    # Repeats of two commits: the step lies between them, counted over every run of each.
    runs = _history({"epsilon": [1.0] * 5 + [1.3] * 5}, commits=["old"] * 5 + ["new"] * 5)
    assert _steps(runs)[0] == [], "one point per commit: two commits are too few points for a lasting step"
    runs = _history(
        {"epsilon": [1.0] * 6 + [1.3] * 6}, commits=["a", "a", "b", "b", "c", "c", "d", "d", "e", "e", "f", "f"]
    )
    found, _ = _steps(runs)
    assert [(s.last_before, s.first_after, s.runs_before, s.runs_after) for s in found] == [("c", "d", 6, 6)]


def test_a_host_that_slows_every_benchmark_is_divided_out() -> None:
    host = [1.0] * 5 + [1.3] * 5  # the whole machine 30 % slower from run 5 on
    found, _ = _steps(_history({"beta": [1.0] * 10}, host=host))
    assert found == [], found
    # ...while a benchmark that moves on its own still stands out against the host.
    found, _ = _steps(_history({"beta": [1.0] * 5 + [1.5] * 5}, host=host))
    assert [(s.benchmark, s.first_after) for s in found] == [("beta", "c05")]
    assert found[0].ratio == pytest.approx(1.5, rel=0.05)


def test_change_points_direct() -> None:
    assert changes.change_points([1.0, 1.0, 1.0, 1.2, 1.2, 1.2], 0.10) == [3]
    assert changes.change_points([1.0, 1.0, 1.2, 1.0, 1.0], 0.10) == []
    assert changes.change_points([1.0, 1.2], 0.10) == [], "one point per side is never a lasting level"


def _run_json(path: Path, commit: str, medians: dict[str, float], *, release: str, day: int) -> Path:
    when = datetime(2026, 11, 1) + timedelta(days=day)
    data = {
        "machine_info": {"node": "host", "release": release, "dqnbench": {"machine_id": "m1", "torch": "2.14.1"}},
        "commit_info": {"id": commit * 5, "dirty": False},
        "datetime": when.isoformat(),
        "version": "5.2.3",
        "benchmarks": [
            {"fullname": name, "name": name, "group": None,
             "stats": {"median": m, "q1": 0.99 * m, "q3": 1.01 * m, "iqr": 0.02 * m, "rounds": 50}}
            for name, m in medians.items()
        ],
    }  # fmt: skip
    path.write_text(json.dumps(data))
    return path


def _compare(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    status = compare.main(["--dir", str(tmp_path / "h"), "--machine", "m1", "--thresholds",
                           str(tmp_path / "none.toml"), *extra])  # fmt: skip
    return status, capsys.readouterr().out


def _store(tmp_path: Path, *files: Path) -> None:
    assert history.store_files(files, tmp_path / "h") == 0


FAST = dict.fromkeys(BENCHMARKS, 1e-3)
SLOW = {**FAST, "alpha": 1.5e-3}


def test_compare_never_calls_a_same_commit_pair_a_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "none.toml").write_text("default = 0.10\n")
    _store(tmp_path, _run_json(tmp_path / "a.json", "abcdef12", FAST, release="6.1", day=0),
           _run_json(tmp_path / "b.json", "abcdef12", SLOW, release="6.1", day=1))  # fmt: skip
    status, out = _compare(tmp_path, capsys)
    assert status == 0, out
    assert "same commit" in out and "REGRESSION" not in out


def test_compare_calls_a_machine_change_a_break(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "none.toml").write_text("default = 0.10\n")
    _store(tmp_path, _run_json(tmp_path / "a.json", "abcdef12", FAST, release="6.1", day=0),
           _run_json(tmp_path / "b.json", "12345678", SLOW, release="6.2", day=1))  # fmt: skip
    status, out = _compare(tmp_path, capsys)
    assert status == 0, out
    assert "break: the machine changed between the runs (release: '6.1' -> '6.2')" in out


def test_compare_judges_with_the_host_factor_divided_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "none.toml").write_text("default = 0.10\n")
    everything_slower = {name: 1.3e-3 for name in BENCHMARKS}  # the host, not the code
    _store(tmp_path, _run_json(tmp_path / "a.json", "abcdef12", FAST, release="6.1", day=0),
           _run_json(tmp_path / "b.json", "12345678", everything_slower, release="6.1", day=1))  # fmt: skip
    status, out = _compare(tmp_path, capsys)
    assert status == 0, f"a uniform +30% (the host) was called a regression:\n{out}"
    _store(tmp_path, _run_json(tmp_path / "c.json", "9abcdef0", {**everything_slower, "alpha": 2e-3}, release="6.1",
                               day=2))  # fmt: skip
    status, out = _compare(tmp_path, capsys)
    assert status == 1, out
    assert "REGRESSION: 1 benchmark(s)" in out and "alpha" in out.split("REGRESSION")[1]


def test_compare_history_reports_a_lasting_step_with_its_commits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "none.toml").write_text("default = 0.10\n")
    files = [
        _run_json(tmp_path / f"r{day}.json", f"{day:08x}", SLOW if day >= 4 else FAST, release="6.1", day=day)
        for day in range(8)
    ]
    _store(tmp_path, *files)
    status, out = _compare(tmp_path, capsys, "--history")
    assert status == 1, out
    assert "REGRESSION: alpha: slower by 50.0% (host factor divided out) in 00000003..00000004" in out


def test_compact_turns_full_runs_into_summaries_keeping_every_statistic(tmp_path: Path) -> None:
    store = tmp_path / "history" / "m1"
    store.mkdir(parents=True)
    full = json.loads(_run_json(tmp_path / "a.json", "abcdef12", FAST, release="6.1", day=0).read_text())
    for bench in full["benchmarks"]:
        bench["stats"]["data"] = [bench["stats"]["median"]] * 50
    run = store / "20261101T000000.000000Z-abcdef12.json.gz"
    run.write_bytes(gzip.compress(json.dumps(full).encode()))

    assert history.compact(tmp_path / "history") == [run]
    summary = json.loads(gzip.decompress(run.read_bytes()))
    assert summary == history.summary(full)
    assert all("data" not in b["stats"] and b["stats"]["median"] > 0 for b in summary["benchmarks"])
    raw = tmp_path / "history-raw" / "m1" / run.name
    assert json.loads(gzip.decompress(raw.read_bytes())) == full, "the raw rounds must survive, beside the store"
    assert history.compact(tmp_path / "history") == [], "a summary is not compacted again"
