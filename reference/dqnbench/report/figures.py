"""The report's figures, each rendered to PNG bytes and SVG text (no file is written here)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure as MplFigure

from dqnbench.report.analysis import bootstrap_band, common_pass_drift, natural_key, running_mean_matrix

# Fixed SVG ids and no timestamps: the same inputs give byte-identical figures.
matplotlib.rcParams["svg.hashsalt"] = "dqnbench"
DEVICE_COLOURS = {"cpu": "#4C72B0", "cuda": "#55A868"}
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


def _render(fig: MplFigure, stem: str, alt: str) -> Figure:
    fig.tight_layout()
    png, svg = io.BytesIO(), io.StringIO()
    fig.savefig(png, format="png", dpi=110, metadata={"Software": None})
    fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return Figure(stem, alt, png.getvalue(), svg.getvalue())


def _error(median: pd.Series, q1: pd.Series, q3: pd.Series) -> np.ndarray:
    return np.vstack([(median - q1).clip(lower=0).to_numpy(), (q3 - median).clip(lower=0).to_numpy()])


def _seconds_x_axis(ax: Axes) -> None:
    """Log time axis labelled in the unit that suits the data: bars spanning 10 µs to 30 ms stay readable."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(_SECONDS)
    ax.grid(axis="x", which="both", alpha=0.25)


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


def _bar_height(rows: float) -> float:
    return 1.6 + 0.45 * rows


def device_figure(table: pd.DataFrame, label: pd.Series) -> Figure:
    """Horizontal bars of CPU and CUDA medians per operation, IQR as error bars, speed-up written beside."""
    fig, ax = plt.subplots(figsize=(9, _bar_height(2 * len(table))))
    y = np.arange(len(table))
    for offset, device in ((-0.2, "cpu"), (0.2, "cuda")):
        median = table[f"{device}_median"]
        ax.barh(
            y + offset,
            median,
            height=0.38,
            color=DEVICE_COLOURS[device],
            label=device.upper(),
            xerr=_error(median, table[f"{device}_q1"], table[f"{device}_q3"]),
            capsize=3,
        )
    for yi, (cpu, ratio) in enumerate(zip(table["cpu_median"], table["ratio"], strict=True)):
        ax.annotate(f"×{significant(ratio)}", (cpu, yi - 0.2), xytext=(6, -3), textcoords="offset points", fontsize=8)
    ax.set_yticks(y, label.tolist())
    ax.invert_yaxis()
    _seconds_x_axis(ax)
    ax.set(xlabel="median time per call (error bars: interquartile range; ×: CUDA speed-up)")
    _legend_above(ax, 2)
    return _render(fig, "cpu_vs_cuda", "Bar chart of CPU and CUDA median times per operation")


def _legend_above(ax: Axes, columns: int) -> None:
    # Inside the axes the legend covered the last bars and their speed-up labels.
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=columns, frameon=False)


def implementation_figure(
    latest: pd.DataFrame, label_of: dict[tuple[str, str, str], str], impls: list[str], ratios: pd.DataFrame
) -> Figure:
    """Grouped horizontal bars: one group per (machine, operation, device), one bar per implementation, each
    non-baseline bar labelled with its speed-up over the baseline (`impls[0]`) from `ratios`."""
    keys = sorted(label_of, key=lambda key: (key[0], natural_key(key[1]), key[2]))
    fig, ax = plt.subplots(figsize=(9, _bar_height(len(keys) * max(len(impls), 2) / 1.6)))
    width = 0.8 / len(impls)
    for index, impl in enumerate(impls):
        rows = latest[latest["impl"] == impl].set_index(["machine", "operation", "device"])
        present = [k for k in keys if k in rows.index]
        y = np.array([keys.index(k) for k in present]) - 0.4 + width * (index + 0.5)
        sub = rows.loc[present]
        ax.barh(
            y,
            sub["median"],
            height=width * 0.95,
            color=_PALETTE[index % len(_PALETTE)],
            label=impl,
            xerr=_error(sub["median"], sub["q1"], sub["q3"]),
            capsize=2,
        )
        speedups = ratios[ratios["impl"] == impl].set_index(["machine", "operation", "device"])["ratio"]
        for yi, key, q3 in zip(y, present, sub["q3"], strict=True):
            if key in speedups.index:
                ax.annotate(
                    f"×{significant(speedups[key])}", (q3, yi), xytext=(4, -3), textcoords="offset points", fontsize=8
                )
    ax.set_yticks(np.arange(len(keys)), [label_of[k] for k in keys])
    ax.invert_yaxis()
    _seconds_x_axis(ax)
    ax.set(xlabel=f"median time per call (error bars: interquartile range; ×: speed-up over {impls[0]})")
    _legend_above(ax, len(impls))
    return _render(fig, "implementations", "Bar chart of median times per implementation and operation")


def history_figure(trend: pd.DataFrame) -> Figure:
    """Small multiples, one panel per operation and device: each implementation's (and machine's) median over
    the runs with its IQR band; regressions red ▼, improvements green ▲. Runs share one x position per time."""
    panels = sorted(
        {(o, d) for o, d in zip(trend["operation"], trend["device"], strict=True)},
        key=lambda pair: (natural_key(pair[0]), pair[1]),
    )
    several_machines = trend["machine"].nunique() > 1
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.0 * rows), squeeze=False)
    for ax, (operation, device) in zip(axes.flat, panels, strict=False):
        points = trend[(trend["operation"] == operation) & (trend["device"] == device)].sort_values("datetime")
        times = sorted(points["datetime"].unique())
        lines = points.groupby(["impl", "machine"], sort=True)
        for index, ((impl, machine), runs) in enumerate(lines):
            x = np.array([times.index(t) for t in runs["datetime"]])
            colour = _PALETTE[index % len(_PALETTE)]
            ax.fill_between(x, runs["q1"], runs["q3"], color=colour, alpha=0.18, linewidth=0)
            label = f"{impl} on {machine}" if several_machines else str(impl)
            ax.plot(x, runs["median"], marker="o", color=colour, label=label, markersize=4)
            for change, mark_colour, marker in (("regression", "#C44E52", "v"), ("improvement", "#55A868", "^")):
                hit = (runs["change"] == change).to_numpy()
                ax.scatter(
                    x[hit],
                    runs["median"].to_numpy()[hit],
                    s=70,
                    color=mark_colour,
                    marker=marker,
                    zorder=3,
                    label=change if hit.any() else None,
                )
        first = points.drop_duplicates("datetime")
        ax.set_xticks(
            np.arange(len(times)),
            [f"{c[:7]}\n{d:%m-%d %H:%M}" for c, d in zip(first["commit"], first["datetime"], strict=True)],
            fontsize=7,
        )
        ax.set_title(f"{pretty(operation)} · {device}", fontsize=9)
        positive = points["q1"][points["q1"] > 0]
        if len(positive) and points["q3"].max() / positive.min() > 20:
            ax.set_yscale("log")  # lines an order of magnitude apart would otherwise flatten to the axis
        ax.yaxis.set_major_formatter(_SECONDS)
        ax.grid(alpha=0.25)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))  # one legend entry per label
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="best")
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    return _render(fig, "history", "Median time of each benchmark over successive runs, regressions marked")


def drift_figure(drift: pd.DataFrame) -> Figure:
    """One panel per machine: each benchmark's pass medians against its run median (thin), and their median over
    the benchmarks (thick): a pass in which everything was slower is the machine, not the code."""
    machines = sorted(drift["machine"].unique())
    common_by_machine = common_pass_drift(drift)
    fig, axes = plt.subplots(1, len(machines), figsize=(6.4 * len(machines), 3.6), squeeze=False)
    for ax, machine in zip(axes.flat, machines, strict=True):
        run = drift[drift["machine"] == machine]
        for index, (_, passes) in enumerate(run.groupby(["operation", "device", "impl"], sort=True)):
            ax.plot(passes["pass"], passes["relative"] - 1, color=_PALETTE[index % len(_PALETTE)], alpha=0.45, lw=1)
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


def learning_figure(training: pd.DataFrame, window: int = 100, threshold: float = 195.0) -> Figure:
    """Per-seed running means (thin), their mean over seeds (thick) and a 95% bootstrap band, one colour per
    sweep; the raw episode durations of every seed faintly behind."""
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for index, sweep in enumerate(sorted(training["sweep"].unique())):
        colour = _PALETTE[index % len(_PALETTE)]
        for _, seed_run in training[training["sweep"] == sweep].groupby("seed", sort=True):
            ordered = seed_run.sort_values("episode")
            ax.plot(ordered["episode"], ordered["duration"], color=colour, alpha=0.12, linewidth=0.6)
        episodes, matrix = running_mean_matrix(training, sweep, window)
        mean, low, high = bootstrap_band(matrix)
        for curve in matrix:
            ax.plot(episodes, curve, color=colour, alpha=0.45, linewidth=0.8)
        ax.fill_between(episodes, low, high, color=colour, alpha=0.25, linewidth=0)
        ax.plot(episodes, mean, color=colour, linewidth=2.2, label=f"{sweep} ({matrix.shape[0]} seeds)")
    ax.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set(xlabel="episode", ylabel=f"duration (steps); thick: {window}-episode mean over seeds")
    ax.grid(alpha=0.25)
    ax.legend(loc="upper left", fontsize=8)
    return _render(fig, "learning_curves", "Learning curves: episode durations and their running mean per seed")


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
