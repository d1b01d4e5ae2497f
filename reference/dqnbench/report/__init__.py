"""Reports: benchmark, history, conformance and training results turned into figures, tables and prose.

`build_report(paths, out_root=..., name=...)` writes `reports/<name>/` with a self-contained `index.html`, a
`report.md` and every figure as PNG and SVG; `dqnbench report RUN...` is its command line.
"""

from typing import Any

__all__ = ["ReportInputError", "build_report", "load_inputs"]


def __getattr__(name: str) -> Any:
    # Imported on first use: every `dqnbench` command imports this package to register `report`, and
    # pandas + matplotlib cost ~0.4 s that `dqnbench train` has no use for.
    if name == "build_report":
        from dqnbench.report.build import build_report

        return build_report
    if name in ("ReportInputError", "load_inputs"):
        from dqnbench.report import load

        return getattr(load, name)
    raise AttributeError(f"module 'dqnbench.report' has no attribute {name!r}")
