"""The regression gate end to end, on real pytest-benchmark runs of a tiny benchmark made in subprocesses.

The tiny "implementation" waits 2 ms (a sleep: its time barely depends on how busy the machine is); the
slowed one waits 2 ms more. The gate must flag the slowed run against the baseline and pass an unchanged
rerun, and every bad input must be refused with the file named.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from dqnbench.bench import compare, history
from dqnbench.bench.compare import Thresholds, Verdict, judge, load_thresholds
from dqnbench.bench.history import BenchFileError, load_run
from dqnbench.report.load import ReportInputError, load_inputs

TINY_BENCHMARK = """
import os
import time

EXTRA_S = float(os.environ["TINY_EXTRA_MS"]) / 1e3


def test_work(benchmark):
    benchmark(lambda: time.sleep(0.002 + EXTRA_S))


def test_untouched(benchmark):
    benchmark(lambda: time.sleep(0.001))
"""


def _start_run(folder: Path, out: Path, extra_ms: float) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "pytest", str(folder / "test_tiny.py"), "-q", "-c", str(folder / "pytest.ini"),
        "-p", "no:cacheprovider", "-p", "no:dqnbench", f"--benchmark-json={out}",
        "--benchmark-min-rounds=25", "--benchmark-max-time=0.1",
    ]  # fmt: skip
    env = {**os.environ, "TINY_EXTRA_MS": str(extra_ms)}
    return subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(process: subprocess.Popen[bytes]) -> None:
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, f"tiny benchmark run failed (exit {process.returncode}):\n{output.decode()}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the tiny benchmark and a pytest.ini of its own (not this repository's settings)."""
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "test_tiny.py").write_text(TINY_BENCHMARK)
    (folder / "pytest.ini").write_text("[pytest]\n")
    return folder


@pytest.fixture(scope="module")
def runs(tiny: Path) -> dict[str, Path]:
    """Real pytest-benchmark JSON: `baseline`, then `unchanged` and `slowed` (+2 ms) made after it."""
    folder = tiny
    paths = {name: folder / f"{name}.json" for name in ("baseline", "unchanged", "slowed")}
    _finish(_start_run(folder, paths["baseline"], 0.0))
    # Both later runs sleep rather than compute, so running them side by side does not skew them.
    later = [_start_run(folder, paths["unchanged"], 0.0), _start_run(folder, paths["slowed"], 2.0)]
    for process in later:
        _finish(process)
    return paths


def _cli(
    module: str, *args: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"dqnbench.bench.{module}", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=120, env=None if env is None else {**os.environ, **env},
    )  # fmt: skip


def _gate(tmp_path: Path, baseline: Path, current: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Store both runs (baseline first) in a fresh history and compare the newest with the previous one."""
    store_dir = tmp_path / "history"
    stored = _cli("history", "store", baseline, current, "--dir", store_dir, cwd=tmp_path)
    assert stored.returncode == 0, stored.stderr
    return _cli("compare", "--dir", store_dir, *extra, cwd=tmp_path)


def _row(output: str, test: str) -> str:
    rows = [line for line in output.splitlines() if line.startswith(f"test_tiny.py::{test} ")]
    assert len(rows) == 1, f"expected one table row for {test}, got {rows} in:\n{output}"
    return rows[0]


def test_slowed_implementation_is_flagged(runs: dict[str, Path], tmp_path: Path) -> None:
    result = _gate(tmp_path, runs["baseline"], runs["slowed"])
    assert result.returncode == 1, f"the +2 ms run was not flagged (exit {result.returncode}):\n{result.stdout}"
    assert "SLOWER" in _row(result.stdout, "test_work"), result.stdout
    assert "SLOWER" not in _row(result.stdout, "test_untouched"), result.stdout
    assert "REGRESSION: 1 benchmark(s)" in result.stdout


def test_unchanged_implementation_passes(runs: dict[str, Path], tmp_path: Path) -> None:
    result = _gate(tmp_path, runs["baseline"], runs["unchanged"])
    assert result.returncode == 0, f"an unchanged rerun was flagged:\n{result.stdout}{result.stderr}"
    assert "SLOWER" not in result.stdout
    assert "no regression (2 benchmarks compared)" in result.stdout


def test_threshold_override_lets_an_expected_slowdown_pass(runs: dict[str, Path], tmp_path: Path) -> None:
    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text('default = 0.10\n[benchmarks]\n"test_work" = 2.0\n')
    result = _gate(tmp_path, runs["baseline"], runs["slowed"], "--thresholds", str(thresholds))
    assert result.returncode == 0, result.stdout
    assert "200%" in _row(result.stdout, "test_work")


def test_runs_from_different_machines_are_not_compared_silently(runs: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other-machine.json"
    data = json.loads(runs["slowed"].read_text())
    data["machine_info"]["node"] = "another-host"
    other.write_text(json.dumps(data))
    here, there = load_run(runs["baseline"]).machine_id, load_run(other).machine_id
    assert here != there

    refused = _cli("compare", "--current", other, "--baseline", runs["baseline"], cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout
    assert here in refused.stderr and there in refused.stderr, refused.stderr
    assert "--allow-cross-machine" in refused.stderr

    allowed = _cli("compare", "--current", other, "--baseline", runs["baseline"], "--allow-cross-machine", cwd=tmp_path)
    assert allowed.returncode == 1, allowed.stdout + allowed.stderr


def test_store_keeps_every_run_and_never_overwrites(runs: dict[str, Path], tmp_path: Path) -> None:
    store_dir = tmp_path / "history"
    first = history.store(runs["baseline"], store_dir)
    again = history.store(runs["baseline"], store_dir)
    assert first.new
    assert not again.new
    assert again.path == first.path
    original = history.read_result_text(first.path)

    # Same run time and commit, different content: stored beside, never over, the first.
    altered = tmp_path / "altered.json"
    data = json.loads(original)
    data["benchmarks"][0]["stats"]["median"] *= 2
    altered.write_text(json.dumps(data))
    second = history.store(altered, store_dir)
    assert second.new
    assert second.path != first.path
    assert history.read_result_text(first.path) == original
    machine = load_run(runs["baseline"]).machine_id
    assert history.machine_runs(store_dir, machine) == [first.path, second.path]
    assert history.newest_run(store_dir) == second.path


def test_stored_file_is_the_run_itself_with_machine_and_commit(runs: dict[str, Path], tmp_path: Path) -> None:
    stored = history.store(runs["baseline"], tmp_path / "history")
    run = load_run(runs["baseline"])
    # The store keeps the summary (every statistic but the raw rounds); the full run goes to the raw store.
    assert json.loads(gzip.decompress(stored.path.read_bytes())) == history.summary(run.data)
    assert all("data" in bench["stats"] for bench in run.data["benchmarks"]), "the test run must hold raw rounds"
    full = history.raw_path(stored.path.parent, history.run_name(stored.path))
    assert full.parent.parent == tmp_path / "history-raw", full
    assert gzip.decompress(full.read_bytes()) == runs["baseline"].read_bytes()
    assert stored.path.parent.name == run.machine_id
    assert stored.path.name.endswith(f"-{run.commit}.json.gz")
    assert stored.path.name.startswith(f"{run.time:%Y%m%dT%H%M%S}")
    assert stored.path.stat().st_size < runs["baseline"].stat().st_size / 2


def _plain_store(runs: dict[str, Path], store_dir: Path) -> list[Path]:
    """A store as earlier versions wrote it: each run's JSON copied uncompressed under its run name."""
    plain = []
    for name in ("baseline", "unchanged"):
        run = load_run(runs[name])
        target = store_dir / run.machine_id / f"{run.run_name()}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(runs[name].read_bytes())
        plain.append(target)
    return plain


def test_runs_stored_uncompressed_are_read_and_packed_without_loss(runs: dict[str, Path], tmp_path: Path) -> None:
    store_dir = tmp_path / "history"
    plain = _plain_store(runs, store_dir)
    machine = plain[0].parent.name
    assert history.machine_runs(store_dir, machine) == plain
    # A plain run and a gzipped one of a later run sort and compare together.
    newer = history.store(runs["slowed"], store_dir)
    # Chronological by run name (the later two runs were made at the same time, in either order).
    assert history.machine_runs(store_dir, machine) == sorted([*plain, newer.path], key=history.run_name)
    assert history.store(runs["baseline"], store_dir) == history.Stored(plain[0], new=False)
    # The slowed run (gzipped) against the baseline (plain), named by its run name in the store.
    mixed = _cli(
        "compare", "--dir", store_dir, "--current", newer.path, "--baseline", history.run_name(plain[0]), cwd=tmp_path
    )
    assert mixed.returncode == 1 and "test_work" in mixed.stdout, mixed.stdout + mixed.stderr

    packed = _cli("history", "pack", "--dir", store_dir, cwd=tmp_path)
    assert packed.returncode == 0, packed.stderr
    assert packed.stdout.count("packed: ") == 2, packed.stdout
    runs_now = history.machine_runs(store_dir, machine)
    assert sorted(path.name for path in runs_now) == sorted(
        f"{history.run_name(path)}.json.gz" for path in [*plain, newer.path]
    )
    for original, path in zip(("baseline", "unchanged"), plain, strict=True):
        packed_path = path.with_name(f"{history.run_name(path)}.json.gz")
        assert gzip.decompress(packed_path.read_bytes()) == runs[original].read_bytes()
    assert not any(path.exists() for path in plain)
    again = _cli("history", "pack", "--dir", store_dir, cwd=tmp_path)
    assert again.returncode == 0 and "nothing to pack" in again.stdout, again.stdout


@pytest.mark.parametrize("damage", ["truncated", "bit flipped"])
def test_a_damaged_gzipped_run_is_refused_naming_it(runs: dict[str, Path], tmp_path: Path, damage: str) -> None:
    stored = history.store(runs["baseline"], tmp_path / "history")
    content = bytearray(stored.path.read_bytes())
    if damage == "truncated":
        del content[len(content) // 2 :]
    else:
        content[len(content) // 2] ^= 0x10  # inside the deflate stream: zlib, not gzip's framing, notices
    stored.path.write_bytes(bytes(content))
    with pytest.raises(BenchFileError, match="is not sound gzip data") as raised:
        load_run(stored.path)
    assert str(stored.path) in str(raised.value)
    with pytest.raises(ReportInputError, match="is not sound gzip data"):
        load_inputs([tmp_path / "history"])
    compared = _cli("compare", "--current", stored.path, "--baseline", runs["baseline"], cwd=tmp_path)
    assert compared.returncode == 2 and "is not sound gzip data" in compared.stderr, compared.stderr


def test_pack_goes_on_past_a_run_it_cannot_pack_and_refuses_a_missing_store(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    store_dir = tmp_path / "history"
    first, second = _plain_store(runs, store_dir)
    clash = first.with_name(f"{history.run_name(first)}.json.gz")
    clash.write_bytes(gzip.compress(runs["slowed"].read_bytes()))  # another run's data under its name
    result = _cli("history", "pack", "--dir", store_dir, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.count("packed: ") == 1 and str(first) in result.stderr, result.stdout + result.stderr
    assert "1 run(s) packed, 1 left uncompressed" in result.stderr, result.stderr
    assert "both are kept" in result.stderr, result.stderr
    assert first.read_bytes() == runs["baseline"].read_bytes() and not second.exists()
    assert gzip.decompress(clash.read_bytes()) == runs["slowed"].read_bytes()
    missing = _cli("history", "pack", "--dir", tmp_path / "nowhere", cwd=tmp_path)
    assert missing.returncode == 1 and "no such history store" in missing.stderr, missing.stderr


def test_an_interrupted_pack_leaves_one_run_not_two(runs: dict[str, Path], tmp_path: Path) -> None:
    store_dir = tmp_path / "history"
    plain = _plain_store(runs, store_dir)[0]
    twin = plain.with_name(f"{history.run_name(plain)}.json.gz")
    twin.write_bytes(gzip.compress(plain.read_bytes()))  # pack stopped between writing the copy and the unlink
    machine = plain.parent.name
    assert plain not in history.machine_runs(store_dir, machine) and twin in history.machine_runs(store_dir, machine)
    assert len(load_inputs([store_dir]).files) == 2, "a run and its gzipped twin were read as two runs"


def test_the_report_reads_a_gzipped_store(runs: dict[str, Path], tmp_path: Path) -> None:
    history.store(runs["baseline"], tmp_path / "history")
    history.store(runs["slowed"], tmp_path / "history")
    inputs = load_inputs([tmp_path / "history"])
    assert len(inputs.files) == 2 and all(path.name.endswith(".json.gz") for path in inputs.files)
    work = inputs.benchmarks[inputs.benchmarks["name"] == "test_work"].sort_values("datetime")
    assert list(work["median"]) == [
        load_run(runs[name]).benchmarks["test_tiny.py::test_work"]["stats"]["median"] for name in ("baseline", "slowed")
    ]


def _bad_files(tmp_path: Path, good: Path) -> dict[str, tuple[Path, str]]:
    text = good.read_text()
    not_bench = {"machine_info": {}, "results": []}
    no_benchmarks = {**json.loads(text), "benchmarks": []}
    zero_median = json.loads(text)
    zero_median["benchmarks"][0]["stats"]["median"] = 0.0
    cases = {
        "empty": ("", "is empty"),
        "truncated": (text[: len(text) // 2], "is not valid JSON"),
        "not-benchmark": (json.dumps(not_bench), "is not pytest-benchmark JSON"),
        "no-benchmarks": (json.dumps(no_benchmarks), "holds no benchmarks"),
        "zero-median": (json.dumps(zero_median), "not a timing"),
    }
    files = {}
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(content)
        files[name] = (path, message)
    return files


def test_bad_inputs_are_refused_naming_the_file(runs: dict[str, Path], tmp_path: Path) -> None:
    for name, (path, message) in _bad_files(tmp_path, runs["baseline"]).items():
        with pytest.raises(BenchFileError, match=message) as raised:
            load_run(path)
        assert str(path) in str(raised.value), name

        stored = _cli("history", "store", path, "--dir", tmp_path / "history", cwd=tmp_path)
        assert stored.returncode == 1, name
        assert str(path) in stored.stderr and message in stored.stderr, stored.stderr

        compared = _cli("compare", "--current", path, "--baseline", runs["baseline"], cwd=tmp_path)
        assert compared.returncode == 2, name
        assert str(path) in compared.stderr, compared.stderr
    assert not (tmp_path / "history").exists() or not any(path.is_file() for path in (tmp_path / "history").rglob("*"))


def test_missing_file_and_empty_history_are_clear(tmp_path: Path) -> None:
    with pytest.raises(BenchFileError, match="cannot be read"):
        load_run(tmp_path / "absent.json")
    result = _cli("compare", "--dir", tmp_path / "nothing-here", cwd=tmp_path)
    assert result.returncode == 2
    assert "no stored benchmark runs under" in result.stderr


def test_a_single_stored_run_has_no_previous_baseline(runs: dict[str, Path], tmp_path: Path) -> None:
    history.store(runs["baseline"], tmp_path / "history")
    result = _cli("compare", "--dir", tmp_path / "history", cwd=tmp_path)
    assert result.returncode == 2
    assert "older than" in result.stderr and "--baseline FILE" in result.stderr


def test_quick_runs_are_not_stored_or_compared(runs: dict[str, Path], tmp_path: Path) -> None:
    quick = tmp_path / "quick.json"
    data = json.loads(runs["baseline"].read_text())
    data["machine_info"]["dqnbench"] = {"mode": "quick"}
    quick.write_text(json.dumps(data))
    with pytest.raises(BenchFileError, match="--quick run"):
        history.store(quick, tmp_path / "history")
    result = _cli("compare", "--current", quick, "--baseline", runs["baseline"], "--allow-cross-machine", cwd=tmp_path)
    assert result.returncode == 2
    assert "--quick run" in result.stderr


def _stats(median: float, q1: float, q3: float, rounds: int = 50) -> dict[str, float]:
    return {"median": median, "q1": q1, "q3": q3, "iqr": q3 - q1, "rounds": rounds}


@pytest.mark.parametrize(
    ("current", "verdict"),
    [
        (_stats(1.30, 1.25, 1.35), Verdict.SLOWER),  # +30%, IQRs apart
        (_stats(1.30, 1.00, 1.60), Verdict.NOISE),  # +30%, but the spread covers the baseline
        (_stats(1.05, 1.04, 1.06), Verdict.SAME),  # apart, yet within the 10% threshold
        (_stats(0.70, 0.68, 0.72), Verdict.FASTER),
        (_stats(0.70, 0.50, 1.20), Verdict.NOISE),
    ],
)
def test_judge_needs_both_threshold_and_separated_spreads(current: dict[str, float], verdict: Verdict) -> None:
    assert judge(_stats(1.0, 0.98, 1.02), current, 0.10)[0] is verdict


def test_thresholds_file_first_matching_pattern_wins(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('default = 0.2\n[benchmarks]\n"screen-*" = 0.3\n"*render*" = 0.9\n')
    thresholds = load_thresholds(path)
    assert thresholds == Thresholds(0.2, (("screen-*", 0.3), ("*render*", 0.9)))
    assert thresholds.for_benchmark({"group": "screen-render", "name": "test_screen_render[cpu-reference]"}) == 0.3
    assert thresholds.for_benchmark({"group": "train-step", "name": "test_train_step[cpu-reference]"}) == 0.2


@pytest.mark.parametrize(
    ("content", "message"),
    [("default = -1\n", "between 0 and 10"), ("defualt = 0.1\n", "unknown keys"), ("default = ", "not valid TOML")],
)
def test_bad_thresholds_file_is_refused_naming_it(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "thresholds.toml"
    path.write_text(content)
    with pytest.raises(BenchFileError, match=message) as raised:
        load_thresholds(path)
    assert str(path) in str(raised.value)


def _variant(run: Path, path: Path, *, node: str | None = None, rename: bool = False) -> Path:
    """A copy of `run` made a day later, optionally from another host or with every benchmark renamed."""
    data = json.loads(run.read_text())
    data["datetime"] = (datetime.fromisoformat(data["datetime"]) + timedelta(days=1)).isoformat()
    if node is not None:
        data["machine_info"]["node"] = node
    for bench in data["benchmarks"] if rename else ():
        bench["fullname"] += "-renamed"
        bench["name"] += "-renamed"
    path.write_text(json.dumps(data))
    return path


def test_compare_takes_the_newest_run_of_this_machine_by_default(runs: dict[str, Path], tmp_path: Path) -> None:
    store_dir = tmp_path / "history"
    elsewhere = _variant(runs["slowed"], tmp_path / "elsewhere.json", node="a-gpu-machine")
    stored = _cli("history", "store", runs["baseline"], runs["unchanged"], elsewhere, "--dir", store_dir, cwd=tmp_path)
    assert stored.returncode == 0, stored.stderr
    here = load_run(runs["baseline"]).machine_id
    result = _cli("compare", "--dir", store_dir, cwd=tmp_path, env={"DQNBENCH_MACHINE_ID": here})
    current = next(line for line in result.stdout.splitlines() if line.startswith("current:"))
    assert f"/{here}/" in current, f"compared {current!r}, not this machine's ({here}) newest run:\n{result.stdout}"
    assert result.returncode == 0, result.stdout + result.stderr

    unknown = _cli("compare", "--dir", store_dir, cwd=tmp_path, env={"DQNBENCH_MACHINE_ID": "never-stored"})
    assert "note: no stored run of this machine (never-stored)" in unknown.stdout, unknown.stdout


def test_runs_without_a_common_benchmark_are_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    renamed = _variant(runs["unchanged"], tmp_path / "renamed.json", rename=True)
    result = _cli("compare", "--current", renamed, "--baseline", runs["baseline"], cwd=tmp_path)
    assert result.returncode == 2, f"exit {result.returncode}: {result.stdout}"
    assert "have no benchmark in common" in result.stderr and "--baseline" in result.stderr, result.stderr


def test_runs_timed_with_different_timers_are_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    data = json.loads(runs["unchanged"].read_text())
    for bench in data["benchmarks"]:
        bench["options"]["timer"] = "time.process_time"
    cpu_time = tmp_path / "cpu-time.json"
    cpu_time.write_text(json.dumps(data))
    result = _cli("compare", "--current", cpu_time, "--baseline", runs["baseline"], cwd=tmp_path)
    assert result.returncode == 2, f"exit {result.returncode}: {result.stdout}"
    assert "time.process_time" in result.stderr and "--benchmark-timer" in result.stderr, result.stderr


def test_compare_table_lists_new_and_gone_benchmarks(runs: dict[str, Path], tmp_path: Path) -> None:
    data = json.loads(runs["baseline"].read_text())
    renamed = copy.deepcopy(data)
    renamed["benchmarks"][0]["fullname"] += "-renamed"
    path = tmp_path / "renamed.json"
    path.write_text(json.dumps(renamed))
    rows = compare.compare_runs(load_run(runs["baseline"]), load_run(path), Thresholds())
    verdicts = sorted(str(row.verdict) for row in rows)
    assert verdicts == ["gone", "new", "same"]


def _rows_with_ratios(ratios: list[float]) -> list[compare.Row]:
    stats = {"median": 1.0, "q1": 0.99, "q3": 1.01, "iqr": 0.02, "rounds": 50}
    return [
        compare.Row(f"b{i}", Verdict.SAME, stats, {**stats, "median": ratio}, 0.1) for i, ratio in enumerate(ratios)
    ]


@pytest.mark.parametrize(
    ("ratios", "warned"),
    [
        ([0.78, 0.80, 0.79, 0.85, 0.81, 1.02], True),  # 5 of 6 faster, median -19.5 %: the host sped up
        ([1.25, 1.3, 1.22, 1.4], True),  # all slower by 22-40 %
        ([0.78, 1.20, 0.80, 1.25, 0.79, 1.22], False),  # both ways: the code, not the machine
        ([1.05, 1.04, 1.06, 1.03, 1.08], False),  # one way, but within the default threshold
        ([0.5, 0.5, 0.5], False),  # too few benchmarks to tell
    ],
)
def test_compare_warns_when_every_benchmark_moves_together(ratios: list[float], warned: bool) -> None:
    note = compare.machine_shift(_rows_with_ratios(ratios))
    assert (note is not None) == warned, note
    if warned:
        assert f"of {len(ratios)} benchmarks moved the same way" in str(note)


def test_compare_shows_each_change_with_the_host_factor_divided_out() -> None:
    rows = _rows_with_ratios([1.08, 1.08, 1.08, 1.08, 1.35])  # the machine 8 % slower; b4 25 % more on its own
    host = compare.host_factor(row.ratio for row in rows if row.ratio is not None)
    assert host == pytest.approx(1.08)
    lines = compare.format_table(rows, host).splitlines()
    assert "w/o host" in lines[0], lines[0]
    by_name = {line.split()[0]: line for line in lines[2:]}
    assert "+35.0%" in by_name["b4"] and "+25.0%" in by_name["b4"], by_name["b4"]
    assert "+8.0%" in by_name["b0"] and "+0.0%" in by_name["b0"], by_name["b0"]
    # Too few benchmarks to stand for the machine: no factor, and the table has no such column.
    assert compare.host_factor([1.5, 1.5, 1.5]) is None
    assert "w/o host" not in compare.format_table(rows[:3])
