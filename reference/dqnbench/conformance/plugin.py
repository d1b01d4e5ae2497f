"""The pytest plugin of the conformance kit, registered through the `pytest11` entry point `dqnbench`.

It adds two options to every pytest run in an environment where dqnbench is installed:

``--dqn-impl=package.module[:object]``
    the `DQNAdapter` the conformance checks run against (default: dqnbench's reference,
    ``dqnbench.conformance.adapter:REFERENCE``; ``:object`` defaults to ``ADAPTER``). A string that does not
    resolve to an adapter is a usage error (exit 4) naming the object, what was expected and the fix; so is
    ``--dqn-impl`` in a run that selects no test.
``--conformance-json=PATH``
    write the results there (schema ``dqnbench.conformance/1``, see `SCHEMA`); an existing file is refused.

and the fixtures `dqn_adapter` (the selected adapter) and `conformance_record` (how a test reports a
`CheckResult`). At the end of a session in which checks ran it prints a one-screen summary table.

Registered in every pytest run of an environment with dqnbench installed, the plugin imports torch and the
kit only when a run uses them (`--dqn-impl`, or a fixture of the kit), so other projects' runs stay light.

Run the kit from anywhere, without a checkout (``python -m`` puts the current folder on sys.path, so an
adapter module there is importable)::

    python -m pytest --pyargs dqnbench.conformance --dqn-impl=mypkg.adapter:ADAPTER --conformance-json=out.json
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from dqnbench.conformance import REFERENCE_SPEC

if TYPE_CHECKING:
    from dqnbench.conformance.adapter import DQNAdapter
    from dqnbench.conformance.checks import CheckResult

SCHEMA = "dqnbench.conformance/1"
"""The JSON written by --conformance-json: see `dqnbench.conformance.matrix`."""


class ConformanceSession:
    """The selected implementation and the check results recorded during one pytest session."""

    def __init__(self, spec: str, json_path: Path | None) -> None:
        self.spec = spec
        self.json_path = json_path
        self._adapter: DQNAdapter | None = None
        self.results: dict[str, list[CheckResult]] = {}

    @property
    def adapter(self) -> DQNAdapter:
        if self._adapter is None:
            from dqnbench.conformance.adapter import load_adapter

            self._adapter = load_adapter(self.spec)
        return self._adapter

    def record(self, adapter: DQNAdapter, result: CheckResult) -> None:
        self.results.setdefault(adapter.name, []).append(result)

    def document(self) -> dict[str, Any] | None:
        """The JSON result of the selected implementation, or None when none of its checks ran."""
        from dqnbench.conformance.matrix import document

        results = self.results.get(self.adapter.name)
        return document(self.adapter, self.spec, results) if results else None


_SESSION = pytest.StashKey[ConformanceSession]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dqnbench", "dqnbench conformance kit")
    group.addoption(
        "--dqn-impl",
        default=None,
        metavar="package.module:object",
        help=f"DQNAdapter to run the conformance checks against (default: {REFERENCE_SPEC})",
    )
    group.addoption(
        "--conformance-json",
        default=None,
        metavar="PATH",
        help=f"write the conformance results to PATH as JSON (schema {SCHEMA}); an existing file is refused",
    )


def pytest_configure(config: pytest.Config) -> None:
    spec = config.getoption("dqn_impl") or REFERENCE_SPEC
    json_option = config.getoption("conformance_json")
    json_path = Path(json_option) if json_option else None
    if json_path is not None and json_path.exists():
        raise pytest.UsageError(
            f"--conformance-json={json_option}: the file already exists and would be overwritten; pass a new path"
        )
    session = ConformanceSession(spec, json_path)
    if config.getoption("dqn_impl"):
        from dqnbench.conformance.adapter import AdapterLoadError

        # A typo should stop the run with one clear message, not fail every check.
        try:
            _ = session.adapter
        except AdapterLoadError as error:
            raise pytest.UsageError(str(error)) from error
    config.stash[_SESSION] = session


RUN_THE_KIT = "python -m pytest --pyargs dqnbench.conformance --dqn-impl={spec} (or: dqnbench check --dqn-impl={spec})"


def pytest_collection_finish(session: pytest.Session) -> None:
    """--dqn-impl in a run that selects no test would end in a bare "no tests ran": say how to run the kit.

    Only an empty selection is refused: other suites (dqnbench's benchmarks) read --dqn-impl too.
    """
    spec = session.config.getoption("dqn_impl")
    if spec and not session.items and not session.config.getoption("collectonly"):
        raise pytest.UsageError(
            f"--dqn-impl={spec} was given, but no test is selected (none collected here, or -k/-m deselected "
            f"them all), so nothing would check it; run the kit: {RUN_THE_KIT.format(spec=spec)}"
        )


def pytest_report_header(config: pytest.Config) -> str | None:
    if not config.getoption("dqn_impl"):
        return None
    session = config.stash[_SESSION]
    return f"dqnbench conformance: {session.adapter.name} ({session.spec}), supplies {session.adapter.supplied()}"


@pytest.fixture(scope="session")
def dqn_adapter(pytestconfig: pytest.Config) -> DQNAdapter:
    """The DQNAdapter selected with --dqn-impl (dqnbench's reference by default)."""
    return pytestconfig.stash[_SESSION].adapter


@pytest.fixture
def conformance_record(pytestconfig: pytest.Config) -> Callable[[DQNAdapter, CheckResult], None]:
    """Record a check's result for the summary table and the JSON file: call it as record(adapter, result)."""
    return pytestconfig.stash[_SESSION].record


def _summary_lines(name: str, results: list[CheckResult], width: int) -> list[str]:
    check_width = max(len(r.check) for r in results)
    lines = [f"{'check':<{check_width}}  {'outcome':<7}  {'time':>6}  message"]
    room = max(width - check_width - 21, 20)
    for result in results:
        first = result.message.splitlines()[0].removeprefix(f"{result.check}: ")
        text = first if len(first) <= room else first[: room - 3] + "..."
        lines.append(f"{result.check:<{check_width}}  {result.outcome:<7}  {result.duration_s:5.2f}s  {text}")
    counts = {o: sum(r.outcome == o for r in results) for o in ("passed", "failed", "skipped")}
    lines.append(f"{name}: {len(results)} checks, " + ", ".join(f"{n} {o}" for o, n in counts.items()))
    return lines


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    session = config.stash.get(_SESSION, None)
    if session is None or not session.results:
        return
    width = shutil.get_terminal_size((120, 24)).columns
    for name, results in session.results.items():
        terminalreporter.write_sep("=", f"dqnbench conformance: {name}")
        for line in _summary_lines(name, results, width):
            terminalreporter.write_line(line)
    if session.json_path is not None:
        document = session.document()
        if document is None:
            terminalreporter.write_line(
                f"no conformance check ran for {session.adapter.name}; {session.json_path} was not written"
            )
        else:
            from dqnbench.files import atomic_write_text

            atomic_write_text(session.json_path, json.dumps(document, indent=2) + "\n")
            terminalreporter.write_line(f"conformance results written to {session.json_path}")
