"""`dqnbench report RUN... [--name NAME]`: stored results in, a report folder out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

STORED = Path("reports")
"""Where the repository keeps its stored results (history, learning curves, conformance)."""


def _report(args: argparse.Namespace) -> int:
    from dqnbench.report.build import build_report
    from dqnbench.report.load import ReportInputError

    if not args.runs and not (STORED / "history").is_dir() and not any(STORED.glob("*/**/*.json*")):
        raise ReportInputError(
            f"no stored results here: {STORED.resolve()} has no history, learning or conformance results. Run "
            "`dqnbench report` from the repository root (it reads reports/), or name result files or folders: "
            "`dqnbench report path/to/run.json path/to/folder`"
        )
    folder = build_report(
        args.runs or [STORED],
        out_root=args.out,
        progress=lambda text: print(text, file=sys.stderr, flush=True),
        name=args.name,
        threshold=args.solved_at,
        window=args.window,
        thresholds_file=args.thresholds,
    )
    figures = sorted(p.name for p in folder.glob("*.png"))
    size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    print(
        f"report written to {folder}/index.html and {folder}/report.md ({len(figures)} figures, {size:.1f} MB); "
        f"open {folder}/index.html in a browser"
    )
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="turn benchmark, conformance and training results into a report",
        description="Read pytest-benchmark JSON files (or a history store folder), conformance JSON results and "
        "training durations.csv files, and write OUT/NAME/ with index.html, report.md and every figure as PNG and "
        "SVG. An existing report is never overwritten. docs/reports.md describes each section.",
    )
    parser.add_argument(
        "runs",
        nargs="*",
        type=Path,
        metavar="RUN",
        help="result files, or folders searched for *.json, *.json.gz and durations.csv (default: reports, which "
        "holds the history store reports/history, conformance results and training curves)",
    )
    parser.add_argument("--name", default=None, help="report folder name (default: report-<UTC timestamp>)")
    parser.add_argument(
        "--out", type=Path, default=Path("build/reports"), help="folder that holds reports (default: build/reports)"
    )
    parser.add_argument(
        "--solved-at",
        type=float,
        default=195.0,
        help="learning curves: the running-mean duration that counts as solved (default: 195, CartPole-v1's)",
    )
    parser.add_argument(
        "--thresholds",
        type=Path,
        default=None,
        help="regression thresholds file for the history (default: benchmarks/thresholds.toml when present)",
    )
    parser.add_argument("--window", type=int, default=100, help="running-mean window in episodes (default: 100)")
    parser.set_defaults(run=_report)
