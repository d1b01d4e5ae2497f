"""`dqnbench report RUN... [--name NAME]`: stored results in, a report folder out."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _report(args: argparse.Namespace) -> int:
    from dqnbench.report.build import build_report

    folder = build_report(
        args.runs or [args.out],
        out_root=args.out,
        name=args.name,
        threshold=args.solved_at,
        window=args.window,
        thresholds_file=args.thresholds,
    )
    figures = sorted(p.name for p in folder.glob("*.png"))
    print(
        f"report written to {folder}/index.html and {folder}/report.md ({len(figures)} figures: {', '.join(figures)})"
    )
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="turn benchmark, conformance and training results into a report",
        description="Read pytest-benchmark JSON files (or a history store folder), conformance JSON results and "
        "training durations.csv files, and write OUT/NAME/ with index.html (self-contained), report.md and every "
        "figure as PNG and SVG. An existing report is never overwritten.",
    )
    parser.add_argument(
        "runs",
        nargs="*",
        type=Path,
        metavar="RUN",
        help="result files, or folders searched for *.json, *.json.gz and durations.csv (default: the --out folder, "
        "which holds the history store reports/history, conformance results and training curves)",
    )
    parser.add_argument("--name", default=None, help="report folder name (default: report-<UTC timestamp>)")
    parser.add_argument(
        "--out", type=Path, default=Path("reports"), help="folder that holds reports (default: reports)"
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
