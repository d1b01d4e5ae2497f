"""`dqnbench check` (a front to the kit's pytest run) and the conformance matrix's JSON and markdown."""

import json
import sys
from pathlib import Path

import pytest

from dqnbench.cli import main
from dqnbench.conformance.adapter import REFERENCE, DeclaredDifference, DQNAdapter
from dqnbench.conformance.checks import CHECKS, run_all
from dqnbench.conformance.cli import check_command
from dqnbench.conformance.matrix import document, file_name, matrix_markdown, write_documents
from dqnbench.policy import epsilon


def test_check_command_passes_the_options_to_pytest() -> None:
    command = check_command("mine:ADAPTER", "epsilon", "out.json", ["-x"])
    assert command[:5] == [sys.executable, "-m", "pytest", "--pyargs", "dqnbench.conformance"]
    assert command[-5:] == ["--dqn-impl=mine:ADAPTER", "-k", "epsilon", "--conformance-json=out.json", "-x"]


@pytest.mark.slow  # two pytest subprocesses
def test_dqnbench_check_exits_with_pytests_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.py").write_text(
        "from dqnbench.conformance.adapter import DQNAdapter\nfrom dqnbench.policy import epsilon\n"
        "ADAPTER = DQNAdapter(name='mine', epsilon=epsilon)\n"
    )
    assert main(["check", "--dqn-impl", "mine", "-k", "epsilon_schedule"]) == 0
    assert main(["check", "--dqn-impl", "mine:MISSING"]) == 4


def test_a_by_design_failure_is_marked_with_its_declared_reason() -> None:
    difference = DeclaredDifference(("check_epsilon_schedule",), "a constant rate")
    adapter = DQNAdapter(name="constant", epsilon=lambda steps: 0.1, declared_differences=(difference,))
    doc = document(adapter, "x:ADAPTER", run_all(adapter, ["check_epsilon_schedule", "check_epsilon_trace"]))
    rows = {r["check"]: r for r in doc["results"]}
    assert rows["check_epsilon_schedule"]["outcome"] == "failed" and rows["check_epsilon_schedule"]["by_design"]
    assert rows["check_epsilon_schedule"]["reason"] == "a constant rate"
    assert rows["check_epsilon_trace"]["outcome"] == "skipped" and not rows["check_epsilon_trace"]["by_design"]
    assert doc["declared_differences"] == [{"checks": ["check_epsilon_schedule"], "reason": "a constant rate"}]
    assert all("\n" not in r["reason"] for r in doc["results"])


def test_declared_differences_are_checked_early() -> None:
    with pytest.raises(ValueError, match=r"name one or more checks"):
        DeclaredDifference(("epsilon",), "x")
    with pytest.raises(ValueError, match=r"one-line reason"):
        DeclaredDifference(("check_epsilon_schedule",), "two\nlines")


def test_matrix_files_and_markdown(tmp_path: Path) -> None:
    mine = "conformance_cli_mine"
    module = type(sys)(mine)
    module.ADAPTER = DQNAdapter(name="epsilon only", epsilon=epsilon)  # type: ignore[attr-defined]
    sys.modules[mine] = module
    try:
        (path,) = write_documents([mine], tmp_path)
    finally:
        del sys.modules[mine]
    assert path.name == f"{mine}.json" and file_name("dqnbench.conformance.adapter:REFERENCE") == "reference.json"
    doc = json.loads(path.read_text())
    table = matrix_markdown([doc, document(REFERENCE, "ref", run_all(REFERENCE, ["check_epsilon_schedule"]))])
    lines = table.splitlines()
    assert lines[0] == "| check | epsilon only | dqnbench.reference |"
    assert "| `check_epsilon_schedule` | pass | pass |" in lines
    assert "| `check_epsilon_trace` | skip | - |" in lines
    assert len([line for line in lines if line.startswith("| `check_")]) == len(CHECKS)
