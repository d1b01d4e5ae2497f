"""Using the kit wrongly is a usage error (pytest's exit 4) with one message, never an INTERNALERROR; the
plugin costs other pytest runs nothing (no torch import)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ADAPTER_IMPORT = "from dqnbench.conformance.adapter import DQNAdapter\n"
BAD_ADAPTERS = {
    # module source, then fragments the one message must hold: the object, what was expected, the fix
    "needs_arguments": (
        ADAPTER_IMPORT + "def ADAPTER(name):\n    return DQNAdapter(name=name)\n",
        ["'ADAPTER' is a callable that needs arguments (name)", "give the arguments defaults"],
    ),
    "factory_raises": (
        "def ADAPTER():\n    raise RuntimeError('no GPU here')\n",
        ["calling ADAPTER() to build the adapter raised RuntimeError: no GPU here", "factory_raises.py:2"],
    ),
    "name_error": (
        "ADAPTER = undefined_name\n",
        ["importing module 'name_error' raised NameError", "name_error.py:1", "fix the module"],
    ),
    "syntax_error": (
        "ADAPTER = (\n",
        ["importing module 'syntax_error' raised SyntaxError", "syntax_error.py:1", "fix the module"],
    ),
    "piece_not_callable": (
        ADAPTER_IMPORT + "ADAPTER = DQNAdapter(name='x', epsilon=0.5)\n",
        ["DQNAdapter(name='x').epsilon is a float, not a callable", "piece_not_callable.py:2"],
    ),
    "no_default_object": (
        ADAPTER_IMPORT + "MINE = DQNAdapter(name='x')\n",
        ["has no attribute 'ADAPTER' (the default object", "the DQNAdapter objects there are ['MINE']"],
    ),
}


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("module", list(BAD_ADAPTERS))
def test_a_bad_adapter_is_a_usage_error_with_one_message(tmp_path: Path, module: str) -> None:
    source, fragments = BAD_ADAPTERS[module]
    (tmp_path / f"{module}.py").write_text(source)
    run = _pytest(tmp_path, "--pyargs", "dqnbench.conformance", f"--dqn-impl={module}")
    output = run.stdout + run.stderr
    assert run.returncode == 4, f"expected exit 4 (usage error), got {run.returncode}:\n{output[-3000:]}"
    assert "INTERNALERROR" not in output and "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1 and errors[0].startswith(f"ERROR: --dqn-impl={module!r}: "), output[-3000:]
    missing = [fragment for fragment in fragments if fragment not in errors[0]]
    assert not missing, f"{missing} not in the message: {errors[0]}"


def test_a_module_path_without_object_selects_its_adapter(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(
        textwrap.dedent(
            """
            from dqnbench.conformance.adapter import DQNAdapter
            from dqnbench.policy import epsilon

            ADAPTER = DQNAdapter(name="mine", epsilon=epsilon)
            """
        )
    )
    run = _pytest(tmp_path, "--pyargs", "dqnbench.conformance", "--dqn-impl=mine", "-k", "epsilon_schedule")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "mine: 1 checks, 1 passed" in run.stdout


def test_dqn_impl_without_the_kit_says_how_to_run_it(tmp_path: Path) -> None:
    """The symptom reported: `pytest --dqn-impl=...` without `--pyargs dqnbench.conformance` ran no test."""
    run = _pytest(tmp_path, "--dqn-impl=dqnbench.conformance.adapter:REFERENCE")
    assert run.returncode == 4, run.stdout[-3000:] + run.stderr[-3000:]
    assert "no test is selected" in run.stderr
    assert "python -m pytest --pyargs dqnbench.conformance --dqn-impl=dqnbench.conformance.adapter:REFERENCE" in (
        run.stderr
    )


def test_a_run_without_the_kit_does_not_import_torch(tmp_path: Path) -> None:
    """The plugin loads in every pytest run of this environment; only runs that use the kit may pay for torch."""
    (tmp_path / "test_light.py").write_text(
        "import sys\n\n\ndef test_torch_not_imported():\n    assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    run = _pytest(tmp_path, "test_light.py")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "dqnbench" in _pytest(tmp_path, "--help").stdout  # the plugin was loaded, its options are there
