"""Reports: inputs read defensively, intervals that mean reproducibility, history change points,
and prose that follows the data (contrasting inputs, different sentences)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dqnbench.bench.compare import Thresholds
from dqnbench.config import SEED_CONFIG, TUNED_CONFIG
from dqnbench.report import ReportInputError, load_inputs
from dqnbench.report.analysis import bootstrap_interval, comparisons, natural_key, thresholds
from dqnbench.report.learning import role, summary
from dqnbench.report.sections import build_sections
from dqnbench.report.verdicts import history
from report_support import (
    bench_document,
    conformance_document,
    passes,
    results_text,
    write_json,
    write_sweep,
)

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
    """A genuine pytest-benchmark JSON, written by a tiny benchmark run in a subprocess."""
    folder = tmp_path_factory.mktemp("tiny_benchmark")
    (folder / "test_tiny.py").write_text(TINY_BENCHMARK)
    out = folder / "run.json"
    # Only pytest-benchmark is loaded: other installed plugins (this project's, hypothesis...) cost seconds.
    options = "-q -p no:cacheprovider -p pytest_benchmark.plugin -o addopts= --benchmark-max-time=0.02"
    options += " --benchmark-min-rounds=30"
    subprocess.run(
        [sys.executable, "-m", "pytest", *options.split(), "test_tiny.py", f"--benchmark-json={out}"],
        cwd=folder,
        check=True,
        capture_output=True,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    document: dict[str, Any] = json.loads(out.read_text())
    return document


def tuned_config(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(TUNED_CONFIG), default=str))
    return {**config, **changes}


def test_real_pytest_benchmark_json_is_read_with_devices_implementations_and_machine_facts(
    real_run: dict[str, Any], tmp_path: Path
) -> None:
    inputs = load_inputs([write_json(tmp_path, "run.json", real_run)])
    table = inputs.benchmarks.sort_values("impl")
    assert list(table["impl"]) == ["fast", "reference"]
    assert set(table["device"]) == {"cpu"} and set(table["operation"]) == {"sum_range"}
    assert (table["q1"] <= table["median"]).all() and (table["median"] <= table["q3"]).all()
    run = inputs.runs.iloc[0]
    # A plain pytest-benchmark run records the CPU and kernel but none of the suite's facts.
    assert run["cpu_model"] != "not recorded" and run["kernel"] != "not recorded"
    assert (run["torch"], run["gpus"], run["torch_threads"]) == ("not recorded",) * 3


def test_missing_optional_keys_are_tolerated(tmp_path: Path) -> None:
    document = bench_document([("op", "cpu", "reference", [1e-3])])
    del document["machine_info"], document["commit_info"], document["version"]
    benchmark = document["benchmarks"][0]
    for key in ("params", "extra_info", "group", "fullname", "param", "options"):
        del benchmark[key]
    for key in ("iqr", "mean", "stddev"):
        del benchmark["stats"][key]
    inputs = load_inputs([write_json(tmp_path, "bare.json", document)])
    row = inputs.benchmarks.iloc[0]
    assert (row["device"], row["impl"], row["commit"]) == ("cpu", "reference", "unknown")
    assert re.fullmatch(r"unknown-[0-9a-f]{8}", row["machine"]), row["machine"]
    assert set(inputs.runs.iloc[0][["cpu_model", "kernel", "gpus"]]) == {"not recorded"}


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


def test_corrupt_gzip_error_ends_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "history" / "lab" / "20261120T100000Z-aaaaaaaa.json.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(b'{"benchmarks": []}')[:-6])
    with pytest.raises(ReportInputError) as caught:
        load_inputs([tmp_path])
    message = str(caught.value)
    assert message.startswith(str(path)) and "gzip" in message
    assert message.endswith("and run `dqnbench report` again"), message
    assert f"git checkout -- {path}" in message


def test_broken_file_inside_a_folder_is_still_an_error_but_foreign_json_is_ignored(tmp_path: Path) -> None:
    write_json(tmp_path, "run.json", bench_document([("op", "cpu", "reference", [1e-3])]))
    config = write_json(tmp_path, "train/config.json", {"batch_size": 128})
    inputs = load_inputs([tmp_path, tmp_path / "run.json"])
    assert inputs.ignored == (config,)
    assert len(inputs.benchmarks) == 1, "a file reached twice must be read once"
    assert str(config) in results_text([tmp_path])
    (tmp_path / "half.json").write_text('{"benchmarks": [')
    with pytest.raises(ReportInputError, match=re.escape(str(tmp_path / "half.json"))):
        load_inputs([tmp_path])


def test_a_results_root_reads_its_stores_and_names_the_folders_it_left_out(tmp_path: Path) -> None:
    run = bench_document([("op", "cpu", "reference", [1e-3])])
    write_json(tmp_path, "history/lab/1.json", run)
    write_json(tmp_path, "history/lab/ab/verdict.json", bench_document([("op", "cpu", "fast", [1e-3])]))
    write_json(tmp_path, "stability/triple/run-1.json", run)
    write_json(tmp_path, "old-report/data.json", {"x": 1})
    inputs = load_inputs([tmp_path])
    assert inputs.benchmarks["source"].tolist() == [str(tmp_path / "history/lab/1.json")]
    assert [p.name for p in inputs.skipped_folders] == ["old-report", "stability"]
    assert "2 folders beside the stores (old-report and stability) were not read" in results_text([tmp_path])
    assert len(load_inputs([tmp_path / "stability"]).benchmarks) == 1, "a folder named itself is read"


def test_mixed_pytest_benchmark_versions_are_refused_naming_both_files(tmp_path: Path) -> None:
    entries = [("op", "cpu", "reference", [1e-3])]
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
    document = bench_document([("forward", "cpu", "fast", [1e-3])])
    benchmark = document["benchmarks"][0]
    benchmark["params"] = {"subject": "fast", "device": "cpu", "batch_size": 128}
    benchmark["extra_info"] = {"impl": "fast", "device": "cpu"}
    document["machine_info"]["dqnbench"]["machine_id"] = "ci-runner"
    row = load_inputs([write_json(tmp_path, "suite.json", document)]).benchmarks.iloc[0]
    assert (row["impl"], row["operation"], row["machine"]) == ("fast", "forward[batch_size=128]", "ci-runner")


def test_both_conformance_formats_are_read(tmp_path: Path) -> None:
    paths = [
        write_json(tmp_path, "ref.json", conformance_document("reference")),
        write_json(tmp_path, "sb3.json", conformance_document("sb3", failed=["target_sync"], schema=False)),
    ]
    table = load_inputs(paths).conformance
    failed = table[table["outcome"] == "failed"].iloc[0]
    assert (failed["implementation"], failed["check"], bool(failed["by_design"])) == ("sb3", "target_sync", True)
    assert "expected 1.0, got 0.5" in failed["message"], "the newer format's `reason` is the message"
    text = results_text(paths)
    assert "`reference` 5 passed, 0 failed, 0 skipped" in text
    assert "`sb3` 4 passed, 1 failed, 0 skipped (1 of the failures by design)" in text


# ---- statistics ----------------------------------------------------------------------------------------------


def test_no_interval_from_fewer_than_three_values() -> None:
    assert all(np.isnan(bootstrap_interval(np.array(values))).all() for values in ([1.0], [1.0, 2.0]))
    low, high = bootstrap_interval(np.array([1.0, 1.1, 0.9, 1.05]))
    assert 0.9 <= low < high <= 1.1


def _pair_run(tmp_path: Path, name: str, ref: list[float], fast: list[float], **options: Any) -> Path:
    return write_json(
        tmp_path, name, bench_document([("op", "cpu", "reference", ref), ("op", "cpu", "fast", fast)], **options)
    )


def test_speed_up_interval_comes_from_passes_not_rounds(tmp_path: Path) -> None:
    """Same medians and round counts: steady passes give a narrow interval, wandering passes a wide one."""
    steady = _pair_run(tmp_path, "steady.json", passes(2e-3, 0.01, seed=1), passes(1e-3, 0.01, seed=2))
    wander = _pair_run(tmp_path, "wander.json", passes(2e-3, 0.3, seed=1), passes(1e-3, 0.3, seed=2))
    narrow, wide = (comparisons(load_inputs([p]).benchmarks, "impl").iloc[0] for p in (steady, wander))
    assert narrow["values"] == wide["values"] == 10 and narrow["unit"] == "passes"
    assert narrow["low"] < 2.0 < narrow["high"] and narrow["high"] - narrow["low"] < 0.1
    assert wide["high"] - wide["low"] > 5 * (narrow["high"] - narrow["low"])


def test_distinguishable_and_matters_are_separate(tmp_path: Path) -> None:
    def row(name: str, ref: list[float], fast: list[float]) -> dict[str, Any]:
        return dict(comparisons(load_inputs([_pair_run(tmp_path, name, ref, fast)]).benchmarks, "impl").iloc[0])

    # Clearly faster, but by less than the 10% threshold; beyond the threshold, but the passes disagree.
    small_sure = row("small.json", passes(1.05e-3, 0.005, seed=1), passes(1e-3, 0.005, seed=2))
    large_unsure = row("large.json", [x * 1e-3 for x in (1.3, 0.6, 2.0, 0.9, 1.6, 0.7, 1.9)], [1e-3] * 7)
    assert (small_sure["distinguishable"], small_sure["matters"]) == (True, False)
    assert (large_unsure["distinguishable"], large_unsure["matters"]) == (False, True)
    single = _pair_run(tmp_path, "single.json", [2e-3], [1e-3])
    text = results_text([single])
    assert "2.00× (no interval: 1 run)" in text and "op 2.00× (-)" in text


def test_runs_of_the_newest_commit_pool_their_passes_and_older_commits_do_not_count(tmp_path: Path) -> None:
    old = _pair_run(tmp_path, "old.json", [5e-3] * 3, [1e-3] * 3, commit="1" * 40, when="2026-11-19T10:00:00+00:00")
    paths = [old] + [
        _pair_run(
            tmp_path,
            f"new{i}.json",
            passes(2e-3, 0.02, 3, seed=i),
            passes(1e-3, 0.02, 3, seed=9 + i),
            commit="2" * 40,
            when=f"2026-11-20T1{i}:00:00+00:00",
        )
        for i in range(2)
    ]
    row = comparisons(load_inputs(paths).benchmarks, "impl").iloc[0]
    assert (row["values"], row["runs"], row["commit"]) == (6, 2, "2222222222")
    assert 1.9 < row["ratio"] < 2.1


def test_cuda_and_cpu_runs_made_apart_are_compared_without_an_interval(tmp_path: Path) -> None:
    cpu = write_json(tmp_path, "cpu.json", bench_document([("op", "cpu", "reference", [30e-3])], gpus=["H1"]))
    cuda = write_json(
        tmp_path, "cuda.json",
        bench_document([("op", "cuda", "reference", [1e-3])], gpus=["H1"], when="2026-11-20T11:00:00+00:00"),
    )  # fmt: skip
    row = comparisons(load_inputs([cpu, cuda]).benchmarks, "device").iloc[0]
    assert (round(row["ratio"], 6), row["unit"], bool(np.isnan(row["low"]))) == (30.0, "separate runs", True)
    text = results_text([cpu, cuda])
    assert re.search(r"\*\*CUDA vs CPU\*\* \(lab-1-\w+: H1 against Test CPU, 4 cores\)", text), text
    assert "30.0× (-)" in text


def test_operations_are_ordered_by_batch_size_value_not_text() -> None:
    names = ["forward[batch_size=128]", "optimize", "forward[batch_size=1]", "forward[batch_size=32]"]
    assert sorted(names, key=natural_key) == [
        "forward[batch_size=1]",
        "forward[batch_size=32]",
        "forward[batch_size=128]",
        "optimize",
    ]


# ---- history verdicts ----------------------------------------------------------------------------------------


def _history_paths(
    tmp_path: Path, medians: list[float], commits: str, kernels: str = "", threads: str = ""
) -> list[Path]:
    """A machine's runs (at most 10): `op` at `medians`, and two benchmarks that stay put (so that each run's host
    factor, their median ratio to their usual time, is 1 and `op`'s changes stand out)."""
    paths = []
    for i, (m, c) in enumerate(zip(medians, commits, strict=True)):
        entries = [
            ("op", "cpu", "reference", [m]),
            ("op_b", "cpu", "reference", [2e-3]),
            ("op_c", "cpu", "reference", [3e-3]),
        ]
        document = bench_document(
            entries, when=f"2026-11-2{i}T10:00:00+00:00", commit=c * 40, kernel=kernels[i] if kernels else "6.18"
        )
        if threads:
            document["machine_info"]["dqnbench"]["torch_threads"] = int(threads[i])
        paths.append(write_json(tmp_path, f"{i}.json", document))
    return paths


STEP = [1e-3] * 4 + [1.5e-3] * 4
"""A lasting 50% step of `op` between the fourth and fifth of eight runs."""


def test_a_lasting_step_is_a_regression_named_with_its_commit_range(tmp_path: Path) -> None:
    step = results_text(_history_paths(tmp_path / "step", STEP, "12345678"))
    earlier = results_text(_history_paths(tmp_path / "earlier", [1e-3] * 3 + [1.5e-3] * 5, "12345678"))
    faster = results_text(_history_paths(tmp_path / "faster", STEP[::-1], "12345678"))
    flat = results_text(_history_paths(tmp_path / "flat", [1e-3] * 8, "12345678"))
    assert (
        "The history shows 1 lasting step: op (reference, cpu) 50% slower (median after/before ×1.50) in "
        "4444444..5555555, 4 runs before and 4 after." in step
    )
    assert "op (reference, cpu) 50% slower (median after/before ×1.50) in 3333333..4444444, 3 runs before" in earlier
    assert "op (reference, cpu) 33% faster (median after/before ×0.67) in 4444444..5555555" in faster
    assert "The history shows no lasting step beyond the thresholds." in flat
    # The step still sets the newest level, so the summary says so beside the newest run's verdict.
    assert re.search(
        r"\*\*Regressions\*\* \(lab-1-\w+, newest run, commit 8888888\): no regression against 7777777 \(3 "
        r"benchmarks compared\); since the last machine change, the level at this commit follows 1 lasting step: "
        r"op \(reference, cpu\) 50% slower",
        step,
    )
    assert "lasting step:" not in flat


def test_a_single_outlier_run_is_not_a_step(tmp_path: Path) -> None:
    outlier = results_text(_history_paths(tmp_path / "outlier", [1e-3] * 3 + [2e-3] + [1e-3] * 4, "12345678"))
    assert "The history shows no lasting step beyond the thresholds." in outlier
    lasting = results_text(_history_paths(tmp_path / "lasting", [1e-3] * 3 + [2e-3] * 5, "12345678"))
    assert "The history shows 1 lasting step: op (reference, cpu) 100% slower" in lasting


def test_runs_of_one_commit_are_never_a_regression(tmp_path: Path) -> None:
    # The same times: over five commits a step, over two commits (the last five runs all of one) none.
    commits = results_text(_history_paths(tmp_path / "commits", [1e-3] * 3 + [1.5e-3] * 5, "12345678"))
    reruns = results_text(_history_paths(tmp_path / "reruns", [1e-3] * 3 + [1.5e-3] * 5, "12344444"))
    assert "1 lasting step: op (reference, cpu) 50% slower" in commits
    assert "The history shows no lasting step beyond the thresholds." in reruns
    twice = results_text(_history_paths(tmp_path / "twice", [1e-3, 1.5e-3], "11"))
    assert "(lab-1-" in twice and "no earlier commit on this machine to compare with" in twice
    assert "lasting step:" not in twice and "benchmarks slower" not in twice


def test_a_machine_change_is_a_break_not_a_regression(tmp_path: Path) -> None:
    kernel = results_text(_history_paths(tmp_path / "kernel", STEP, "12345678", kernels="xxxxyyyy"))
    threads = results_text(_history_paths(tmp_path / "threads", STEP, "12345678", threads="44448888"))
    for text in (kernel, threads):
        assert "The history shows no lasting step beyond the thresholds. The machine changed once" in text
        assert "1 of 3 benchmarks slower" not in text and "lasting step:" not in text
    assert "kernel: 'x' -> 'y' between commits 4444444 and 5555555; runs on either side" in kernel
    assert "torch_threads: '4' -> '8' between commits 4444444 and 5555555" in threads
    moved = results_text(_history_paths(tmp_path / "moved", [1e-3, 1.0e-3, 2e-3], "123", "xxy"))
    assert "not compared with 2222222: the machine changed (kernel: 'x' -> 'y')" in moved


def test_history_uses_the_gate_threshold(tmp_path: Path) -> None:
    paths = _history_paths(tmp_path, STEP, "12345678")
    lenient = tmp_path / "thresholds.toml"
    lenient.write_text('default = 0.10\n[benchmarks]\n"test_op*" = 0.60\n')

    def text(limits: Thresholds) -> str:
        return "\n".join(p for s in build_sections(load_inputs(paths), limits=limits) for p in s.paragraphs)

    assert "1 lasting step: op (reference, cpu) 50% slower" in text(Thresholds())
    assert "no lasting step beyond the thresholds" in text(thresholds(lenient)), "a 50% step is allowed at 60%"


def test_history_prose_states_the_newest_verdict(tmp_path: Path) -> None:
    clean = results_text(_history_paths(tmp_path / "clean", [1e-3, 1.01e-3, 1.5e-3, 1.5e-3], "1223"))
    slowed = results_text(_history_paths(tmp_path / "slowed", [1e-3, 1.5e-3, 1.5e-3, 2.5e-3], "1123"))
    assert "showed no regression against 2222222 (3 benchmarks compared)" in clean
    assert "showed 1 of 3 benchmarks slower than at 2222222: op (reference, cpu)" in slowed
    assert re.search(r"\*\*Regressions\*\* \(lab-1-\w+, newest run, commit 3333333\): 1 of 3 benchmarks slower", slowed)


def test_quick_runs_stay_out_of_comparisons_and_history(tmp_path: Path) -> None:
    entries = [("op", "cpu", "reference", [30e-3]), ("op", "cpu", "fast", [1e-3])]
    path = write_json(tmp_path, "quick.json", bench_document(entries, quick=True))
    text = results_text([path])
    assert "1 run was a `--quick` smoke run" in text
    assert "were never measured in the same run" in text or "not measured side by side" in text
    inputs = load_inputs([path])
    assert history(inputs.benchmarks).empty


# ---- prose follows the data ----------------------------------------------------------------------------------


def test_implementation_prose_changes_with_the_data(tmp_path: Path) -> None:
    faster = results_text([_pair_run(tmp_path, "f.json", passes(4e-3, seed=1), passes(1e-3, seed=2))])
    equal = results_text([_pair_run(tmp_path, "e.json", passes(1e-3, 0.05, seed=1), passes(1e-3, 0.05, seed=2))])
    slower = results_text([_pair_run(tmp_path, "s.json", passes(1e-3, seed=1), passes(3e-3, seed=2))])
    assert re.search(r"The interval excluded 1 in 1 of them \(1 faster, 0 slower\), and 1 of those lay beyond", faster)
    assert re.search(
        r"\*\*Fast vs reference\*\* \(CPU, lab-1-\w+, commit aaaaaaa\): op 4\.0\d× \(3\.\d+–4\.\d+\)", faster
    )
    assert "The interval excluded 1 in 0 of them" in equal
    assert re.search(r"op 0\.33\d× \(0\.3\d+–0\.3\d+\)", slower), slower
    assert "(0 faster, 1 slower)" in slower


def test_learning_finds_the_current_tuned_configuration_and_ends_each_seed_at_its_own_end(tmp_path: Path) -> None:
    # Seeds of different lengths: the final means are each seed's own last 100 episodes.
    write_sweep(tmp_path, "v5", 240, episodes=[300, 200, 250], config=tuned_config(), evaluations=[500.0, 480.0, None])
    write_sweep(tmp_path, "tuned", 30, config=tuned_config(batch_size=32, learning_rate=2.5e-4))
    write_sweep(tmp_path, "baseline", 35, config=json.loads(json.dumps(dataclasses.asdict(SEED_CONFIG), default=str)))
    inputs = load_inputs([tmp_path])
    table = summary(inputs.training, inputs.sweeps).set_index("sweep")
    assert (table.loc["v5", "role"], table.loc["tuned", "role"]) == ("current", "superseded")
    assert table.loc["v5", "min_final"] > 200, "a seed cut to the shortest seed's length would end lower"
    text = results_text([tmp_path])
    assert re.search(
        r"current tuned configuration \(`v5`, 3 seeds, .*\) reached the 195 threshold on 3 of 3 seeds", text
    )
    assert "The final greedy evaluation averaged 490.0 (mean of 2 seeds)." in text
    assert "greedy evaluation: 490.0 (mean of 2 seeds)" in text
    assert "`tuned` holds a configuration that the code's `tuned` configuration has since replaced" in text
    assert "The seed configuration (`baseline`) ended at an IQM of" in text and "did not overlap" in text


def test_learning_counts_the_seeds_that_never_reached_the_threshold(tmp_path: Path) -> None:
    write_sweep(tmp_path / "a", "v5", 240, seeds=1, config=tuned_config())
    write_sweep(tmp_path / "b", "v5", 60, seeds=2, config=tuned_config())
    for seed in (0, 1):
        (tmp_path / "b" / "v5" / f"seed{seed}").rename(tmp_path / "a" / "v5" / f"seed{seed + 1}")
    text = results_text([tmp_path / "a"])
    assert "reached the 195 threshold on 1 of 3 seeds" in text and "2 did not reach it within its budget" in text
    assert "No final greedy evaluation was recorded." in text and "greedy evaluation: not evaluated" in text


def test_learning_without_a_tuned_run_or_with_one_seed_says_so(tmp_path: Path) -> None:
    write_sweep(tmp_path, "solo", 50, seeds=1)
    text = results_text([tmp_path])
    assert "None of the stored configurations equals the current tuned configuration." in text
    assert role("solo", None) == ("other", "")


def test_conformance_prose_names_failures(tmp_path: Path) -> None:
    paths = [
        write_json(tmp_path, "ref.json", conformance_document("reference")),
        write_json(tmp_path, "sb3.json", conformance_document("sb3", failed=["target_sync"], skipped=["conv_sizes"])),
    ]
    text = results_text(paths)
    assert "`sb3` 3 passed, 1 failed, 1 skipped" in text
    assert "Table 1 quotes the message of each failure." in text


def test_the_newest_conformance_result_wins_whatever_the_file_names(tmp_path: Path) -> None:
    fixed = conformance_document("mine")
    fixed = {**fixed, "created": "2026-11-26T16:00:00+01:00", "results": fixed["results"][:1] + fixed["results"][2:]}
    broken = {**conformance_document("mine", failed=["target_sync"]), "created": "2026-11-26T05:00:00Z"}
    paths = [write_json(tmp_path, "a-new.json", fixed), write_json(tmp_path, "z-old.json", broken)]
    text = results_text(paths)
    assert "`mine` 4 passed, 0 failed, 0 skipped" in text and "target_sync" not in text, text


def test_prose_has_no_doubled_signs_or_bad_plurals(tmp_path: Path) -> None:
    write_json(
        tmp_path, "run.json", bench_document([("op", "cpu", "reference", [1e-3]), ("op", "cpu", "fast", [2e-3])])
    )
    write_sweep(tmp_path, "solo", 50, seeds=1)
    text = results_text([tmp_path])
    assert not re.search(r"\+-|\+−|\(1 \w+s\)|\b1 seeds\b|\b1 runs\b", text), text


def test_a_stored_ab_result_for_the_newest_commit_gives_the_regression_verdict(tmp_path: Path) -> None:
    paths = _history_paths(tmp_path / "history" / "lab", [1e-3, 1.0e-3, 1.0e-3], "123")
    without = results_text(paths)
    machine = load_inputs(paths).runs["machine"].iloc[0]
    (tmp_path / "history" / "lab").rename(tmp_path / "history" / machine)
    node = "benchmarks/test_x.py::test_op[reference-cpu]"
    ab = {
        "kind": "dqnbench-ab",
        "baseline": {"commit": "2" * 40},
        "candidate": {"commit": "3" * 40},
        "benchmarks": {node: {"ratio": 1.2, "ci95": [1.1, 1.3], "verdict": "slower", "passes": 10}},
    }
    write_json(tmp_path / "history" / machine / "ab", "20261123T120000Z-22222222-vs-33333333.json", ab)
    inputs = load_inputs([tmp_path / "history"])
    assert len(inputs.ab) == 1 and inputs.ab[0].machine == machine
    with_ab = results_text([tmp_path / "history"])
    assert "no regression against 2222222" in without and "A/B gate," not in without
    assert (
        f"**Regressions** ({machine}, A/B gate, 3333333 against 2222222): 1 of 1 benchmark slower (test_op" in with_ab
    )


def test_ab_results_where_the_gate_stores_them_are_read_as_verdicts(tmp_path: Path) -> None:
    """`dqnbench bench ab` writes to `reports/ab/<machine>/` (bench.cli.AB_DIR): a results root reads them there."""
    paths = _history_paths(tmp_path / "history" / "lab", [1e-3, 1.0e-3], "12")
    machine = load_inputs(paths).runs["machine"].iloc[0]
    (tmp_path / "history" / "lab").rename(tmp_path / "history" / machine)
    ab = {
        "kind": "dqnbench-ab",
        "baseline": {"commit": "1" * 40},
        "candidate": {"commit": "2" * 40},
        "benchmarks": {"benchmarks/test_x.py::test_op[reference-cpu]": {"verdict": "same"}},
    }
    write_json(tmp_path / "ab" / machine, "20261123T120000Z-11111111-vs-22222222.json", ab)
    inputs = load_inputs([tmp_path])
    assert [(r.machine, r.candidate[:7]) for r in inputs.ab] == [(machine, "2222222")]
    assert len(inputs.runs) == 2, "an A/B result was counted as a history run"


def test_raw_rounds_never_change_a_number(tmp_path: Path) -> None:
    """The history keeps per-run summaries: a run with its rounds (`stats["data"]`) and the same run without them
    give the same comparisons and the same text."""
    entries = [("op", "cpu", "reference", passes(2e-3, seed=1)), ("op", "cpu", "fast", passes(1e-3, seed=2))]
    summary_only = bench_document(entries)
    with_rounds = bench_document(entries)
    for benchmark in with_rounds["benchmarks"]:
        benchmark["stats"]["data"] = list(np.random.default_rng(0).uniform(0, 1, 500))  # nonsense on purpose
    a, b = write_json(tmp_path / "a", "run.json", summary_only), write_json(tmp_path / "b", "run.json", with_rounds)
    assert comparisons(load_inputs([a]).benchmarks, "impl").equals(comparisons(load_inputs([b]).benchmarks, "impl"))
    assert results_text([a]).replace(str(a), "") == results_text([b]).replace(str(b), "")


def test_learning_says_when_three_seeds_make_the_interval_their_range(tmp_path: Path) -> None:
    write_sweep(tmp_path / "three", "v5", 150, seeds=3, spread=30, config=tuned_config())
    write_sweep(tmp_path / "eight", "v5", 150, seeds=8, spread=30, config=tuned_config())
    three, eight = results_text([tmp_path / "three"]), results_text([tmp_path / "eight"])
    assert "With 3 seeds the bootstrap interval reaches the lowest and the highest seed" in three
    assert "bootstrap interval reaches the lowest" not in eight
