"""The conformance kit is mutation-validated: it rejects every mutant of the bug zoo, for the right reason.

Each mutant differs from the reference adapter in one piece; the checks run on it are those that declare
that piece (every check, for a mutated network, which every check that builds a network uses). Each named
check must fail, and every failing check must name the mutant's own cause or none.
The control, the reference passing every check, is tests/test_conformance_reference.py.
"""

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from bugzoo import BY_NAME, MUTANTS, Mutant
from dqnbench.conformance.adapter import PIECES, REFERENCE, DQNAdapter
from dqnbench.conformance.checks import CHECKS, CheckResult, check_names, run_all

REPO = Path(__file__).resolve().parents[1]


def _replaced_piece(mutant: Mutant) -> str:
    (piece,) = [
        f.name
        for f in fields(DQNAdapter)
        if f.name in PIECES and getattr(mutant.adapter, f.name) is not getattr(REFERENCE, f.name)
    ]
    return piece


def _checks_needing(piece: str) -> list[str]:
    return [c.name for c in CHECKS if piece in c.needs]


def _checks_reached(piece: str) -> list[str]:
    """Every check the mutated piece takes part in: a network reaches every check that builds one."""
    return check_names() if piece == "make_network" else _checks_needing(piece)


def _likely_causes(result: CheckResult) -> list[str]:
    return [
        line.strip().removeprefix("likely cause: ") for line in result.message.splitlines() if "likely cause:" in line
    ]


def _report(results: list[CheckResult]) -> str:
    return "\n".join(f"  {r.outcome:7s} {r.message}" for r in results)


def test_zoo_is_large_and_each_mutant_names_known_checks() -> None:
    known = {c.name for c in CHECKS}
    assert len(MUTANTS) >= 32, f"the bug zoo holds {len(MUTANTS)} mutants, the issue asks for at least 32"
    assert len({m.name for m in MUTANTS}) == len(MUTANTS), "two mutants share a name"
    for m in MUTANTS:
        unknown = sorted(set(m.caught_by) - known)
        assert not unknown, f"mutant {m.name}: caught_by names unknown checks {unknown}; known: {sorted(known)}"
        needed = _checks_needing(_replaced_piece(m))
        assert set(m.caught_by) <= set(needed), (
            f"mutant {m.name} replaces {_replaced_piece(m)}, but {sorted(set(m.caught_by) - set(needed))} "
            "do not use that piece"
        )


@pytest.mark.parametrize("mutant", [pytest.param(m, id=m.name) for m in MUTANTS])
def test_kit_catches_mutant_and_names_its_cause_or_none(mutant: Mutant) -> None:
    """The named checks fail; and a check names a likely cause only where its evidence points: never another bug's."""
    piece = _replaced_piece(mutant)
    results = run_all(mutant.adapter, _checks_reached(piece))
    failed = {r.check for r in results if r.outcome == "failed"}
    missed = [name for name in mutant.caught_by if name not in failed]
    assert not missed, (
        f"mutant {mutant.name} ({mutant.bug}; replaces {piece}): expected {missed} among the failed checks, "
        f"got failures {sorted(failed) or 'none'}:\n" + _report(results)
    )
    wrong = [
        f"{r.check}: {cause}"
        for r in results
        if r.outcome == "failed"
        for cause in _likely_causes(r)
        if mutant.cause is None or mutant.cause not in cause
    ]
    assert not wrong, (
        f"mutant {mutant.name} ({mutant.bug}): expected every likely cause to mention {mutant.cause!r} "
        "(or no cause), got:\n  " + "\n  ".join(wrong)
    )


@pytest.mark.slow  # a pytest subprocess: interpreter start-up and imports, several seconds
def test_plugin_fails_a_mutant_from_the_command_line(tmp_path: Path) -> None:
    """The documented command, `--dqn-impl=tests.bugzoo:<mutant>`, fails and records the failures in its JSON."""
    mutant = BY_NAME["truncation_as_termination"]
    result_json = tmp_path / "conformance.json"
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--pyargs", "dqnbench.conformance",
        f"--dqn-impl=tests.bugzoo:{mutant.name}", f"--conformance-json={result_json}",
        "-k", " or ".join(mutant.caught_by),
    ]  # fmt: skip
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 1, f"{' '.join(command)}: expected exit code 1 (tests failed), got {run.returncode}:\n" + (
        run.stdout[-3000:] + run.stderr[-3000:]
    )
    document = json.loads(result_json.read_text())
    outcomes = {r["check"]: r["outcome"] for r in document["results"]}
    assert document["implementation"] == mutant.adapter.name, document["implementation"]
    assert {name: outcomes.get(name) for name in mutant.caught_by} == dict.fromkeys(mutant.caught_by, "failed"), (
        outcomes
    )
