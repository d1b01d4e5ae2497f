"""Assembling a report folder: read the inputs, build the sections, write everything, never overwrite."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from dqnbench.files import refuse_to_overwrite
from dqnbench.report.analysis import thresholds
from dqnbench.report.load import load_inputs
from dqnbench.report.render import to_html, to_markdown
from dqnbench.report.sections import build_sections

DEFAULT_OUT = Path("build/reports")
"""Built reports are outputs, not results: they go to a git-ignored folder (`build/` is in .gitignore)."""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def default_name() -> str:
    return "report-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def build_report(
    paths: Sequence[Path],
    *,
    out_root: Path = DEFAULT_OUT,
    name: str | None = None,
    threshold: float = 195.0,
    window: int = 100,
    thresholds_file: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write `out_root/name/` (index.html, report.md, each figure as PNG and SVG) and return that folder.

    The folder is written under a temporary name and renamed into place in one step, so an interrupted run
    leaves no half-written report, and an existing report is never replaced.
    """
    name = name or default_name()
    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"report name {name!r} must be a plain folder name (no '/', not starting with '.')")
    target = out_root / name
    fix = "choose another --name, or move the old report away first"
    refuse_to_overwrite(target, "report folder", fix)
    started = time.perf_counter()

    def say(text: str) -> None:
        if progress is not None:
            progress(f"[{time.perf_counter() - started:5.1f} s] {text}")

    say(f"reading {', '.join(map(str, paths))}")
    inputs = load_inputs(paths)
    say(
        f"read {_count(len(inputs.files), 'file')}: {_count(inputs.benchmarks['source'].nunique(), 'benchmark run')}, "
        f"{_count(inputs.training['source'].nunique(), 'training curve')}, "
        f"{_count(inputs.conformance['source'].nunique(), 'conformance result')}; computing"
    )
    sections = build_sections(inputs, threshold=threshold, window=window, limits=thresholds(thresholds_file))
    title = f"dqnbench report: {name}"
    out_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_root, prefix=f".{name}.", suffix=".tmp"))
    # mkdtemp makes the folder private (0700); a report is for sharing, so give it the umask's usual mode.
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    try:
        for section in sections:
            for figure in section.figures:
                say(f"drawing figure {figure.number} ({section.title})")
                (staging / f"{figure.figure.stem}.png").write_bytes(figure.figure.png)
                (staging / f"{figure.figure.stem}.svg").write_text(figure.figure.svg, encoding="utf-8")
        say("writing index.html and report.md")
        (staging / "report.md").write_text(to_markdown(title, sections), encoding="utf-8")
        (staging / "index.html").write_text(to_html(title, sections), encoding="utf-8")
        if target.is_dir():
            target.rmdir()  # empty (refuse_to_overwrite passed); rename below needs the name free
        try:
            os.rename(staging, target)
        except OSError as error:
            # Another process created the report between the check and here: keep theirs.
            raise FileExistsError(f"report folder {target} appeared while writing; {fix}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
