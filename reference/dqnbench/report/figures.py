"""The report's figures, each rendered to PNG bytes and SVG text (no file is written here)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib
import PIL.Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure as MplFigure

from dqnbench.report.analysis import common_pass_drift, natural_key

# Fixed SVG ids and no timestamps: the same inputs give byte-identical figures. Text stays text in the SVG (a
# font of the reader's), so it stays small and searchable; DejaVu Sans is what matplotlib ships with.
matplotlib.rcParams.update({"svg.hashsalt": "dqnbench", "svg.fonttype": "none", "font.family": "DejaVu Sans"})
DPI = 90
# One colour per implementation in every figure (the Okabe-Ito palette, told apart by colour-blind readers too).
IMPL_COLOURS = {
    "reference": "#0072B2", "fast": "#D55E00", "fast-graphed": "#009E73", "fast-compiled": "#CC79A7",
}  # fmt: skip
_SPARE = ("#E69F00", "#56B4E9", "#F0E442", "#000000", "#999999")
OUTCOME_COLOURS = {"passed": "#55A868", "failed": "#C44E52", "skipped": "#C8C8C8", "absent": "#FFFFFF"}
OUTCOME_MARKS = {"passed": "✓", "failed": "✗", "skipped": "–", "absent": ""}
_PALETTE = matplotlib.colormaps["tab10"].colors  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Figure:
    """A rendered figure: `stem` names its files, `alt` describes it for readers who cannot see it."""

    stem: str
    alt: str
    png: bytes
    svg: str


def _render(fig: MplFigure, stem: str, alt: str, *, layout: bool = True) -> Figure:
    if layout:
        fig.tight_layout()
    png, svg = io.BytesIO(), io.StringIO()
    fig.savefig(png, format="png", dpi=DPI, metadata={"Software": None})
    fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return Figure(stem, alt, _palette_png(png.getvalue()), svg.getvalue())


def _palette_png(png: bytes) -> bytes:
    """The PNG with at most 256 colours: a chart has few, and an indexed PNG is a third of the size."""
    image = PIL.Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    image.quantize(256, method=PIL.Image.Quantize.MEDIANCUT, dither=PIL.Image.Dither.NONE).save(
        out, "PNG", optimize=True
    )
    return out.getvalue()


def pretty(operation: str) -> str:
    """`forward[batch_size=128]` → `forward, batch size 128`: the operation as a sentence can carry it."""
    base, _, params = operation.partition("[")
    words = [base.replace("_", " ").replace("-", " ")]
    words += [p.replace("_", " ").replace("=", " ") for p in params.rstrip("]").split(", ") if p]
    return ", ".join(words)


def significant(value: float) -> str:
    """Three significant digits, trailing zeros kept ("3.00", "23.4", "512")."""
    return f"{value:#.3g}".rstrip(".") if abs(value) < 1000 else f"{value:,.0f}"


def format_seconds(seconds: float) -> str:
    """A time in the unit that keeps 1 to 3 digits before the point (ns, µs, ms, s); zero is plain "0"."""
    if seconds == 0:
        return "0"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(seconds) >= scale:
            return f"{significant(seconds / scale)} {unit}"
    return f"{significant(seconds * 1e9)} ns"


_SECONDS = matplotlib.ticker.FuncFormatter(lambda value, _pos: format_seconds(value))


def impl_colour(impl: str, others: list[str] | None = None) -> str:
    """The implementation's colour: fixed for the suite's own, else a spare one by its rank in `others`."""
    if impl in IMPL_COLOURS:
        return IMPL_COLOURS[impl]
    extra = sorted(i for i in (others or [impl]) if i not in IMPL_COLOURS)
    return _SPARE[(extra.index(impl) if impl in extra else 0) % len(_SPARE)]


_LOG2_TICKS = [2.0**k for k in range(-6, 8)]
_POINTS = 400


def _thin(steps: np.ndarray, means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most `_POINTS` points of a smooth curve: more cost drawing time and file size and show nothing more."""
    if len(steps) <= _POINTS:
        return steps, means
    keep = np.unique(np.linspace(0, len(steps) - 1, _POINTS).round().astype(int))
    return steps[keep], means[keep]


def _ratio_label(value: float) -> str:
    return f"×{value:g}" if value >= 1 else f"×1/{1 / value:g}"


def forest_figure(table: pd.DataFrame, facet: list[str], label: pd.Series, stem: str, what: str) -> Figure:
    """Speed-ups as a forest plot: one row per comparison, the ratio on a log2 axis (1 = as fast), whiskers
    for the 95% interval (a hollow marker where there is none), the shaded band for ratios within the
    threshold; one facet per `facet` values (machine and device, or machine and implementation)."""
    groups = list(table.groupby(facet, sort=False))
    sizes = [len(rows) for _, rows in groups]
    fig, axes = plt.subplots(
        len(groups), 1, figsize=(8.4, 0.9 + 0.3 * sum(sizes) + 0.5 * len(groups)), squeeze=False,
        gridspec_kw={"height_ratios": [s + 1.2 for s in sizes]}, sharex=True,
    )  # fmt: skip
    finite = table[["ratio", "low", "high"]].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite) & (finite > 0)]
    lo, hi = min(finite.min(), 0.5) / 1.3, max(finite.max(), 2.0) * 1.3
    for ax, (key, rows) in zip(axes[:, 0], groups, strict=True):
        y = np.arange(len(rows))
        threshold = float(rows["threshold"].iloc[0])
        ax.axvspan(1 / (1 + threshold), 1 + threshold, color="#EEEEEE", zorder=0)
        ax.axvline(1, color="#555555", lw=0.8, zorder=1)
        for yi, row in zip(y, rows.itertuples(index=False), strict=True):
            colour = impl_colour(str(row.impl if hasattr(row, "impl") else row.candidate))
            if np.isfinite(row.low):
                ax.plot([row.low, row.high], [yi, yi], color=colour, lw=1.6, zorder=2)
            filled = bool(np.isfinite(row.low))
            ax.plot(row.ratio, yi, "o", color=colour, mfc=colour if filled else "white", ms=5.5, zorder=3)
        ax.set_yticks(y, list(label.loc[rows.index]), fontsize=8)
        ax.set_ylim(len(rows) - 0.4, -0.6)
        ax.set_title(" · ".join(map(str, key if isinstance(key, tuple) else (key,))), fontsize=9, loc="left")
        ax.set_xscale("log", base=2)
        ax.set_xlim(lo, hi)
        ax.grid(axis="x", alpha=0.3)
    axis = axes[-1, 0]
    axis.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(_LOG2_TICKS))
    axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: _ratio_label(v)))
    axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axis.set_xlabel(f"{what} (log2 axis; grey band: within the threshold; hollow: no interval)", fontsize=9)
    return _render(fig, stem, f"Forest plot of {what} with 95% intervals")


_SLOWER, _FASTER = "#d62728", "#2ca02c"
"""Edge colours of a change point's marker: the direction of the step."""


def history_figure(
    trend: pd.DataFrame, commits: dict[str, list[str]], breaks: dict[str, list[int]], marks: pd.DataFrame
) -> Figure:
    """Small multiples, one panel per machine, device and operation: each implementation's median per commit
    (x: the machine's commits in the order first measured, at most 8 labelled), one colour per implementation in
    every panel; a change point (`marks`: machine, operation, device, impl, commit first after it, slower) is ▼ with
    a red edge (slower) or ▲ with a green edge (faster), dashed lines machine changes (the line breaks there)."""
    panels = sorted(
        {(m, d, o) for m, d, o in zip(trend["machine"], trend["device"], trend["operation"], strict=True)},
        key=lambda p: (p[0], p[1], natural_key(p[2])),
    )
    impls = sorted(trend["impl"].unique())
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.1 * rows + 0.6), squeeze=False)
    for ax, (machine, device, operation) in zip(axes.flat, panels, strict=False):
        order = commits[machine]
        points = trend[(trend["machine"] == machine) & (trend["device"] == device) & (trend["operation"] == operation)]
        for impl, runs in points.groupby("impl", sort=True):
            per_commit = runs.groupby("commit", sort=False)["median"].median()
            x = np.array([order.index(c) for c in per_commit.index], dtype=float)
            sort = np.argsort(x)
            x, y = x[sort], per_commit.to_numpy()[sort]
            for cut in breaks.get(machine, []):  # no line across a machine change
                if ((x < cut).any()) and ((x >= cut).any()):
                    i = int(np.searchsorted(x, cut))
                    x, y = np.insert(x, i, np.nan), np.insert(y, i, np.nan)
            colour = impl_colour(str(impl), impls)
            ax.plot(x, y, color=colour, lw=1.2, marker="o", ms=2.2, label=str(impl), rasterized=len(x) > 40)
            here = marks[(marks["machine"] == machine) & (marks["device"] == device)
                         & (marks["operation"] == operation) & (marks["impl"] == impl)]  # fmt: skip
            for slower, marker, edge in ((True, "v", _SLOWER), (False, "^", _FASTER)):
                hit = here[here["slower"] == slower]["commit"]
                if len(hit):
                    ax.plot([order.index(c) for c in hit], per_commit[hit].to_numpy(), marker, color=colour, ms=7,
                            mec=edge, mew=1.4, ls="none")  # fmt: skip
        for cut in breaks.get(machine, []):
            ax.axvline(cut - 0.5, color="#777777", ls="--", lw=0.9)
        ticks = np.unique(np.linspace(0, len(order) - 1, min(len(order), 7)).round().astype(int))
        ax.set_xticks(ticks, [order[t][:7] for t in ticks])
        ax.set_xlim(-0.5, len(order) - 0.5)
        ax.tick_params(axis="x", labelsize=6.5, rotation=45)
        ax.tick_params(axis="y", labelsize=7)
        ax.yaxis.set_major_formatter(_SECONDS)
        ax.set_title(f"{pretty(operation)} · {device} · {machine}", fontsize=8)
        ax.grid(alpha=0.25)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    handles = [matplotlib.lines.Line2D([], [], color=impl_colour(i, impls), lw=2, label=i) for i in impls]
    handles += [
        matplotlib.lines.Line2D([], [], marker="v", ls="none", color="grey", mec=_SLOWER, mew=1.4, label="slower step"),
        matplotlib.lines.Line2D([], [], marker="^", ls="none", color="grey", mec=_FASTER, mew=1.4, label="faster step"),
        matplotlib.lines.Line2D([], [], ls="--", color="#777777", label="machine changed"),
    ]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8, frameon=False)
    # Fixed margins: tight_layout over dozens of panels costs seconds and gains nothing on a regular grid.
    height = 2.1 * rows + 0.6
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.6 / height, top=1 - 0.5 / height, wspace=0.32, hspace=0.75)
    return _render(
        fig, "history", "Median time per commit of each benchmark and implementation, per machine", layout=False
    )


def learning_figure(
    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]],
    iqms: dict[str, tuple[np.ndarray, np.ndarray]],
    labels: dict[str, str],
    threshold: float,
    window: int,
    stem: str = "learning_curves",
) -> Figure:
    """Running means against environment steps: each seed thin, the IQM over seeds thick, one colour per
    configuration (the first highlighted); the dashed line is the threshold. Dense lines are rasterised."""
    fig, ax = plt.subplots(figsize=(8.4, 4.2))
    colours = ["#D55E00", "#0072B2", "#009E73", "#CC79A7"]
    for index, sweep in enumerate(curves):
        colour = colours[index % len(colours)]
        for steps, means in curves[sweep]:
            ax.plot(*_thin(steps, means), color=colour, alpha=0.45, lw=0.7, rasterized=True)
        grid, centre = iqms[sweep]
        ax.plot(grid, centre, color=colour, lw=2.4, label=labels[sweep])
    ax.axhline(threshold, color="grey", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set(xlabel="environment steps", ylabel=f"{window}-episode running mean duration")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: f"{v / 1000:g}k"))
    ax.grid(alpha=0.25)
    ax.legend(loc="upper left", fontsize=8)
    return _render(fig, stem, "Learning curves against environment steps: per seed and their IQM")


def learning_grid_figure(
    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]], titles: dict[str, str], threshold: float, window: int
) -> Figure:
    """Appendix: one small panel per other configuration, its seeds' running means against environment steps."""
    names = list(curves)
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.6 * cols, 2.0 * rows + 0.3), squeeze=False, sharex=True, sharey=True
    )
    for ax, sweep in zip(axes.flat, names, strict=False):
        for steps, means in curves[sweep]:
            ax.plot(*_thin(steps, means), color="#555555", lw=0.7, rasterized=True)
        ax.axhline(threshold, color="grey", ls="--", lw=0.8)
        ax.set_title(titles[sweep], fontsize=7)
        ax.tick_params(labelsize=6.5)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: f"{v / 1000:g}k"))
        ax.grid(alpha=0.25)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    fig.supxlabel("environment steps", fontsize=8)
    fig.supylabel(f"{window}-episode running mean", fontsize=8)
    return _render(fig, "learning_appendix", "Learning curves of the other configurations, one panel each")


def drift_figure(drift: pd.DataFrame) -> Figure:
    """One panel per machine: each benchmark's pass medians against its run median (thin), and their median over
    the benchmarks (thick): a pass in which everything was slower is the machine, not the code."""
    machines = sorted(drift["machine"].unique())
    common_by_machine = common_pass_drift(drift)
    fig, axes = plt.subplots(1, len(machines), figsize=(6.4 * len(machines), 3.6), squeeze=False)
    for ax, machine in zip(axes.flat, machines, strict=True):
        run = drift[drift["machine"] == machine]
        for _, passes in run.groupby(["operation", "device", "impl"], sort=True):
            ax.plot(passes["pass"], passes["relative"] - 1, color=_SPARE[4], alpha=0.45, lw=1)
        common = common_by_machine.loc[machine]
        ax.plot(common.index, common.to_numpy(), color="black", lw=2.5, marker="o", label="median over benchmarks")
        for bound in (-0.1, 0.1):
            ax.axhline(bound, color="#888888", lw=0.8, ls="--")
        ax.axhline(0, color="#888888", lw=0.8)
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
        ax.set_xticks(sorted(run["pass"].unique()))
        ax.set_xlabel("pass")
        ax.set_ylabel("pass median vs run median")
        when = run["datetime"].iloc[0]
        ax.set_title(f"{machine} · {when:%Y-%m-%d %H:%M} · {str(run['commit'].iloc[0])[:7]}", fontsize=9)
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7, loc="upper right")
    return _render(fig, "passes", "Each benchmark's pass medians relative to its median over the run, per machine")


def conformance_figure(matrix: pd.DataFrame) -> Figure:
    """Check × implementation grid coloured by outcome."""
    checks, impls = list(matrix.index), list(matrix.columns)
    # Column labels carry the tally and wrap at spaces, so long names such as "stable-baselines3 2.9.2" fit.
    labels = [
        "\n".join(str(impl).split(" "))
        + "\n"
        + " ".join(
            f"{(matrix[impl] == outcome).sum()}{OUTCOME_MARKS[outcome]}" for outcome in ("passed", "failed", "skipped")
        )
        for impl in impls
    ]
    column = max(1.3, 0.085 * max(len(part) for impl in impls for part in str(impl).split(" ")))
    fig, ax = plt.subplots(figsize=(2.6 + column * len(impls), 1.4 + 0.3 * len(checks)))
    codes = {name: i for i, name in enumerate(OUTCOME_COLOURS)}
    grid = matrix.apply(lambda column: column.map(codes)).to_numpy(dtype=float)
    cmap = matplotlib.colors.ListedColormap(list(OUTCOME_COLOURS.values()))
    ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=len(OUTCOME_COLOURS) - 0.5, aspect="auto")
    for (row, col), outcome in np.ndenumerate(matrix.to_numpy()):
        ax.text(col, row, OUTCOME_MARKS[outcome], ha="center", va="center", fontsize=10, color="black")
    ax.set_xticks(np.arange(len(impls)), labels, fontsize=9)
    ax.xaxis.tick_top()
    ax.set_yticks(np.arange(len(checks)), checks, fontsize=8)
    ax.set_xticks(np.arange(len(impls) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(len(checks) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    return _render(fig, "conformance", "Conformance matrix: checks by implementation, passed, failed or skipped")
