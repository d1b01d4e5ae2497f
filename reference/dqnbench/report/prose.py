"""The report's building blocks (sections, numbered tables and figures) and the phrases its sentences share.

The register is a careful paper's Results (Academic Phrasebank): one finding per paragraph with its number and
interval, past tense for what was measured, hedged where a cause is suggested, counts instead of lists.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dqnbench.report.analysis import Ratio
from dqnbench.report.figures import Figure, pretty, significant

NO_INTERVAL = "-"


@dataclass(frozen=True)
class Table:
    number: int
    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class NumberedFigure:
    """A figure drawn only when it is written out: prose and tables never wait for matplotlib."""

    number: int
    caption: str
    draw: Callable[[], Figure]

    @functools.cached_property
    def figure(self) -> Figure:
        return self.draw()


@dataclass
class Section:
    """A part of the report; `results` sections are grouped under one "Results" heading. `lines` are the
    summary's one-line answers, each with the anchor of the section that gives the details."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    figures: list[NumberedFigure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    results: bool = True
    lines: list[tuple[str, str]] = field(default_factory=list)
    anchor: str = ""

    def __post_init__(self) -> None:
        self.anchor = self.anchor or re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


@dataclass
class Numbering:
    """Figures and tables are numbered in the order the report presents them."""

    figures: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    tables: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def figure(self) -> int:
        return next(self.figures)

    def table(self) -> int:
        return next(self.tables)


def count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def listing(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]


def times(value: float) -> str:
    """A ratio as a factor: "1.17×"."""
    return f"{significant(value)}×"


def ratio_interval(ratio: Ratio) -> str:
    """ "1.17× (95% CI 1.14–1.28)", or "1.18× (no interval: 1 run)" below three values."""
    if ratio.has_interval:
        return f"{times(ratio.value)} (95% CI {significant(ratio.low)}–{significant(ratio.high)})"
    return f"{times(ratio.value)} (no interval: {values_text(ratio.values, ratio.unit)})"


def values_text(n: int, unit: str) -> str:
    """ "10 passes", "1 run", "2 separate runs"."""
    if unit == "separate runs":
        return f"{count(n, 'run')} per side"
    return count(n, {"passes": "pass", "runs": "run"}.get(unit, unit), unit)


def interval_cell(ratio: Ratio) -> str:
    return (
        f"{significant(ratio.value)} ({significant(ratio.low)}–{significant(ratio.high)})"
        if ratio.has_interval
        else f"{significant(ratio.value)} ({NO_INTERVAL})"
    )


def distinguishable_cell(ratio: Ratio) -> str:
    return NO_INTERVAL if ratio.distinguishable is None else "yes" if ratio.distinguishable else "no"


def matters_cell(ratio: Ratio) -> str:
    return "yes" if ratio.matters else "no"


def label(operation: str, extra: str = "") -> str:
    return pretty(operation) + (f" ({extra})" if extra else "")


def percent(value: float) -> str:
    """A relative change as "+12.3%" or "−4.5%" (one sign, never "+-")."""
    if math.isnan(value):
        return NO_INTERVAL
    return f"{'+' if value >= 0 else '−'}{abs(value) * 100:.1f}%"
