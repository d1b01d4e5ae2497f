"""Conformance results as JSON documents, and the conformance matrix (implementation x check) built from them.

One document per implementation, schema ``dqnbench.conformance/1`` (the plugin's ``--conformance-json`` writes
the same)::

    {"schema", "implementation", "spec", "created" (ISO 8601, UTC), "torch",
     "declared_differences": [{"checks": [str], "reason": str}],
     "results": [{"check", "outcome": "passed"|"failed"|"skipped", "reason": one line, "by_design": bool,
                  "message": the full message, "duration_s"}]}

``by_design`` is true for a failed check that the implementation declares as a difference from the reference
(`DQNAdapter.declared_differences`); its ``reason`` is then the declared one, else the message's first line.
`matrix_markdown` renders documents as a table, one row per check and one column per implementation.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dqnbench.conformance.adapter import DQNAdapter, load_adapter
from dqnbench.conformance.checks import CHECKS, CheckResult, run_all
from dqnbench.files import atomic_write_text

SCHEMA = "dqnbench.conformance/1"
CELLS = {"passed": "pass", "failed": "FAIL", "skipped": "skip", "by_design": "by design"}
"""How an outcome reads in the matrix."""


def one_line(result: CheckResult) -> str:
    """The first line of a check's message, without the check's name."""
    return result.message.splitlines()[0].removeprefix(f"{result.check}: ")


def result_row(adapter: DQNAdapter, result: CheckResult) -> dict[str, Any]:
    declared = adapter.by_design(result.check) if result.outcome == "failed" else None
    return result.to_json() | {
        "reason": declared.reason if declared else one_line(result),
        "by_design": declared is not None,
    }


def document(adapter: DQNAdapter, spec: str, results: Sequence[CheckResult]) -> dict[str, Any]:
    """The JSON document of one implementation's results, in the order of `CHECKS`."""
    import torch

    order = {c.name: i for i, c in enumerate(CHECKS)}
    return {
        "schema": SCHEMA,
        "implementation": adapter.name,
        "spec": spec,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "declared_differences": [{"checks": list(d.checks), "reason": d.reason} for d in adapter.declared_differences],
        "results": [result_row(adapter, r) for r in sorted(results, key=lambda r: order.get(r.check, len(order)))],
    }


def file_name(spec: str) -> str:
    """`reports/conformance/<name>.json` for an adapter spec: the module's last part, or the spec's object."""
    module, _, attribute = spec.partition(":")
    stem = module.rsplit(".", 1)[-1] if attribute in ("", "ADAPTER", "REFERENCE") else attribute
    stem = "reference" if attribute == "REFERENCE" else stem
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem) + ".json"


def write_documents(specs: Sequence[str], out: Path) -> list[Path]:
    """Run every check on each adapter and write one document per implementation into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in specs:
        adapter = load_adapter(spec)
        path = out / file_name(spec)
        atomic_write_text(path, json.dumps(document(adapter, spec, run_all(adapter)), indent=1) + "\n")
        written.append(path)
    return written


def cell(row: dict[str, Any]) -> str:
    return CELLS["by_design" if row.get("by_design") else str(row["outcome"])]


def matrix_markdown(documents: Sequence[dict[str, Any]]) -> str:
    """A markdown table (check x implementation), then each failure's and skip's one-line reason."""
    names = [str(d["implementation"]) for d in documents]
    by_check = [{r["check"]: r for r in d["results"]} for d in documents]
    checks = [c.name for c in CHECKS]
    lines = ["| check | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for check in checks:
        cells = [cell(rows[check]) if check in rows else "-" for rows in by_check]
        lines.append(f"| `{check}` | " + " | ".join(cells) + " |")
    lines.append("")
    for name, rows in zip(names, by_check, strict=True):
        notes = [f"- `{c}`: {cell(r)}: {r['reason']}" for c, r in rows.items() if r["outcome"] != "passed"]
        if notes:
            lines += [f"**{name}**", "", *notes, ""]
    return "\n".join(lines)


def read_documents(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
