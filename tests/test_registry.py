"""The implementation registry: a user's package, registered through the `dqnbench.implementations` entry point,
trains, is benchmarked and is checked by the conformance kit, with nothing passed but its name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dqnbench import registry
from dqnbench.cli import main
from dqnbench.conformance.adapter import REFERENCE, load_adapter
from dqnbench.parts import REFERENCE_PARTS, training_parts
from dqnbench.registry import Implementation, UnknownImplementation

ROOT = Path(__file__).resolve().parents[1]

# A user's package: its own (smaller) Q-network and everything else from the reference, under the name "tiny".
PACKAGE = """
import dataclasses
from torch import nn
from dqnbench.conformance.adapter import REFERENCE
from dqnbench.nets import conv2d_size_out
from dqnbench.parts import REFERENCE_PARTS
from dqnbench.registry import Implementation


class TinyQ(nn.Module):
    def __init__(self, height, width, n_actions, in_channels=3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, kernel_size=5, stride=4)
        h, w = conv2d_size_out(height, 5, 4), conv2d_size_out(width, 5, 4)
        self.head = nn.Linear(4 * h * w, n_actions)

    def forward(self, x):
        return self.head(self.conv(x).relu().flatten(1))


IMPLEMENTATION = Implementation(
    name="tiny",
    parts=dataclasses.replace(REFERENCE_PARTS, name="tiny", make_network=TinyQ),
    adapter=dataclasses.replace(REFERENCE, name="tiny", make_network=TinyQ),
)
BROKEN = 42
"""

ENTRY_POINTS = """
[dqnbench.implementations]
tiny = tinydqn:IMPLEMENTATION
broken = tinydqn:BROKEN
missing = tinydqn_nowhere:IMPLEMENTATION
"""


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`tinydqn` installed as importlib.metadata finds an installed distribution: a dist-info beside it on the path."""
    (tmp_path / "tinydqn").mkdir()
    (tmp_path / "tinydqn" / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    info = tmp_path / "tinydqn-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinydqn\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.refresh()
    yield tmp_path
    registry.refresh()


def _subprocess_env(path: Path) -> dict[str, str]:
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")])}


def test_builtin_implementations_are_registered_by_the_package_itself():
    assert {"reference", "fast"} <= set(registry.names())
    reference = registry.load("reference")
    assert reference.parts is REFERENCE_PARTS and reference.adapter is REFERENCE
    assert training_parts("fast").name == "fast"
    assert load_adapter("fast").name == "dqnbench.fast"


def test_reference_does_not_import_the_fast_path():
    code = "import dqnbench.train, dqnbench.parts, dqnbench.evaluate, sys; print('dqnbench.fast' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", f"importing the reference loaded dqnbench.fast:\n{out.stderr}"


def test_unknown_and_broken_registrations_name_the_fix(user_package):
    with pytest.raises(UnknownImplementation, match=r"no implementation is registered as 'nope'; registered: .*tiny"):
        registry.load("nope")
    with pytest.raises(UnknownImplementation, match=r"'broken' \(tinydqn:BROKEN\) is a int; point the entry point"):
        registry.load("broken")
    with pytest.raises(UnknownImplementation, match=r"'missing' .* failed to import: ModuleNotFoundError.*reinstall"):
        registry.load("missing")
    with pytest.raises(TypeError, match="supplies neither parts nor an adapter"):
        Implementation(name="empty")
    with pytest.raises(UnknownImplementation, match="registers only a conformance adapter, so it cannot be trained"):
        Implementation(name="kit-only", adapter=REFERENCE).require_parts()


def test_a_config_naming_an_unregistered_implementation_is_refused(user_package, tmp_path):
    code = main(["train", "--impl", "nope", "--episodes", "1", "--out", str(tmp_path / "run")])
    assert code == 2 and not (tmp_path / "run").exists()


def test_a_registered_user_package_trains(user_package, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--impl", "tiny", "--episodes", "2", "--batch-size", "8", "--seed", "3", "--out", str(out)]
    assert main(args) == 0
    assert (out / "durations.csv").read_text().count("\n") == 3  # header and two episodes
    assert '"impl": "tiny"' in (out / "config.json").read_text()


@pytest.mark.slow
def test_a_registered_user_package_is_benchmarked_and_checked_by_the_kit(user_package):
    env = _subprocess_env(user_package)
    bench = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "-p", "no:cacheprovider", "--quick", "--benchmark-disable",
         "--device=cpu", "-k", "test_forward and tiny", "-v"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stdout[-3000:] + bench.stderr[-3000:]
    assert "test_forward[cpu-tiny-b1] PASSED" in bench.stdout, bench.stdout[-3000:]

    kit = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "dqnbench.conformance", "--dqn-impl", "tiny",
         "-p", "no:cacheprovider", "-q"],
        cwd=user_package, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert "dqnbench conformance: tiny" in kit.stdout, kit.stdout[-3000:] + kit.stderr[-3000:]
    # Its pieces are the ones checked: the reference's targets pass, its own network is not the seed's.
    assert re.search(r"check_bellman_targets +passed", kit.stdout), kit.stdout[-3000:]
    assert re.search(r"check_network_output_shapes +passed", kit.stdout), kit.stdout[-3000:]
