"""The benchmark suite's parameters, run for real (in-process, `pytest benchmarks/ --quick`).

A user's adapter joins the reference as an implementation; pieces it does not supply skip with the piece
named; CUDA skips when absent unless requested (option or environment variable), and then fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

pytest_plugins = ("pytester",)

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

PARTIAL_ADAPTER = """
from dqnbench.conformance.adapter import DQNAdapter
from dqnbench.nets import DQN

ADAPTER = DQNAdapter(name="partial", make_network=DQN)
"""


def _saved_run_options(folder: Path) -> tuple[str, str]:
    """Save the run's JSON under `folder` (read it with `_saved_run`). Not `--benchmark-json`: pytest-benchmark opens
    that path with argparse.FileType at every parse of the command line and closes only the last handle, so an
    in-process run would leak one into a later test's garbage collection."""
    return f"--benchmark-storage=file://{folder}", "--benchmark-save=run"


def _saved_run(folder: Path) -> dict[str, Any]:
    (saved,) = folder.rglob("*_run.json")
    return json.loads(saved.read_text())


def _bench(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(partial_adapter=PARTIAL_ADAPTER)
    pytester.syspathinsert()
    return pytester.runpytest_inprocess(
        str(BENCHMARKS), "--quick", "--benchmark-disable", "-p", "no:cacheprovider", "-rs", "-v", *args
    )


def test_user_adapter_is_benchmarked_and_missing_pieces_skip_by_name(pytester: pytest.Pytester) -> None:
    result = _bench(pytester, "--dqn-impl=partial_adapter:ADAPTER", "-k", "forward and cpu or screen_process and cpu")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines_random([
        "*test_forward[[]cpu-partial-b1[]] PASSED*",
        "*test_forward[[]cpu-partial-b128[]] PASSED*",
        "*test_screen_process[[]cpu-reference[]] PASSED*",
        "*test_screen_process[[]cpu-partial[]] SKIPPED*",
        "*implementation 'partial' does not supply extract_screen*",
    ])  # fmt: skip


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what happens without CUDA")
def test_cuda_skips_with_a_reason_when_absent(pytester: pytest.Pytester) -> None:
    result = _bench(pytester, "-k", "forward and reference and not b128")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines_random([
        "*test_forward[[]cpu-reference-b1[]] PASSED*",
        "*test_forward[[]cuda-reference-b1[]] SKIPPED*",
        "*CUDA is not available*pass --device=cuda on a GPU machine*",
    ])  # fmt: skip


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure when CUDA is requested but absent")
@pytest.mark.parametrize("request_cuda", ["option", "environment"])
def test_requested_cuda_fails_when_absent(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, request_cuda: str
) -> None:
    args = ["--device=cuda"] if request_cuda == "option" else []
    if request_cuda == "environment":
        monkeypatch.setenv("DQNBENCH_REQUIRE_CUDA", "1")
    result = _bench(pytester, *args, "-k", "forward and reference and not b128")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.stdout.fnmatch_lines_random([
        "*test_forward[[]cuda-reference-b1[]] ERROR*",
        "*but CUDA was requested (--device or DQNBENCH_REQUIRE_CUDA=1)*",
    ])  # fmt: skip


def test_the_compiled_fast_path_is_timed_only_where_compilation_changes_something(pytester: pytest.Pytester) -> None:
    result = _bench(pytester, "--device=cpu", "--collect-only")
    assert result.ret == 0, result.stdout.str()
    collected = sorted(line.strip() for line in result.stdout.lines if "fast-compiled" in line)
    assert collected == [
        "<Function test_optimize[cpu-fast-compiled]>",
        "<Function test_train_step[cpu-fast-compiled]>",
    ], "\n".join(result.stdout.lines)


@pytest.mark.parametrize("request_cuda", [False, True], ids=["default-devices", "cuda-requested"])
def test_a_cpu_time_timer_never_times_cuda(pytester: pytest.Pytester, request_cuda: bool) -> None:
    args = ["--benchmark-timer=time.process_time", "-k", "forward and reference and not b128"]
    result = _bench(pytester, *args, *(["--device=cpu,cuda"] if request_cuda else []))
    assert result.ret == (pytest.ExitCode.TESTS_FAILED if request_cuda else pytest.ExitCode.OK), result.stdout.str()
    result.stdout.fnmatch_lines_random([
        "*test_forward[[]cpu-reference-b1[]] PASSED*",
        f"*test_forward[[]cuda-reference-b1[]] {'ERROR' if request_cuda else 'SKIPPED'}*",
        "*--benchmark-timer=time.process_time counts CPU time only, not the GPU's*",
    ])  # fmt: skip


def test_the_cuda_graph_variant_skips_on_the_cpu_saying_why(pytester: pytest.Pytester) -> None:
    # Not fast-compiled: an in-process run restores sys.modules afterwards, and torch's inductor modules cannot
    # be imported a second time in one process (they register themselves in a registry that stays).
    result = _bench(pytester, "--device=cpu", "-k", "optimize and not fast-compiled")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines_random([
        "*test_optimize[[]cpu-fast[]] PASSED*",
        "*test_optimize[[]cpu-fast-graphed[]] SKIPPED*",
        "*fast-graphed runs on cuda only*",
    ])  # fmt: skip


def test_the_commit_can_be_named_for_a_copied_tree(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DQNBENCH_COMMIT", "0123abcd" * 5 + "-dirty")
    pytester.syspathinsert()
    result = pytester.runpytest_inprocess(
        str(BENCHMARKS), "--quick", "-p", "no:cacheprovider", "-k", "forward and cpu and reference and b1",
        *_saved_run_options(tmp_path),
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    commit = _saved_run(tmp_path)["commit_info"]
    assert (commit["id"], commit["dirty"], commit["source"]) == ("0123abcd" * 5, True, "DQNBENCH_COMMIT")
    # What git said in the copy (another commit's id and times) is kept apart, not mixed in.
    assert set(commit) == {"id", "dirty", "source", "git"}
    assert "time" in commit["git"]

    monkeypatch.setenv("DQNBENCH_COMMIT", "HEAD~1")
    refused = pytester.runpytest_inprocess(str(BENCHMARKS), "--quick", "-p", "no:cacheprovider", "-k", "nothing")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*DQNBENCH_COMMIT='HEAD~1'*git commit id*git rev-parse HEAD*"])


def test_passes_take_turns_and_each_benchmark_is_one_entry_of_all_its_rounds(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.syspathinsert()
    result = pytester.runpytest_inprocess(
        str(BENCHMARKS), "--quick", "-p", "no:cacheprovider", "-v", "--passes=2", "-k", "replay_push and cpu",
        *_saved_run_options(tmp_path),
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    ran = [line.split("::")[-1].split(" ")[0] for line in result.stdout.lines if " PASSED" in line]
    assert ran == [
        "test_replay_push[cpu-reference-pass1of2]",
        "test_replay_push[cpu-fast-pass1of2]",
        "test_replay_push[cpu-fast-pass2of2]",
        "test_replay_push[cpu-reference-pass2of2]",
    ]
    run = _saved_run(tmp_path)
    assert run["machine_info"]["dqnbench"]["passes"] == 2
    entries = {bench["name"]: bench for bench in run["benchmarks"]}
    assert sorted(entries) == ["test_replay_push[cpu-fast]", "test_replay_push[cpu-reference]"]
    for bench in entries.values():
        # --quick times one round per pass.
        assert (bench["stats"]["rounds"], bench["extra_info"]["passes"]) == (2, 2), bench
        assert "benchmark_pass" not in bench["params"] and "pass" not in bench["extra_info"]

    refused = pytester.runpytest_inprocess(str(BENCHMARKS), "--passes=0", "-p", "no:cacheprovider")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*--passes=0: need at least 1*"])
