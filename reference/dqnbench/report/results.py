"""The report's sections: tables, figures and the "Results" prose, every sentence computed from the numbers.

The register is a research paper's (Academic Phrasebank: "Table 1 compares…", "As Figure 2 shows…"): each
comparison states its 95% interval and how it was obtained, and says when a difference is within noise.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dqnbench.bench.compare import FEW_ROUNDS, Thresholds, Verdict
from dqnbench.report import analysis, figures
from dqnbench.report.analysis import Ratio
from dqnbench.report.figures import Figure, format_seconds, pretty
from dqnbench.report.figures import significant as _number
from dqnbench.report.load import Inputs


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
    """A part of the report; `results` sections are grouped under one "Results" heading."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    figures: list[NumberedFigure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    results: bool = True


@dataclass
class Numbering:
    """Figures and tables are numbered in the order the report presents them."""

    figures: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    tables: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def figure(self) -> int:
        return next(self.figures)

    def table(self) -> int:
        return next(self.tables)


# ---- phrases -------------------------------------------------------------------------------------------------


def count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def listing(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]


def interval(low: float, high: float, digits: Callable[[float], str] = _number) -> str:
    return f"95% CI {digits(low)}–{digits(high)}"


def verdict(ratio: Ratio, faster: str = "faster", slower: str = "slower") -> str:
    if ratio.within_noise:
        return "within noise"
    return faster if ratio.value > 1 else slower


def comparison(ratio: Ratio, other: str, other_noun: str | None = None) -> str:
    """'is 4.2 times faster (95% CI 3.9–4.6) than OTHER', or the within-noise form with its reason.

    `other_noun` names the other side as a noun for the within-noise form ("the CPU timing" where `other` is
    "on the CPU"); it defaults to `other`.
    """
    if ratio.within_noise:
        reason = (
            f"fewer than {FEW_ROUNDS} rounds, too few to measure a spread"
            if ratio.few_rounds
            else "the interquartile ranges overlap"
            if ratio.iqr_overlap
            else "the interval includes 1"
        )
        return (
            # A within-noise ratio can still be far from 1 (a wide interval); calling that "as fast" misleads.
            f"cannot be told apart from {other_noun or other} beyond the measurement noise "
            f"(median ratio {_number(ratio.value)}, {interval(ratio.low, ratio.high)}; {reason})"
        )
    if ratio.value > 1:
        return f"is {_number(ratio.value)} times faster ({interval(ratio.low, ratio.high)}) than {other}"
    return f"is {_number(1 / ratio.value)} times slower ({interval(1 / ratio.high, 1 / ratio.low)}) than {other}"


def method_sentence(methods: pd.Series) -> str:
    raw = int((methods == "raw").sum())
    total = len(methods)
    source = (
        "from the raw per-round timings (saved with --benchmark-save-data)"
        if raw == total
        else "from each benchmark's median, interquartile range and round count, as the raw timings were not saved "
        "(pass --benchmark-save-data to bootstrap from them); such intervals assume independent rounds and are "
        "optimistic"
        if raw == 0
        else f"from the raw timings for {raw} of the {total} comparisons and from the interquartile range for the rest"
    )
    return (
        f"Intervals are 95% percentile-bootstrap intervals ({analysis.BOOTSTRAP_SAMPLES} resamples) of the ratio "
        f"of medians, computed {source}; a difference counts as noise when the interval includes 1, when the two "
        f"interquartile ranges overlap, or when either side has fewer than {FEW_ROUNDS} rounds."
    )


def spread(median: float, q1: float, q3: float) -> str:
    return f"{format_seconds(median)} [{format_seconds(q1)}–{format_seconds(q3)}]"


def _optional_seconds(value: float) -> str:
    return "not recorded" if math.isnan(value) else format_seconds(value)


def _label(row: pd.Series, columns: Sequence[str], varying: Callable[[str], bool]) -> str:
    """A row's display name: its operation plus whichever other key columns take several values."""
    extra = [str(row[c]) for c in columns if varying(c)]
    return pretty(str(row["operation"])) + (f" ({', '.join(extra)})" if extra else "")


def _varies(frame: pd.DataFrame) -> Callable[[str], bool]:
    return lambda column: frame[column].nunique() > 1


def _tally(frame: pd.DataFrame, who: str, against: str) -> str:
    """'X was faster beyond noise in 3 of 5 comparisons (…), slower in 1 (…), and within noise in 1 (…)',
    naming the rows by their `label` column."""
    faster = frame[~frame["within_noise"] & (frame["ratio"] > 1)]
    slower = frame[~frame["within_noise"] & (frame["ratio"] < 1)]
    noise = frame[frame["within_noise"]]
    parts = []
    if len(faster):
        low, high = _number(faster["ratio"].min()), _number(faster["ratio"].max())
        factors = f"by a factor of {low}" if low == high else f"by factors from {low} to {high}"
        parts.append(f"faster beyond noise in {len(faster)} of {len(frame)} comparisons ({factors})")
    if len(slower):
        parts.append(f"slower in {len(slower)} ({listing(list(slower['label']))})")
    if len(noise):
        parts.append(f"within noise in {len(noise)} ({listing(list(noise['label']))})")
    return f"Compared with {against}, {who} was {listing(parts)}."


# ---- sections ------------------------------------------------------------------------------------------------


def device_section(bench: pd.DataFrame, numbering: Numbering) -> Section:
    section = Section("CPU and CUDA")
    table = analysis.device_comparison(bench)
    if table.empty:
        if (bench["device"] == "cuda").any():
            section.paragraphs.append(
                "CUDA measurements were supplied, but none matches a CPU measurement of the same operation and "
                "implementation on the same machine, so the two devices could not be compared."
            )
        else:
            machines = listing(sorted(bench["machine"].unique()))
            section.paragraphs.append(
                f"No CUDA run was among the inputs (all measurements came from the CPU of {machines}), so the CPU "
                "and CUDA timings could not be compared; a benchmark run on a machine with a GPU "
                "(`tox -e bench` there) supplies them."
            )
        return section
    varying = _varies(table)
    labels = table.apply(lambda r: _label(r, ["machine", "impl"], varying), axis=1)
    fig_no, tab_no = numbering.figure(), numbering.table()
    section.figures.append(
        NumberedFigure(
            fig_no,
            "Median time per call on the CPU and on CUDA; error bars span the interquartile range, and the "
            "number beside each pair is CUDA's speed-up.",
            functools.partial(figures.device_figure, table, labels),
        )
    )
    section.tables.append(
        Table(
            tab_no,
            "CPU and CUDA medians [interquartile range] and CUDA's speed-up (CPU median / CUDA median).",
            ["Operation", "CPU", "CUDA", "Speed-up (95% CI)", "Verdict"],
            [
                [
                    label,
                    spread(r.cpu_median, r.cpu_q1, r.cpu_q3),
                    spread(r.cuda_median, r.cuda_q1, r.cuda_q3),
                    f"{_number(r.ratio)} ({_number(r.low)}–{_number(r.high)})",
                    verdict(_as_ratio(r), "CUDA faster", "CUDA slower"),
                ]
                for label, r in zip(labels, table.itertuples(), strict=True)
            ],
        )
    )
    paragraphs = [
        f"Table {tab_no} compares the median time per call on the CPU and on CUDA for "
        f"{count(len(table), 'operation')} measured on both devices; Figure {fig_no} plots these medians with their "
        "interquartile ranges. " + _tally(table.assign(label=labels), "CUDA", "the CPU")
    ]
    best = table.loc[table["ratio"].idxmax()]
    lead = f"As Figure {fig_no} shows, the CUDA {labels[best.name]} "
    paragraphs.append(
        lead
        + comparison(_as_ratio(best), "on the CPU", "the CPU timing")
        + f" (median {format_seconds(best['cuda_median'])} against {format_seconds(best['cpu_median'])})."
    )
    worst = table.loc[table["ratio"].idxmin()]
    if _number(worst["ratio"]) != _number(best["ratio"]):
        paragraphs[-1] += (
            f" At the other end, the CUDA {labels[worst.name]} "
            + comparison(_as_ratio(worst), "on the CPU", "the CPU timing")
            + f" (median {format_seconds(worst['cuda_median'])} against {format_seconds(worst['cpu_median'])})."
        )
    paragraphs.append(method_sentence(table["method"]))
    section.paragraphs.extend(paragraphs)
    return section


def _as_ratio(row: pd.Series | tuple[object, ...]) -> Ratio:
    get = row.__getitem__ if isinstance(row, pd.Series) else lambda key: getattr(row, key)
    return Ratio(
        float(get("ratio")),
        float(get("low")),
        float(get("high")),
        get("method"),
        bool(get("iqr_overlap")),
        bool(get("few_rounds")),
    )


def implementation_section(bench: pd.DataFrame, numbering: Numbering) -> Section:
    section = Section("Implementations side by side")
    table = analysis.implementation_comparison(bench)
    impls = sorted(bench["impl"].unique())
    if table.empty:
        section.paragraphs.append(
            f"Only the {listing(impls)} implementation was measured"
            if len(impls) == 1
            else f"The implementations {listing(impls)} were never measured on the same operation, device and machine"
        )
        section.paragraphs[-1] += (
            ", so no implementations could be compared (`--dqn-impl` adds one to a benchmark run)."
        )
        return section
    varying = _varies(table)
    labels = table.apply(lambda r: _label(r, ["machine", "device"], varying), axis=1)
    newest = analysis.latest(bench)
    compared = table[["machine", "operation", "device"]].drop_duplicates()
    shown = newest.merge(compared, on=["machine", "operation", "device"])
    label_of = {
        (m, o, d): _label(pd.Series({"operation": o, "machine": m, "device": d}), ["machine", "device"], _varies(shown))
        for m, o, d in compared.itertuples(index=False)
    }
    order = [
        analysis.baseline_implementation(impls),
        *[i for i in impls if i != analysis.baseline_implementation(impls)],
    ]
    fig_no, tab_no = numbering.figure(), numbering.table()
    section.figures.append(
        NumberedFigure(
            fig_no,
            "Median time per call of each implementation; error bars span the interquartile range, and the "
            f"number beside a bar is that implementation's speed-up over the {order[0]} (Table {tab_no}).",
            functools.partial(figures.implementation_figure, shown, label_of, order, table),
        )
    )
    section.tables.append(
        Table(
            tab_no,
            "Each implementation against the baseline: medians [interquartile range] and the ratio "
            "baseline median / implementation median (above 1: faster than the baseline). First call: the "
            "untimed first call of each (lazy set-up and any torch.compile compilation), baseline / implementation.",
            ["Operation", "Baseline", "Implementation", "Ratio (95% CI)", "Verdict", "First call"],
            [
                [
                    label,
                    f"{r.baseline}: {spread(r.baseline_median, r.baseline_q1, r.baseline_q3)}",
                    f"{r.impl}: {spread(r.median, r.q1, r.q3)}",
                    f"{_number(r.ratio)} ({_number(r.low)}–{_number(r.high)})",
                    verdict(_as_ratio(r)),
                    f"{_optional_seconds(r.baseline_first_call)} / {_optional_seconds(r.first_call)}",
                ]
                for label, r in zip(labels, table.itertuples(), strict=True)
            ],
        )
    )
    baseline = str(table["baseline"].iloc[0])
    paragraphs = [
        f"Table {tab_no} sets the {listing(sorted(table['impl'].unique()))} "
        f"{'implementation' if table['impl'].nunique() == 1 else 'implementations'} side by side with the "
        f"{baseline} implementation on {count(len(compared), 'operation')}, and Figure {fig_no} shows their medians."
    ]
    for impl, rows in table.assign(label=labels).groupby("impl", sort=True):
        sentence = _tally(rows, impl, f"the {baseline}")
        best = rows.loc[np.log(rows["ratio"]).abs().idxmax()]
        sentence += (
            f" The largest difference is in {best['label']}, where {impl} "
            + comparison(
                _as_ratio(best),
                f"the {baseline} ({format_seconds(best['median'])} against {format_seconds(best['baseline_median'])})",
            )
            + "."
        )
        paragraphs.append(sentence)
    paragraphs.append(method_sentence(table["method"]))
    section.paragraphs.extend(paragraphs)
    return section


def history_section(bench: pd.DataFrame, numbering: Numbering, limits: Thresholds) -> Section:
    section = Section("History")
    trend = analysis.history(bench, limits)
    trend = trend.assign(
        series=[
            f"{pretty(o)} · {d} · {i}"
            for o, d, i in zip(trend["operation"], trend["device"], trend["impl"], strict=True)
        ]
    )
    runs_per_series = trend.groupby(["series", "machine"])["datetime"].transform("size")
    trend = trend[runs_per_series >= 2]
    if trend.empty:
        section.paragraphs.append(
            f"Every benchmark was measured in a single run ({count(bench['source'].nunique(), 'file')} read), so no "
            "trend can be drawn; each `tox -e bench` adds a run to the history store (reports/history)."
        )
        return section
    fig_no = numbering.figure()
    section.figures.append(
        NumberedFigure(
            fig_no,
            "Median time of each benchmark over successive runs (commit and UTC date below each point); the "
            "band spans the interquartile range; downward red triangles mark regressions, upward green ones "
            "improvements.",
            functools.partial(figures.history_figure, trend),
        )
    )
    first, last = trend["datetime"].min(), trend["datetime"].max()
    runs = trend.groupby("machine")["datetime"].nunique()
    paragraphs = [
        f"Figure {fig_no} traces the median time of "
        f"{count(trend['series'].nunique(), 'benchmark series', 'benchmark series')} "
        f"across {count(int(runs.sum()), 'run')} on {count(len(runs), 'machine')} between {first:%Y-%m-%d %H:%M} and "
        f"{last:%Y-%m-%d %H:%M} UTC. As in the regression gate (`tox -e compare`), a run counts as a regression "
        f"when its median exceeds that of the run before it on the same machine by more than the threshold "
        f"({_thresholds_text(limits)}) and its interquartile range lies wholly above the earlier one; an "
        "improvement is the mirror image."
    ]
    changed = trend[trend["change"] != ""]
    regressions = changed[changed["change"] == "regression"]
    steps = trend["step"].dropna()
    if regressions.empty:
        largest = trend.loc[steps.idxmax()] if len(steps) else None
        paragraphs.append(
            "By this criterion, no run was slower than its predecessor beyond the measured spread"
            + (
                f"; the largest rise between consecutive runs, {_percent(largest['step'])} in {largest['series']}, "
                + (
                    "is within the measured spread (the interquartile ranges overlap)."
                    if largest["verdict"] == str(Verdict.NOISE)
                    else f"stays below its {largest['threshold']:.0%} threshold."
                )
                if largest is not None and largest["step"] > 1
                else "."
            )
        )
    else:
        worst = regressions.loc[regressions["step"].idxmax()]
        paragraphs.append(
            f"By this criterion, {count(len(regressions), 'regression')} occurred "
            f"({listing(sorted(set(regressions['series'])))}); the largest, in {worst['series']} at commit "
            f"{worst['commit']}, raised the median by {_percent(worst['step'])}."
        )
    improvements = changed[changed["change"] == "improvement"]
    if len(improvements):
        paragraphs[-1] += f" {count(len(improvements), 'improvement')} beyond the spread also occurred."
    if len(changed):
        tab_no = numbering.table()
        section.tables.append(
            Table(
                tab_no,
                "Runs whose interquartile range does not overlap their predecessor's.",
                ["Series", "Machine", "Commit", "Date (UTC)", "Median", "Change", "Kind"],
                [
                    [
                        r.series,
                        r.machine,
                        r.commit,
                        f"{r.datetime:%Y-%m-%d %H:%M}",
                        format_seconds(r.median),
                        _percent(r.step),
                        r.change,
                    ]
                    for r in changed.itertuples()
                ],
            )
        )
        paragraphs[-1] += f" Table {tab_no} lists each."
    section.paragraphs.extend(paragraphs)
    return section


def passes_section(bench: pd.DataFrame, numbering: Numbering) -> Section:
    section = Section("Passes within a run")
    drift = analysis.pass_drift(bench)
    if drift.empty:
        section.paragraphs.append(
            "No run among the inputs was timed in passes (`pytest benchmarks --passes=N`, as `tox -e bench` runs "
            "it), so the report cannot show how the machine's speed moved during a run."
        )
        return section
    fig_no, tab_no = numbering.figure(), numbering.table()
    section.figures.append(
        NumberedFigure(
            fig_no,
            "Each benchmark's median in each pass against its median over the whole run (thin lines), and the "
            "median of those over the benchmarks (thick); dashed lines at ±10 %.",
            functools.partial(figures.drift_figure, drift),
        )
    )
    spreads = (
        drift.groupby(["machine", "operation", "device", "impl"], sort=False)
        .agg(median=("median", "first"), low=("relative", "min"), high=("relative", "max"))
        .reset_index()
        .assign(spread=lambda t: t["high"] / t["low"] - 1)
        .sort_values("spread", ascending=False, kind="stable")
    )
    varying = _varies(spreads)
    section.tables.append(
        Table(
            tab_no,
            "Per benchmark of the newest run in passes: its median over all passes, the lowest and highest pass "
            "median relative to it, and their spread (highest / lowest − 1), widest first.",
            ["Benchmark", "Implementation", "Median", "Pass medians", "Spread"],
            [
                [
                    _label(pd.Series(r._asdict()), ["machine", "device"], varying),
                    str(r.impl),
                    format_seconds(r.median),
                    f"{r.low - 1:+.1%} to {r.high - 1:+.1%}",
                    f"{r.spread:.1%}",
                ]
                for r in spreads.itertuples(index=False)
            ],
        )
    )
    common_by_machine = analysis.common_pass_drift(drift)
    for machine, run in drift.groupby("machine", sort=True):
        common = common_by_machine.loc[machine]
        worst = run.loc[(run["relative"] - 1).abs().idxmax()]
        passes = int(run["pass"].max())
        benchmarks = count(len(spreads[spreads["machine"] == machine]), "benchmark")
        section.paragraphs.append(
            f"The newest run timed in passes on {machine} ({run['datetime'].iloc[0]:%Y-%m-%d %H:%M} UTC, commit "
            f"{str(run['commit'].iloc[0])[:7]}) went over its {benchmarks} "
            f"{passes} times, and each benchmark's result pools all {passes} passes (Figure {fig_no}, Table {tab_no}). "
            f"Over the benchmarks, the median pass ran from {common.min():+.1%} (pass {int(common.idxmin())}) to "
            f"{common.max():+.1%} (pass {int(common.idxmax())}) of the run's medians; the largest single deviation "
            f"was {worst['relative'] - 1:+.1%}, {pretty(str(worst['operation']))} ({worst['impl']}, {worst['device']}) "
            f"in pass {int(worst['pass'])}. A pass in which most benchmarks were slower at once points at the "
            "machine, not at the code."
        )
    return section


def _thresholds_text(limits: Thresholds) -> str:
    text = f"{limits.default:.0%} by default"
    if limits.overrides:
        text += ", " + ", ".join(f"{limit:.0%} for `{pattern}`" for pattern, limit in limits.overrides)
    return text


def _percent(step: float) -> str:
    return f"{(step - 1) * 100:+.1f}%"


def learning_section(training: pd.DataFrame, numbering: Numbering, threshold: float, window: int) -> Section:
    section = Section("Learning curves")
    summary = analysis.learning_summary(training, threshold, window)
    fig_no, tab_no = numbering.figure(), numbering.table()
    section.figures.append(
        NumberedFigure(
            fig_no,
            f"Episode durations (faint), each seed's {window}-episode running mean (thin) and their mean over "
            "seeds (thick) with a 95% bootstrap band over seeds; the dashed line is the threshold.",
            functools.partial(figures.learning_figure, training, window, threshold),
        )
    )
    section.tables.append(
        Table(
            tab_no,
            f"Final {window}-episode mean duration (mean over seeds, 95% bootstrap CI over seeds) and the seeds "
            f"that reached {threshold:g}.",
            [
                "Configuration",
                "Seeds",
                "Episodes",
                "Final mean (95% CI)",
                "Reached threshold",
                "Median steps to threshold",
            ],
            [
                [
                    r.sweep,
                    str(r.seeds),
                    str(r.episodes),
                    f"{r.final_mean:.1f} ({r.final_low:.1f}–{r.final_high:.1f})",
                    f"{r.reached} of {r.seeds}",
                    f"{r.steps_to_threshold:,.0f}" if pd.notna(r.steps_to_threshold) else "—",
                ]
                for r in summary.itertuples()
            ],
        )
    )
    paragraphs = [
        f"Figure {fig_no} presents the learning curves of {count(len(summary), 'configuration')} "
        f"({count(int(summary['seeds'].sum()), 'seed')} in all), and Table {tab_no} summarises their final "
        f"{window}-episode mean durations."
    ]
    for r in summary.itertuples():
        if r.seeds > 1:
            uncertainty = f"({interval(r.final_low, r.final_high, lambda v: f'{v:.1f}')}, bootstrap over seeds"
            uncertainty += "; with so few seeds the interval is coarse)" if r.seeds < 5 else ")"
        else:
            uncertainty = "(a single seed, so no interval can be given)"
        reached = f"{r.reached} of {r.seeds} reached the {threshold:g}-step threshold" + (
            f", after a median of {r.steps_to_threshold:,.0f} environment steps"
            if pd.notna(r.steps_to_threshold)
            else ""
        )
        caveats = []
        if r.longest > r.episodes:
            caveats.append(f"its seeds ran {r.episodes} to {r.longest} episodes, so the curves are cut to the shortest")
        if r.episodes < window:
            caveats.append(f"with fewer than {window} episodes the mean is over all episodes run")
        paragraphs.append(
            f"For `{r.sweep}`, the {window}-episode mean duration after {r.episodes} episodes was {r.final_mean:.1f} "
            f"{uncertainty}; {reached}" + "".join(f"; {c}" for c in caveats) + "."
        )
    if len(summary) > 1:
        ranked = summary.sort_values("final_mean", ascending=False)
        top, runner = ranked.iloc[0], ranked.iloc[1]
        overlap = top["final_low"] <= runner["final_high"]
        paragraphs.append(
            f"`{top['sweep']}` ends higher than `{runner['sweep']}` ({top['final_mean']:.1f} against "
            f"{runner['final_mean']:.1f}); "
            + (
                "their intervals overlap, so this difference is within seed-to-seed variation."
                if overlap
                else "their intervals do not overlap, so the difference exceeds seed-to-seed variation."
            )
            + (
                f" The two ran for different numbers of episodes ({top['episodes']} and {runner['episodes']}), so "
                "their final means are not measured at the same point of training."
                if top["episodes"] != runner["episodes"]
                else ""
            )
        )
    section.paragraphs.extend(paragraphs)
    return section


def conformance_section(conformance: pd.DataFrame, numbering: Numbering) -> Section:
    section = Section("Conformance")
    matrix = analysis.conformance_matrix(conformance)
    fig_no = numbering.figure()
    section.figures.append(
        NumberedFigure(
            fig_no,
            "Conformance matrix: ✓ passed, ✗ failed, – skipped (with its reason in the run's output).",
            functools.partial(figures.conformance_figure, matrix),
        )
    )
    sentences = [
        f"Figure {fig_no} summarises the conformance of {count(len(matrix.columns), 'implementation')} against "
        f"{count(len(matrix), 'check')}."
    ]
    for impl in matrix.columns:
        outcomes = matrix[impl]
        failed = list(outcomes[outcomes == "failed"].index)
        skipped = int((outcomes == "skipped").sum())
        passed = int((outcomes == "passed").sum())
        ran = passed + len(failed)
        if not failed:
            text = f"`{impl}` passed all {ran} checks it ran" if ran else f"`{impl}` ran no check"
        else:
            text = f"`{impl}` passed {passed} of {ran} checks and failed {len(failed)} ({listing(failed)})"
        if skipped:
            text += f", skipping {count(skipped, 'check')} (a part it does not supply, or a check that cannot apply)"
        sentences.append(text + ".")
    newest = analysis.newest_conformance(conformance)
    failures = newest[newest["outcome"] == "failed"]
    if len(failures):
        tab_no = numbering.table()
        section.tables.append(
            Table(
                tab_no,
                "Failed conformance checks and their messages.",
                ["Implementation", "Check", "Message"],
                [[r.implementation, r.check, r.message] for r in failures.itertuples()],
            )
        )
        sentences.append(f"Table {tab_no} quotes the message of each failure.")
    section.paragraphs.append(" ".join(sentences))
    return section


def inputs_section(inputs: Inputs) -> Section:
    bench = inputs.benchmarks
    parts = [f"This report was generated from {count(len(inputs.files), 'result file')}"]
    if len(bench):
        parts.append(
            f"{count(len(bench), 'benchmark measurement')} from {count(bench['source'].nunique(), 'run')} on "
            f"{count(bench['machine'].nunique(), 'machine')} ({listing(sorted(bench['machine'].unique()))}), "
            f"pytest-benchmark {listing(sorted(bench['version'].unique()))}"
        )
    if len(inputs.conformance):
        parts.append(f"{count(inputs.conformance['implementation'].nunique(), 'conformance result')}")
    if len(inputs.training):
        parts.append(f"{count(inputs.training['source'].nunique(), 'training curve')}")
    text = parts[0] + (": " + "; ".join(parts[1:]) if len(parts) > 1 else "") + "."
    missing = [
        what
        for what, frame in (("benchmark", bench), ("conformance", inputs.conformance), ("training", inputs.training))
        if frame.empty
    ]
    if missing:
        text += f" No {' or '.join(missing)} results were supplied, so the corresponding sections are absent."
    quick = bench[bench["quick"].astype(bool)] if len(bench) else bench
    if len(quick):
        text += (
            f" {count(quick['source'].nunique(), 'run was a', 'runs were')} `--quick` smoke "
            f"{'run' if quick['source'].nunique() == 1 else 'runs'} (one round per benchmark): "
            "their timings are shown but never counted as differences, and are left out of the history."
        )
    if inputs.ignored:
        # Training folders hold config.json and summary.json beside the CSVs: count them, name only a few.
        shown = [str(p) for p in inputs.ignored[:3]]
        more = f" and {len(inputs.ignored) - 3} more" if len(inputs.ignored) > 3 else ""
        text += (
            f" {count(len(inputs.ignored), 'JSON file')} found in the folders given "
            f"{'was' if len(inputs.ignored) == 1 else 'were'} neither benchmark nor conformance results and "
            f"{'was' if len(inputs.ignored) == 1 else 'were'} ignored ({', '.join(shown)}{more})."
        )
    return Section("Inputs", [text], results=False)


def build_sections(
    inputs: Inputs, *, threshold: float = 195.0, window: int = 100, limits: Thresholds | None = None
) -> list[Section]:
    numbering = Numbering()
    sections = [inputs_section(inputs)]
    if len(inputs.benchmarks):
        sections += [
            device_section(inputs.benchmarks, numbering),
            implementation_section(inputs.benchmarks, numbering),
            history_section(inputs.benchmarks, numbering, limits or analysis.thresholds()),
            passes_section(inputs.benchmarks, numbering),
        ]
    if len(inputs.training):
        sections.append(learning_section(inputs.training, numbering, threshold, window))
    if len(inputs.conformance):
        sections.append(conformance_section(inputs.conformance, numbering))
    return sections
