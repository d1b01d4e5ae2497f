"""`dqnbench check` and `dqnbench conformance-matrix`: the conformance kit from dqnbench's command line.

``dqnbench check`` is a thin front to ``python -m pytest --pyargs dqnbench.conformance`` (so an adapter
module in the current folder is importable, as with ``python -m``); its exit code is pytest's (4: a usage
error such as an adapter that does not load). ``dqnbench conformance-matrix`` runs every check on several
implementations, writes one JSON document each and prints the matrix.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from dqnbench.conformance import REFERENCE_SPEC

MATRIX_SPECS = (
    REFERENCE_SPEC,
    "dqnbench.fast:ADAPTER",
    "dqnbench.peers.sb3",
    "dqnbench.peers.torchrl",
    "dqnbench.peers.tianshou",
    "dqnbench.peers.cleanrl_style",
)
"""The implementations `conformance-matrix` checks by default."""


def check_command(dqn_impl: str | None, keyword: str | None, json_path: str | None, extra: list[str]) -> list[str]:
    """The pytest command line `dqnbench check` runs."""
    command = [sys.executable, "-m", "pytest", "--pyargs", "dqnbench.conformance", "-p", "no:cacheprovider"]
    command += [f"--dqn-impl={dqn_impl}"] if dqn_impl else []
    command += ["-k", keyword] if keyword else []
    command += [f"--conformance-json={json_path}"] if json_path else []
    return command + extra


def run_check(args: argparse.Namespace) -> int:
    return subprocess.run(check_command(args.dqn_impl, args.k, args.conformance_json, args.pytest_args)).returncode


def run_matrix(args: argparse.Namespace) -> int:
    from dqnbench.conformance.adapter import AdapterLoadError
    from dqnbench.conformance.matrix import matrix_markdown, read_documents, write_documents

    out = Path(args.out)
    for spec in args.impl or MATRIX_SPECS:
        try:
            for path in write_documents([spec], out):
                print(f"{spec}: {path}", file=sys.stderr)
        except AdapterLoadError as error:
            if args.impl:  # named explicitly: not loading it is an error
                raise ValueError(str(error)) from error
            print(f"{spec}: skipped, it does not load here ({error})", file=sys.stderr)
    print(matrix_markdown(read_documents(out)))
    return 0


def register(subparsers: Any) -> None:
    """Add `check` and `conformance-matrix` to the `dqnbench` command line."""
    check = subparsers.add_parser(
        "check",
        help="run the conformance kit against a DQN implementation (a front to pytest)",
        description="Run the conformance kit: python -m pytest --pyargs dqnbench.conformance [options]. Arguments "
        "after the options go to pytest unchanged; the exit code is pytest's.",
    )
    check.add_argument("--dqn-impl", metavar="package.module[:object]", help=f"the adapter (default {REFERENCE_SPEC})")
    check.add_argument("-k", metavar="EXPRESSION", help="only the checks whose names match (pytest's -k)")
    check.add_argument("--conformance-json", metavar="PATH", help="write the results there as JSON")
    check.add_argument("pytest_args", nargs=argparse.REMAINDER, help="further pytest arguments")
    check.set_defaults(run=run_check)
    matrix = subparsers.add_parser(
        "conformance-matrix",
        help="run every check on several implementations, write their JSON and print the matrix",
        description="Run the kit on each implementation (default: the reference, dqnbench.fast and the peers "
        "that install here), write OUT/<name>.json for each, then print the matrix as markdown.",
    )
    matrix.add_argument("--out", default="reports/conformance", help="folder for the JSON documents")
    matrix.add_argument("--impl", nargs="+", metavar="SPEC", help="adapters to check (default: all known)")
    matrix.set_defaults(run=run_matrix)
