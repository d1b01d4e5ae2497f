"""Reports: inputs read defensively, statistics, prose that follows the data, files never overwritten, and the
HTML page checked in a real headless Chromium."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dqnbench.bench.compare import FEW_ROUNDS, Thresholds
from dqnbench.cli import main
from dqnbench.report import ReportInputError, build_report, load_inputs
from dqnbench.report.analysis import history, median_ratio, natural_key, thresholds
from dqnbench.report.results import Numbering, build_sections, device_section, learning_section

# ---- inputs --------------------------------------------------------------------------------------------------

TINY_BENCHMARK = textwrap.dedent(
    """
    import pytest

    @pytest.mark.parametrize("device", ["cpu"])
    @pytest.mark.parametrize("impl", ["reference", "fast"])
    def test_sum_range(benchmark, device, impl):
        benchmark.extra_info.update(device=device, implementation=impl, batch_size=128)
        benchmark(sum, range(2000 if impl == "reference" else 200))
    """
)


@pytest.fixture(scope="session")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A genuine pytest-benchmark JSON (raw data saved), written by a tiny benchmark run in a subprocess."""
    folder = tmp_path_factory.mktemp("tiny_benchmark")
    (folder / "test_tiny.py").write_text(TINY_BENCHMARK)
    out = folder / "run.json"
    # Only pytest-benchmark is loaded: other installed plugins (this project's, hypothesis...) cost seconds.
    options = "-q -p no:cacheprovider -p pytest_benchmark.plugin -o addopts= --benchmark-save-data"
    options += " --benchmark-max-time=0.02 --benchmark-min-rounds=30"
    subprocess.run(
        [sys.executable, "-m", "pytest", *options.split(), "test_tiny.py", f"--benchmark-json={out}"],
        cwd=folder,
        check=True,
        capture_output=True,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    document: dict[str, Any] = json.loads(out.read_text())
    return document


def with_cuda(document: dict[str, Any], factor: float) -> dict[str, Any]:
    """A fake GPU machine's run, for tests only: the real CPU benchmarks plus CUDA copies of them with every time
    divided by `factor`."""
    fake = copy.deepcopy(document)
    cuda = copy.deepcopy(document["benchmarks"])
    fake["benchmarks"] += cuda
    for benchmark in cuda:
        benchmark["params"]["device"] = benchmark["extra_info"]["device"] = "cuda"
        benchmark["name"] = benchmark["name"].replace("cpu", "cuda")
        for key in ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "ld15iqr", "hd15iqr"):
            benchmark["stats"][key] /= factor
        benchmark["stats"]["data"] = [t / factor for t in benchmark["stats"]["data"]]
    fake["machine_info"].setdefault("dqnbench", {})["gpus"] = ["Fake GPU for tests"]
    return fake


Entry = tuple[str, str, str, np.ndarray]  # (operation, device, implementation, timings in seconds)


def timings(median: float, rel_spread: float = 0.05, n: int = 200, seed: int = 0) -> np.ndarray:
    return median * (1 + rel_spread * np.random.default_rng(seed).standard_normal(n))


def bench_document(
    entries: Sequence[Entry],
    *,
    when: str = "2026-11-20T10:00:00+00:00",
    commit: str = "a" * 40,
    version: str = "5.1.0",
    keep_data: bool = True,
    node: str = "lab-1",
    quick: bool = False,
) -> dict[str, Any]:
    """A pytest-benchmark document with the given raw timings, its statistics computed as pytest-benchmark does."""
    benchmarks = []
    for operation, device, impl, data in entries:
        q1, median, q3 = np.percentile(data, [25, 50, 75])
        stats: dict[str, Any] = {
            "min": float(data.min()),
            "max": float(data.max()),
            "mean": float(data.mean()),
            "stddev": float(data.std(ddof=1)) if len(data) > 1 else 0.0,
            "median": float(median),
            "q1": float(q1),
            "q3": float(q3),
            "iqr": float(q3 - q1),
            "rounds": len(data),
            "iterations": 1,
            "ops": float(1 / data.mean()),
        }
        if keep_data:
            stats["data"] = data.tolist()
        benchmarks.append(
            {
                "group": None,
                "name": f"test_{operation}[{impl}-{device}]",
                "fullname": f"benchmarks/test_x.py::test_{operation}[{impl}-{device}]",
                "params": {"impl": impl, "device": device},
                "param": f"{impl}-{device}",
                "extra_info": {"device": device, "implementation": impl},
                "options": {},
                "stats": stats,
            }
        )
    return {
        "machine_info": {
            "node": node,
            "cpu": {"brand_raw": "Test CPU"},
            "dqnbench": {"mode": "quick" if quick else "full"},
        },
        "commit_info": {"id": commit, "dirty": False},
        "benchmarks": benchmarks,
        "datetime": when,
        "version": version,
    }


def write_json(folder: Path, name: str, document: object) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def conformance_document(
    implementation: str, failed: Sequence[str] = (), skipped: Sequence[str] = ()
) -> dict[str, Any]:
    checks = ["bellman_targets", "target_sync", "replay_eviction", "epsilon_schedule", "conv_sizes"]
    results = [
        {
            "check": c,
            "outcome": "failed" if c in failed else "skipped" if c in skipped else "passed",
            "message": f"{c}: expected 1.0, got 0.5 at index 3 (tolerance 1e-6)" if c in failed else "",
            "duration_s": 0.01,
        }
        for c in checks
    ]
    return {
        "schema": "dqnbench.conformance/1",
        "implementation": implementation,
        "created": "2026-11-20T10:00:00Z",
        "torch": "2.14.1",
        "results": results,
    }


def write_sweep(
    folder: Path, name: str, level: float, seeds: int = 3, episodes: int = 150, spread: float = 5.0
) -> Path:
    """Training CSVs (`<sweep>/seed<N>/durations.csv`) whose durations climb towards `level`."""
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        ramp = np.minimum(1.0, np.arange(episodes) / (episodes / 2))
        durations = np.maximum(8, np.round(20 + (level - 20) * ramp + rng.normal(0, spread, episodes))).astype(int)
        frame = pd.DataFrame(
            {
                "episode": np.arange(1, episodes + 1),
                "duration": durations,
                "total_steps": np.cumsum(durations),
                "epsilon": 0.05,
                "mean_loss": 0.1,
                "wall_s": np.arange(episodes) * 0.5,
            }
        )
        (folder / name / f"seed{seed}").mkdir(parents=True)
        frame.to_csv(folder / name / f"seed{seed}" / "durations.csv", index=False)
    return folder / name


def results_text(paths: Sequence[Path]) -> str:
    # The gate's built-in default threshold, whatever benchmarks/thresholds.toml says today.
    sections = build_sections(load_inputs(paths), limits=Thresholds())
    return "\n".join(p for s in sections for p in s.paragraphs)


# ---- reading -------------------------------------------------------------------------------------------------


def test_real_pytest_benchmark_json_is_read_with_devices_implementations_and_raw_data(
    real_run: dict[str, Any], tmp_path: Path
) -> None:
    inputs = load_inputs([write_json(tmp_path, "run.json", real_run)])
    table = inputs.benchmarks.sort_values("impl")
    assert list(table["impl"]) == ["fast", "reference"]
    assert set(table["device"]) == {"cpu"}
    assert set(table["operation"]) == {"sum_range"}
    assert all(len(d) >= 30 for d in table["data"])
    assert (table["q1"] <= table["median"]).all() and (table["median"] <= table["q3"]).all()


def test_missing_optional_keys_are_tolerated(tmp_path: Path) -> None:
    document = bench_document([("op", "cpu", "reference", timings(1e-3))])
    del document["machine_info"], document["commit_info"], document["version"]
    benchmark = document["benchmarks"][0]
    for key in ("params", "extra_info", "group", "fullname", "param", "options"):
        del benchmark[key]
    for key in ("iqr", "mean", "stddev", "data"):
        del benchmark["stats"][key]
    row = load_inputs([write_json(tmp_path, "bare.json", document)]).benchmarks.iloc[0]
    assert (row["device"], row["impl"], row["commit"]) == ("cpu", "reference", "unknown")
    assert re.fullmatch(r"unknown-[0-9a-f]{8}", row["machine"]), row["machine"]
    assert row["data"] is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("", "the file is empty", id="empty"),
        pytest.param('{"benchmarks": [{"stats": {"median": 1', "not valid JSON .* probably truncated", id="truncated"),
        pytest.param('{"episodes": 10}', "not a pytest-benchmark JSON", id="not_benchmark"),
        pytest.param("[1, 2, 3]", "not a pytest-benchmark JSON", id="json_list"),
        pytest.param(
            '{"benchmarks": [{"name": "x", "stats": {"median": "fast"}}], "version": "5.1.0"}',
            r"benchmark #0 \(x\) has no numeric median, q1, q3, rounds",
            id="stats_without_numbers",
        ),
        pytest.param('{"benchmarks": [], "version": "latest"}', "'version' field is 'latest'", id="bad_version"),
        pytest.param(
            '{"schema": "dqnbench.conformance/2", "results": []}',
            "conformance schema 'dqnbench.conformance/2', but this report reads 'dqnbench.conformance/1'",
            id="newer_conformance_schema",
        ),
        pytest.param(
            '{"schema": "dqnbench.conformance/1", "results": [{"check": "x", "outcome": "ok"}]}',
            r"results\[0\] needs a 'check' name and an 'outcome'",
            id="bad_conformance_outcome",
        ),
    ],
)
def test_bad_file_gives_an_error_naming_it(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "results" / "run.json"
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(ReportInputError, match=expected) as caught:
        load_inputs([path])
    assert str(path) in str(caught.value)


def test_broken_file_inside_a_folder_is_still_an_error_but_foreign_json_is_ignored(tmp_path: Path) -> None:
    write_json(tmp_path, "run.json", bench_document([("op", "cpu", "reference", timings(1e-3))]))
    config = write_json(tmp_path, "train/config.json", {"batch_size": 128})
    inputs = load_inputs([tmp_path, tmp_path / "run.json"])
    assert inputs.ignored == (config,)
    assert len(inputs.benchmarks) == 1, "a file reached twice must be read once"
    assert str(config) in results_text([tmp_path])
    (tmp_path / "half.json").write_text('{"benchmarks": [')
    with pytest.raises(ReportInputError, match=re.escape(str(tmp_path / "half.json"))):
        load_inputs([tmp_path])


def test_mixed_pytest_benchmark_versions_are_refused_naming_both_files(tmp_path: Path) -> None:
    entries = [("op", "cpu", "reference", timings(1e-3))]
    old = write_json(tmp_path, "old.json", bench_document(entries, version="4.0.0"))
    new = write_json(tmp_path, "new.json", bench_document(entries, version="5.1.0"))
    with pytest.raises(ReportInputError, match="mixed versions") as caught:
        load_inputs([old, new])
    assert str(old) in str(caught.value) and str(new) in str(caught.value)


def test_missing_path_and_bad_training_csv_are_named(tmp_path: Path) -> None:
    with pytest.raises(ReportInputError, match="no such file or folder"):
        load_inputs([tmp_path / "nowhere.json"])
    csv = tmp_path / "seed0" / "durations.csv"
    csv.parent.mkdir()
    csv.write_text("step,reward\n1,1\n")
    with pytest.raises(ReportInputError, match=f"{re.escape(str(csv))}: training CSV lacks column.*episode, duration"):
        load_inputs([csv])


def test_benchmark_suite_layout_subject_parameter_names_the_implementation(tmp_path: Path) -> None:
    """benchmarks/ parametrizes `subject` (the implementation) and `batch_size`, and records a machine id."""
    document = bench_document([("forward", "cpu", "fast", timings(1e-3))])
    benchmark = document["benchmarks"][0]
    benchmark["params"] = {"subject": "fast", "device": "cpu", "batch_size": 128}
    benchmark["extra_info"] = {"impl": "fast", "device": "cpu"}
    document["machine_info"]["dqnbench"]["machine_id"] = "ci-runner"
    row = load_inputs([write_json(tmp_path, "suite.json", document)]).benchmarks.iloc[0]
    assert (row["impl"], row["operation"], row["machine"]) == ("fast", "forward[batch_size=128]", "ci-runner")


# ---- statistics ----------------------------------------------------------------------------------------------


def _row(document: dict[str, Any], tmp_path: Path, name: str) -> pd.Series:
    return load_inputs([write_json(tmp_path, name, document)]).benchmarks.iloc[0]


@pytest.mark.parametrize("keep_data", [True, False], ids=["raw", "iqr"])
def test_median_ratio_interval_covers_the_true_ratio_and_names_its_method(tmp_path: Path, keep_data: bool) -> None:
    slow = _row(
        bench_document([("op", "cpu", "reference", timings(20e-3, seed=1))], keep_data=keep_data), tmp_path, "a"
    )
    quick = _row(
        bench_document([("op", "cpu", "reference", timings(1e-3, seed=2))], keep_data=keep_data), tmp_path, "b"
    )
    ratio = median_ratio(slow, quick)
    assert ratio.method == ("raw" if keep_data else "iqr")
    assert ratio.low < 20 < ratio.high, f"95% CI {ratio.low:.3f}–{ratio.high:.3f} should contain the true ratio 20"
    assert ratio.high - ratio.low < 2, f"CI width {ratio.high - ratio.low:.3f} is too wide for 200 rounds at 5% spread"
    assert not ratio.within_noise
    same = median_ratio(slow, _row(bench_document([("op", "cpu", "x", timings(20e-3, seed=3))]), tmp_path, "c"))
    assert same.within_noise, f"same distribution judged different: {same}"


def test_operations_are_ordered_by_batch_size_value_not_text() -> None:
    names = ["forward[batch_size=128]", "optimize", "forward[batch_size=1]", "forward[batch_size=32]"]
    assert sorted(names, key=natural_key) == [
        "forward[batch_size=1]",
        "forward[batch_size=32]",
        "forward[batch_size=128]",
        "optimize",
    ]


def test_history_marks_a_run_beyond_the_previous_iqr_as_regression(tmp_path: Path) -> None:
    runs = [
        bench_document(
            [("op", "cpu", "reference", timings(m, seed=i))], when=f"2026-11-2{i}T10:00:00+00:00", commit=str(i) * 40
        )
        for i, m in enumerate([1e-3, 1.01e-3, 1.5e-3, 1.0e-3])
    ]
    trend = history(load_inputs([write_json(tmp_path, f"{i}.json", r) for i, r in enumerate(runs)]).benchmarks)
    assert list(trend["change"]) == ["", "", "regression", "improvement"]


def test_history_uses_the_gate_threshold_not_just_disjoint_iqrs(tmp_path: Path) -> None:
    runs = [
        bench_document(
            [("op", "cpu", "reference", timings(m, rel_spread=0.002, seed=i))], when=f"2026-11-2{i}T10:00:00+00:00"
        )
        for i, m in enumerate([1e-3, 1.05e-3, 1.5e-3])
    ]
    bench = load_inputs([write_json(tmp_path, f"{i}.json", r) for i, r in enumerate(runs)]).benchmarks
    assert list(history(bench)["change"]) == ["", "", "regression"], "5% is below the default 10% threshold"
    lenient = tmp_path / "thresholds.toml"
    lenient.write_text('default = 0.10\n[benchmarks]\n"test_op*" = 0.60\n')
    assert list(history(bench, thresholds(lenient))["change"]) == ["", "", ""], "a 43% rise is allowed at 60%"
    strict = tmp_path / "strict.toml"
    strict.write_text("default = 0.02\n")
    assert list(history(bench, thresholds(strict))["change"]) == ["", "regression", "regression"]


def test_quick_runs_never_count_as_differences_and_stay_out_of_history(tmp_path: Path) -> None:
    entries = [("op", "cpu", "reference", timings(30e-3, n=1)), ("op", "cuda", "reference", timings(1e-3, n=1))]
    path = write_json(tmp_path, "quick.json", bench_document(entries, quick=True, keep_data=False))
    text = results_text([path])
    assert "cannot be told apart from the CPU timing beyond the measurement noise" in text
    assert f"fewer than {FEW_ROUNDS} rounds" in text
    assert "1 run was a `--quick` smoke run" in text
    assert history(load_inputs([path]).benchmarks).empty


# ---- prose follows the data ----------------------------------------------------------------------------------


def _cpu_cuda_text(tmp_path: Path, cuda_median: float, keep_data: bool = True) -> str:
    cpu = bench_document([("optimize_step", "cpu", "reference", timings(30e-3, seed=1))], keep_data=keep_data)
    cuda = bench_document(
        [("optimize_step", "cuda", "reference", timings(cuda_median, seed=2))],
        keep_data=keep_data,
        when="2026-11-20T11:00:00+00:00",
    )
    paths = [write_json(tmp_path, "cpu.json", cpu), write_json(tmp_path, "cuda.json", cuda)]
    return "\n".join(device_section(load_inputs(paths).benchmarks, Numbering()).paragraphs)


def test_cpu_cuda_prose_states_speed_up_with_interval(tmp_path: Path) -> None:
    text = _cpu_cuda_text(tmp_path, 30e-3 / 23.4)
    match = re.search(
        r"the CUDA optimize step is ([\d.]+) times faster \(95% CI ([\d.]+)–([\d.]+)\) than on the CPU", text
    )
    assert match, text
    value, low, high = map(float, match.groups())
    assert abs(value - 23.4) < 1.0 and low < 23.4 < high
    assert "from the raw per-round timings" in text
    assert "CUDA was faster beyond noise in 1 of 1" in text


def test_cpu_cuda_prose_changes_with_the_data(tmp_path: Path) -> None:
    faster = _cpu_cuda_text(tmp_path / "a", 1e-3)
    equal = _cpu_cuda_text(tmp_path / "b", 30e-3)
    slower = _cpu_cuda_text(tmp_path / "c", 90e-3, keep_data=False)
    assert "times faster" in faster and "within noise" not in faster
    assert "cannot be told apart from the CPU timing beyond the measurement noise" in equal
    assert "times faster" not in equal
    assert "interquartile ranges overlap" in equal
    assert re.search(r"is 3\.\d+ times slower \(95% CI", slower), slower
    assert "raw timings were not saved" in slower and "optimistic" in slower


def test_cpu_cuda_prose_names_both_extremes(tmp_path: Path) -> None:
    entries = [
        ("optimize_step", "cpu", "reference", timings(30e-3, seed=1)),
        ("optimize_step", "cuda", "reference", timings(1.5e-3, seed=2)),
        ("replay_sample", "cpu", "reference", timings(1e-3, seed=3)),
        ("replay_sample", "cuda", "reference", timings(2e-3, seed=4)),
    ]
    text = results_text([write_json(tmp_path, "gpu.json", bench_document(entries))])
    assert re.search(r"As Figure 1 shows, the CUDA optimize step is (19|20|21)\.\d times faster", text), text
    assert re.search(r"At the other end, the CUDA replay sample is (1\.9\d|2\.0\d) times slower", text), text
    assert "faster beyond noise in 1 of 2 comparisons" in text and "slower in 1 (replay sample)" in text


def test_cuda_run_without_a_cpu_counterpart_is_stated(tmp_path: Path) -> None:
    path = write_json(tmp_path, "gpu.json", bench_document([("op", "cuda", "reference", timings(1e-4))]))
    assert "CUDA measurements were supplied, but none matches a CPU measurement" in results_text([path])


def test_missing_cuda_run_is_stated_not_fatal(tmp_path: Path) -> None:
    path = write_json(tmp_path, "cpu.json", bench_document([("op", "cpu", "reference", timings(1e-3))]))
    text = results_text([path])
    assert "No CUDA run was among the inputs" in text
    assert re.search(r"all measurements came from the CPU of lab-1-[0-9a-f]{8}\)", text), text


def test_implementation_prose_counts_faster_slower_and_noise(tmp_path: Path) -> None:
    entries = [
        ("forward", "cpu", "reference", timings(8e-3, seed=1)),
        ("forward", "cpu", "fast", timings(2e-3, seed=2)),
        ("sample", "cpu", "reference", timings(1e-3, seed=3)),
        ("sample", "cpu", "fast", timings(1e-3, seed=4)),
        ("push", "cpu", "reference", timings(1e-5, seed=5)),
        ("push", "cpu", "fast", timings(3e-5, seed=6)),
        ("forward", "cpu", "mine", timings(8e-3, seed=7)),
        ("push", "cpu", "mine", timings(5e-5, seed=8)),
    ]
    text = results_text([write_json(tmp_path, "run.json", bench_document(entries))])
    assert "Table 1 sets the fast and mine implementations side by side with the reference implementation on 3" in text
    assert "fast was faster beyond noise in 1 of 3 comparisons (by a factor of 4" in text
    assert "slower in 1 (push)" in text and "within noise in 1 (sample)" in text
    assert re.search(r"The largest difference is in forward, where fast is 4\.\d+ times faster", text)
    assert "Compared with the reference, mine was slower in 1 (push) and within noise in 1 (forward)." in text
    assert re.search(r"The largest difference is in push, where mine is [45]\.\d+ times slower", text), text


def _with_passes(document: dict[str, Any], medians: dict[str, list[float]]) -> dict[str, Any]:
    """`document` as a run timed in passes: each benchmark's `pass_medians_s`, by operation name."""
    for bench in document["benchmarks"]:
        bench["extra_info"]["pass_medians_s"] = medians[bench["name"].split("[")[0].removeprefix("test_")]
    return document


def test_passes_show_how_the_machines_speed_moved_within_the_newest_run(tmp_path: Path) -> None:
    entries = [("push", "cpu", "reference", timings(2e-5, seed=1)), ("sample", "cpu", "fast", timings(1e-3, seed=2))]
    # Both slower in pass 2: the machine; the sample alone far slower in pass 3.
    older = _with_passes(bench_document(entries), {"push": [1e-5, 9e-5], "sample": [1e-3, 9e-3]})
    newest = _with_passes(
        bench_document(entries, when="2026-11-21T10:00:00+00:00", commit="b" * 40),
        {"push": [2e-5, 2.4e-5, 2e-5], "sample": [1e-3, 1.2e-3, 1.5e-3]},
    )
    paths = [write_json(tmp_path, "older.json", older), write_json(tmp_path, "newest.json", newest)]
    sections = {s.title: s for s in build_sections(load_inputs(paths), limits=Thresholds())}
    text = " ".join(sections["Passes within a run"].paragraphs)
    push, sample = (float(np.median(timings(m, seed=seed))) for m, seed in ((2e-5, 1), (1e-3, 2)))
    assert "2026-11-21 10:00 UTC, commit bbbbbbb) went over its 2 benchmarks 3 times" in text, text
    # The median over the two benchmarks per pass; its lowest and highest pass.
    common = [np.median([2e-5 / push, 1e-3 / sample]), np.median([2.4e-5 / push, 1.2e-3 / sample])]
    assert f"the median pass ran from {common[0] - 1:+.1%} (pass 1) to" in text, text
    assert f"the largest single deviation was {1.5e-3 / sample - 1:+.1%}, sample (fast, cpu) in pass 3" in text, text
    table = sections["Passes within a run"].tables[0]
    assert [row[:2] for row in table.rows] == [["sample", "fast"], ["push", "reference"]]  # widest spread first
    assert table.rows[0][4] == f"{1.5 / 1.0 - 1:.1%}"
    assert len(sections["Passes within a run"].figures) == 1


def test_a_report_without_runs_in_passes_says_so_and_quick_runs_do_not_count(tmp_path: Path) -> None:
    entries = [("push", "cpu", "reference", timings(2e-5))]
    quick = _with_passes(bench_document(entries, quick=True), {"push": [2e-5, 4e-5]})
    paths = [write_json(tmp_path, "plain.json", bench_document(entries)), write_json(tmp_path, "quick.json", quick)]
    assert "No run among the inputs was timed in passes (`pytest benchmarks --passes=N`" in results_text(paths)


def test_implementation_table_shows_each_first_call_apart_from_the_steady_state(tmp_path: Path) -> None:
    document = bench_document([
        ("optimize", "cpu", "reference", timings(36e-3, seed=1)),
        ("optimize", "cpu", "fast-compiled", timings(30e-3, seed=2)),
        ("forward", "cpu", "reference", timings(8e-3, seed=3)),
        ("forward", "cpu", "fast-compiled", timings(7e-3, seed=4)),
    ])  # fmt: skip
    first_calls = {
        ("optimize", "reference"): 67.0,
        ("optimize", "fast-compiled"): 11040.0,
        ("forward", "reference"): 20.0,
    }
    for benchmark in document["benchmarks"]:
        key = (benchmark["name"].split("[")[0].removeprefix("test_"), benchmark["params"]["impl"])
        if key in first_calls:
            benchmark["extra_info"]["first_call_ms"] = first_calls[key]
    sections = build_sections(load_inputs([write_json(tmp_path, "run.json", document)]), limits=Thresholds())
    table = next(t for s in sections for t in s.tables if "First call" in t.header)
    rows = {row[0]: row[-1] for row in table.rows}
    assert rows == {"forward": "20.0 ms / not recorded", "optimize": "67.0 ms / 11.0 s"}, rows


def test_history_prose_reports_regression_only_when_present(tmp_path: Path) -> None:
    def text_for(medians: list[float], folder: str, rel_spread: float = 0.05) -> str:
        paths = [
            write_json(
                tmp_path / folder,
                f"{i}.json",
                bench_document(
                    [("op", "cpu", "reference", timings(m, rel_spread=rel_spread, seed=i))],
                    when=f"2026-11-2{i}T10:00:00+00:00",
                    commit=f"{i}" * 40,
                ),
            )
            for i, m in enumerate(medians)
        ]
        return results_text(paths)

    steady = text_for([1e-3, 1.005e-3, 0.998e-3], "steady")
    slowed = text_for([1e-3, 1.005e-3, 1.6e-3], "slowed")
    noisy = text_for([1e-3, 1.6e-3], "noisy", rel_spread=0.8)
    assert "no run was slower than its predecessor beyond the measured spread" in steady
    assert re.search(
        r"the largest rise between consecutive runs, \+0\.\d% in op · cpu · reference, stays below its 10% "
        r"threshold",
        steady,
    ), steady
    assert re.search(
        r"largest rise between consecutive runs, \+[4-7]\d\.\d% in op · cpu · reference, is within the "
        r"measured spread \(the interquartile ranges overlap\)",
        noisy,
    ), noisy
    assert (
        "median exceeds that of the run before it on the same machine by more than the threshold (10% by default)"
        in steady
    )
    assert re.search(
        r"1 regression occurred \(op · cpu · reference\); the largest, .* commit 2222222222, raised the "
        r"median by \+5\d\.\d%",
        slowed,
    ), slowed


def test_learning_prose_separates_a_real_difference_from_seed_noise(tmp_path: Path) -> None:
    def text_for(levels: dict[str, float], spread: float) -> str:
        folder = tmp_path / f"{'-'.join(map(str, levels.values()))}-{spread}"
        for name, level in levels.items():
            write_sweep(folder, name, level, spread=spread)
        training = load_inputs([folder]).training
        return "\n".join(learning_section(training, Numbering(), 195.0, 100).paragraphs)

    clear = text_for({"seed_config": 30, "tuned": 240}, spread=5)
    close = text_for({"seed_config": 100, "tuned": 101}, spread=30)
    assert "`tuned` ends higher than `seed_config`" in clear and "do not overlap" in clear
    assert "3 of 3 reached the 195-step threshold" in clear and "0 of 3 reached" in clear
    assert "within seed-to-seed variation" in close
    assert "different numbers of episodes" not in clear


def test_single_seed_states_that_no_interval_is_possible(tmp_path: Path) -> None:
    write_sweep(tmp_path, "solo", 50, seeds=1)
    assert "a single seed, so no interval can be given" in results_text([tmp_path])


def test_short_and_uneven_seeds_are_stated(tmp_path: Path) -> None:
    write_sweep(tmp_path / "a", "uneven", 50, seeds=1, episodes=60)
    write_sweep(tmp_path / "b", "uneven", 50, seeds=1, episodes=80)
    (tmp_path / "b" / "uneven" / "seed0").rename(tmp_path / "a" / "uneven" / "seed1")
    text = results_text([tmp_path / "a"])
    assert "after 60 episodes" in text and "its seeds ran 60 to 80 episodes, so the curves are cut" in text
    assert "with fewer than 100 episodes the mean is over all episodes run" in text
    write_sweep(tmp_path / "a", "longer", 50, seeds=2, episodes=120)
    assert "The two ran for different numbers of episodes (120 and 60)" in results_text([tmp_path / "a"])


def test_conformance_prose_names_failures(tmp_path: Path) -> None:
    paths = [
        write_json(tmp_path, "ref.json", conformance_document("reference")),
        write_json(tmp_path, "sb3.json", conformance_document("sb3", failed=["target_sync"], skipped=["conv_sizes"])),
    ]
    text = results_text(paths)
    assert "`reference` passed all 5 checks it ran." in text
    assert "`sb3` passed 3 of 4 checks and failed 1 (target_sync), skipping 1 check" in text


def test_the_newest_conformance_result_wins_whatever_the_file_names(tmp_path: Path) -> None:
    fixed = conformance_document("mine")
    # The newest run left target_sync out (a -k subset): its old failure must not be carried over.
    fixed = {**fixed, "created": "2026-11-26T16:00:00+01:00", "results": fixed["results"][:1] + fixed["results"][2:]}
    broken = {**conformance_document("mine", failed=["target_sync"]), "created": "2026-11-26T05:00:00Z"}
    # The older result sorts last by name, and the times use different offsets: `created` is read as a time.
    paths = [write_json(tmp_path, "a-new.json", fixed), write_json(tmp_path, "z-old.json", broken)]
    text = results_text(paths)
    assert "`mine` passed all 4 checks it ran." in text and "target_sync" not in text, text


# ---- the report folder ---------------------------------------------------------------------------------------


@pytest.fixture
def full_inputs(real_run: dict[str, Any], tmp_path: Path) -> list[Path]:
    """Every kind of input: a real CPU run, a faked CUDA copy, a two-run history, conformance, two sweeps."""
    results = tmp_path / "results"
    cuda = with_cuda(real_run, factor=12.0)
    cuda["datetime"] = "2099-01-01T00:00:00+00:00"
    later = copy.deepcopy(real_run)
    later["datetime"] = "2099-01-02T00:00:00+00:00"
    write_json(results, "history/1.json", real_run)
    write_json(results, "history/2.json", later)
    write_json(results, "cuda.json", cuda)
    write_json(results, "conformance/reference.json", conformance_document("reference"))
    write_json(results, "conformance/mine.json", conformance_document("mine", failed=["bellman_targets"]))
    write_sweep(results / "learning", "seed_config", 40)
    write_sweep(results / "learning", "tuned", 190)
    return [results]


def test_report_folder_has_every_figure_as_png_and_svg_and_a_self_contained_page(
    full_inputs: list[Path], tmp_path: Path
) -> None:
    folder = build_report(full_inputs, out_root=tmp_path / "reports", name="full")
    stems = {"cpu_vs_cuda", "implementations", "history", "learning_curves", "conformance"}
    assert {p.name for p in folder.iterdir()} == {"index.html", "report.md"} | {
        f"{s}.{ext}" for s in stems for ext in ("png", "svg")
    }
    page = (folder / "index.html").read_text()
    sources = re.findall(r'<img src="([^"]{0,30})', page)
    assert len(sources) == len(stems) and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "the page must open offline"
    markdown = (folder / "report.md").read_text()
    for number in range(1, 6):
        assert f"*Figure {number}.*" in markdown
    assert "Table 1 compares the median time per call on the CPU and on CUDA" in markdown
    assert not list((tmp_path / "reports").glob(".*")), "no staging folder may be left behind"


def test_existing_report_is_never_overwritten(tmp_path: Path) -> None:
    run = write_json(tmp_path, "run.json", bench_document([("op", "cpu", "reference", timings(1e-3))]))
    folder = build_report([run], out_root=tmp_path / "reports", name="mine")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(FileExistsError, match=f"{re.escape(str(folder))} already exists.*choose another --name"):
        build_report([run], out_root=tmp_path / "reports", name="mine")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_bad_input_writes_no_report(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("")
    with pytest.raises(ReportInputError):
        build_report([bad], out_root=tmp_path / "reports", name="x")
    assert not (tmp_path / "reports" / "x").exists()


def test_cli_writes_a_report_and_reports_bad_input_by_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_json(tmp_path, "run.json", bench_document([("op", "cpu", "reference", timings(1e-3))]))
    assert main(["report", str(run), "--out", str(tmp_path / "reports"), "--name", "cli"]) == 0
    assert (tmp_path / "reports" / "cli" / "index.html").is_file()
    assert "reports/cli/index.html" in capsys.readouterr().out
    assert main(["report", str(run), "--out", str(tmp_path / "reports"), "--name", "cli"]) == 2
    assert "already exists" in capsys.readouterr().err
    truncated = tmp_path / "cut.json"
    truncated.write_text('{"benchmarks": [')
    assert main(["report", str(truncated), "--out", str(tmp_path / "reports"), "--name", "cut"]) == 2
    assert f"dqnbench report: error: {truncated}: not valid JSON" in capsys.readouterr().err


def test_cli_without_runs_reports_everything_stored_under_the_out_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    assert main(["report", "--out", str(reports), "--name", "empty"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    for day in (20, 21):
        document = bench_document([("op", "cpu", "x", timings(1e-3))], when=f"2026-11-{day}T10:00:00+00:00")
        write_json(reports, f"history/lab-1/202611{day}T100000Z-aaaaaaaa.json", document)
    write_sweep(reports / "learning", "tuned", 100)
    write_json(reports, "learning/tuned/summary.json", {"iqm_final_mean": 100})
    lenient = tmp_path / "thresholds.toml"
    lenient.write_text('default = 0.5\n[benchmarks]\n"test_op*" = 0.7\n')
    argv = ["report", "--out", str(reports), "--name", "all", "--solved-at", "90", "--thresholds", str(lenient)]
    assert main(argv) == 0
    markdown = (reports / "all" / "report.md").read_text()
    assert "3 of 3 reached the 90-step threshold" in markdown
    assert "## Results\n\n### CPU and CUDA" in markdown and "### Learning curves" in markdown
    assert "threshold (50% by default, 70% for `test_op*`)" in markdown
    assert "1 JSON file found in the folders given was neither benchmark nor conformance results" in markdown


def test_same_inputs_give_the_same_report(tmp_path: Path) -> None:
    run = write_json(
        tmp_path,
        "run.json",
        bench_document([("op", "cpu", "reference", timings(1e-3)), ("op", "cuda", "reference", timings(1e-4))]),
    )
    first = build_report([run], out_root=tmp_path / "one", name="same")
    second = build_report([run], out_root=tmp_path / "two", name="same")
    for name in ("report.md", "index.html", "cpu_vs_cuda.svg", "cpu_vs_cuda.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), f"{name} differs between identical runs"


# ---- the page in a real browser ------------------------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
# Injected into a copy of the page: records console errors and failed loads from the first moment, and after
# `load` writes every image's natural size into the DOM that --dump-dom prints.
PROBE = """<script>
window.__errors = [];
const __error = console.error;
console.error = (...args) => { window.__errors.push(args.join(' ')); __error(...args); };
window.addEventListener('error',
  e => window.__errors.push('error: ' + (e.message || (e.target && e.target.src))), true);
window.addEventListener('load', () => {
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({
    images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
    errors: window.__errors, title: document.title, figures: document.querySelectorAll('figure').length});
  document.body.appendChild(out);
});
</script>"""


def chromium_or_skip() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        reason = "Chromium is not installed (apt-get install chromium); the HTML report cannot be checked in a browser"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}, and CI=true: .ci/run must install it")
        pytest.skip(reason)
    return found


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_chromium_skips_locally_but_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="Chromium is not installed"):
        chromium_or_skip()


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def console_errors(stderr: str) -> list[str]:
    """Chromium logs page console messages as `...:CONSOLE(line)] "text", source: ...`; keep error-level ones."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line and ":ERROR:" in line]


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(full_inputs: list[Path], tmp_path: Path) -> None:
    binary = chromium_or_skip()
    folder = build_report(full_inputs, out_root=tmp_path / "reports", name="browser")
    page = (folder / "index.html").read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + PROBE, 1))

    dom = run_chromium(binary, tmp_path / "profile-dom", "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    assert dom.returncode == 0, f"chromium --dump-dom exited {dom.returncode}: {dom.stderr[-2000:]}"
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"the page's load event never fired; DOM tail: {dom.stdout[-1000:]!r}"
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["title"] == "dqnbench report: browser"
    assert len(probe["images"]) == probe["figures"] == 5, probe
    blank = [
        i for i, (complete, width, height) in enumerate(probe["images"]) if not (complete and width > 0 and height > 0)
    ]
    assert not blank, f"images {blank} did not render (complete, naturalWidth, naturalHeight): {probe['images']}"
    assert probe["errors"] == [] and console_errors(dom.stderr) == [], (probe["errors"], console_errors(dom.stderr))

    screenshot = tmp_path / "report-screenshot.png"
    shot = run_chromium(
        binary,
        tmp_path / "profile-shot",
        "--window-size=1280,2400",
        f"--screenshot={screenshot}",
        (folder / "index.html").as_uri(),
    )
    assert shot.returncode == 0 and screenshot.is_file(), f"no screenshot: {shot.stderr[-2000:]}"
    assert console_errors(shot.stderr) == []
    # A blank page compresses to a few kB; a page of figures and tables does not.
    assert screenshot.stat().st_size > 50_000, f"screenshot {screenshot} is only {screenshot.stat().st_size} bytes"
    print(f"screenshot of the report: {screenshot}")
