"""Reports: benchmark, history, conformance and training results turned into figures, tables and prose.

`build_report(paths, out_root=..., name=...)` writes `reports/<name>/` with a self-contained `index.html`, a
`report.md` and every figure as PNG and SVG; `dqnbench report RUN...` is its command line.
"""

from dqnbench.report.build import build_report
from dqnbench.report.load import ReportInputError, load_inputs

__all__ = ["ReportInputError", "build_report", "load_inputs"]
