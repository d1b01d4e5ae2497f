"""Inputs for the report tests: benchmark runs as the history stores them (summaries with per-pass medians and
no raw rounds), conformance results in both formats, and training folders."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dqnbench.bench.compare import Thresholds
from dqnbench.report import load_inputs
from dqnbench.report.sections import build_sections

Entry = tuple[str, str, str, Sequence[float]]  # (operation, device, implementation, per-pass medians in seconds)


def passes(median: float, spread: float = 0.02, n: int = 10, seed: int = 0) -> list[float]:
    """`n` pass medians scattered by `spread` (relative) around `median`."""
    return list(median * (1 + spread * np.random.default_rng(seed).standard_normal(n)))


def bench_document(
    entries: Sequence[Entry],
    *,
    when: str = "2026-11-20T10:00:00+00:00",
    commit: str = "a" * 40,
    version: str = "5.1.0",
    node: str = "lab-1",
    quick: bool = False,
    kernel: str = "6.18.44",
    gpus: Sequence[str] = (),
    iqr: float = 0.04,
    rounds: int = 50,
) -> dict[str, Any]:
    """A stored run: each benchmark's median is the median of its pass medians, its interquartile range `iqr`
    (relative) wide; like the history store's summaries, it keeps no raw rounds (`stats["data"]`)."""
    benchmarks = []
    for operation, device, impl, pass_medians in entries:
        median = float(np.median(pass_medians))
        stats = {
            "min": median * 0.9, "max": median * 1.2, "mean": median, "stddev": median * iqr,
            "median": median, "q1": median * (1 - iqr / 2), "q3": median * (1 + iqr / 2), "iqr": median * iqr,
            "rounds": rounds, "iterations": 1, "ops": 1 / median,
        }  # fmt: skip
        extra: dict[str, Any] = {"device": device, "implementation": impl, "passes": len(pass_medians)}
        if len(pass_medians) > 1:
            extra["pass_medians_s"] = [float(v) for v in pass_medians]
        benchmarks.append({
            "group": None, "name": f"test_{operation}[{impl}-{device}]",
            "fullname": f"benchmarks/test_x.py::test_{operation}[{impl}-{device}]",
            "params": {"impl": impl, "device": device}, "param": f"{impl}-{device}", "extra_info": extra,
            "options": {}, "stats": stats,
        })  # fmt: skip
    return {
        "machine_info": {
            "node": node,
            "release": kernel,
            "cpu": {"brand_raw": "Test CPU", "count": 4},
            "dqnbench": {
                "mode": "quick" if quick else "full",
                "torch": "2.14.1",
                "cuda": "13.0" if gpus else None,
                "gpus": list(gpus),
                "torch_threads": 4,
                "cpu_count": 4,
            },
        },
        "commit_info": {"id": commit, "dirty": False},
        "benchmarks": benchmarks,
        "datetime": when,
        "version": version,
    }


def write_json(folder: Path, name: str, document: object) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


CHECKS = ["bellman_targets", "target_sync", "replay_eviction", "epsilon_schedule", "conv_sizes"]


def conformance_document(
    implementation: str, failed: Sequence[str] = (), skipped: Sequence[str] = (), *, schema: bool = True
) -> dict[str, Any]:
    """A conformance result: the current schema'd format, or (`schema=False`) the newer one with `reason` and
    `by_design`."""
    results = [
        {
            "check": c,
            "outcome": "failed" if c in failed else "skipped" if c in skipped else "passed",
            ("message" if schema else "reason"): f"{c}: expected 1.0, got 0.5 (tolerance 1e-6)" if c in failed else "",
            **({} if schema else {"by_design": c in failed}),
        }
        for c in CHECKS
    ]
    document: dict[str, Any] = {"implementation": implementation, "results": results}
    if schema:
        document.update(schema="dqnbench.conformance/1", created="2026-11-20T10:00:00Z", torch="2.14.1")
    else:
        document["declared_differences"] = []
    return document


def write_sweep(
    folder: Path,
    name: str,
    level: float,
    seeds: int = 3,
    episodes: int | Sequence[int] = 150,
    spread: float = 5.0,
    config: dict[str, Any] | None = None,
    evaluations: Sequence[float | None] | None = None,
) -> Path:
    """Training CSVs (`<sweep>/seed<N>/durations.csv`) whose durations climb towards `level`, and a summary.json
    with `config` and each seed's `final_eval_mean` when given."""
    lengths = [episodes] * seeds if isinstance(episodes, int) else list(episodes)
    for seed, length in enumerate(lengths):
        rng = np.random.default_rng(seed)
        ramp = np.minimum(1.0, np.arange(length) / (length / 2))
        durations = np.maximum(8, np.round(20 + (level - 20) * ramp + rng.normal(0, spread, length))).astype(int)
        frame = pd.DataFrame({
            "episode": np.arange(length), "duration": durations, "total_steps": np.cumsum(durations),
            "epsilon": 0.05, "mean_loss": 0.1, "wall_s": np.arange(length) * 0.5,
        })  # fmt: skip
        (folder / name / f"seed{seed}").mkdir(parents=True)
        frame.to_csv(folder / name / f"seed{seed}" / "durations.csv", index=False)
    if config is not None or evaluations is not None:
        summary: dict[str, Any] = {"config": config or {}}
        summary["seeds"] = [
            {"seed": s, **({"final_eval_mean": e} if e is not None else {})}
            for s, e in enumerate(evaluations or [None] * len(lengths))
        ]
        write_json(folder / name, "summary.json", summary)
    return folder / name


def results_text(paths: Sequence[Path], **options: Any) -> str:
    """Every paragraph and summary line of the report made from `paths`, with the gate's built-in threshold."""
    sections = build_sections(load_inputs(paths), limits=Thresholds(), **options)
    return "\n".join([*(p for s in sections for p in s.paragraphs), *(t for s in sections for t, _ in s.lines)])
