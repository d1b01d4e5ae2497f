"""The report's other sections (summary, machines, learning, conformance, limitations, inputs) and their order."""

from __future__ import annotations

import functools
import math

import pandas as pd

from dqnbench.bench.compare import Thresholds
from dqnbench.report import analysis, bench_sections, figures, learning
from dqnbench.report.load import MACHINE_FACTS, Inputs
from dqnbench.report.prose import NO_INTERVAL, NumberedFigure, Numbering, Section, Table, count, listing


def _one(value: float) -> str:
    return NO_INTERVAL if math.isnan(value) else f"{value:.1f}"


def _steps(value: float) -> str:
    return NO_INTERVAL if math.isnan(value) else f"{value / 1000:.1f}k"


def _iqm_text(row: pd.Series) -> str:
    if math.isnan(row["low"]):
        return f"{_one(row['iqm'])} (no interval: {count(int(row['seeds']), 'seed')})"
    return f"{_one(row['iqm'])} (95% CI {_one(row['low'])}–{_one(row['high'])})"


def _spans_range(row: pd.Series) -> bool:
    """Whether the interval is the seeds' whole range because there are too few of them (n**n draws < 40)."""
    few = int(row["seeds"]) ** int(row["seeds"]) < 40
    return few and not math.isnan(row["low"]) and row["low"] <= row["min_final"] and row["high"] >= row["max_final"]


def _title(row: pd.Series) -> str:
    if row["role"] == learning.CURRENT:
        return f"{row['sweep']} (current {row['named']} configuration)"
    if row["role"] == learning.SUPERSEDED:
        return f"{row['sweep']} (superseded: not the current {row['named']} configuration)"
    return str(row["sweep"])


def _evaluation(row: pd.Series) -> str:
    if row["evaluated"] == 0:
        return "not evaluated"
    return f"{_one(row['eval_mean'])} (mean of {count(int(row['evaluated']), 'seed')})"


def learning_section(inputs: Inputs, numbering: Numbering, threshold: float, window: int) -> Section:
    section = Section("Learning")
    training = inputs.training
    table = learning.summary(training, inputs.sweeps, threshold, window)
    current = table[(table["role"] == learning.CURRENT) & (table["named"] == "tuned")]
    current = current.sort_values(["seeds", "max_steps"], ascending=False, kind="stable")
    highlight = list(current["sweep"][:1]) + list(
        table[(table["role"] == learning.CURRENT) & (table["named"] == "seed")]["sweep"][:1]
    )
    if not highlight:
        highlight = list(table["sweep"][:1])
    curves = {s: learning.curves(training, s, window) for s in table["sweep"]}
    fig_no, tab_no = numbering.figure(), numbering.table()
    section.figures.append(
        NumberedFigure(
            fig_no,
            f"{window}-episode running mean of the episode duration against environment steps: each seed thin, the "
            "interquartile mean (IQM) over seeds thick, drawn up to the shortest seed's last step.",
            functools.partial(
                figures.learning_figure,
                {s: curves[s] for s in highlight},
                {s: learning.iqm_curve(curves[s]) for s in highlight},
                {s: _title(table.set_index("sweep", drop=False).loc[s]) for s in highlight},
                threshold,
                window,
            ),
        )
    )
    others = [s for s in table["sweep"] if s not in highlight]
    appendix_no = numbering.figure() if others else None
    if others:
        titles = {s: _title(table.set_index("sweep", drop=False).loc[s]) for s in others}
        section.figures.append(
            NumberedFigure(
                appendix_no,  # type: ignore[arg-type]
                "Appendix: the other stored configurations (ablations, trials and superseded settings), one panel "
                "each, seeds' running means against environment steps; the dashed line is the threshold.",
                functools.partial(
                    figures.learning_grid_figure, {s: curves[s] for s in others}, titles, threshold, window
                ),
            )
        )
    section.tables.append(
        Table(
            tab_no,
            f"Per configuration: seeds, environment steps per seed, the IQM across seeds of each seed's final "
            f"{window}-episode mean (each at its own end) with a 95% percentile-bootstrap interval ('-' below 3 "
            f"seeds), the range of those means, the seeds whose running mean reached {threshold:g} and the median "
            "steps they needed, and the final greedy evaluation.",
            [
                "Configuration",
                "Seeds",
                "Steps",
                "Final mean, IQM (95% CI)",
                "Range",
                "Reached",
                "Steps to reach",
                "Greedy evaluation",
            ],
            [
                [
                    _title(r),
                    str(r["seeds"]),
                    _steps(r["min_steps"])
                    if r["min_steps"] == r["max_steps"]
                    else f"{_steps(r['min_steps'])}–{_steps(r['max_steps'])}",
                    _iqm_text(r),
                    f"{_one(r['min_final'])}–{_one(r['max_final'])}",
                    f"{r['reached']} of {r['seeds']}",
                    _steps(r["median_steps_reached"]),
                    _evaluation(r),
                ]
                for _, r in table.iterrows()
            ],
        )
    )
    section.paragraphs.append(
        f"Figure {fig_no} plots the learning curves against environment steps, and Table {tab_no} summarises "
        f"{count(len(table), 'stored configuration')} ({count(int(table['seeds'].sum()), 'seed')} in all). Each "
        f"seed's final mean is the mean duration of its last {window} episodes, taken at its own end; the "
        "configurations' values are the interquartile mean across seeds with a percentile-bootstrap interval "
        "(`scipy.stats.bootstrap`), which with 3 seeds is coarse."
    )
    if len(current):
        row = current.iloc[0]
        reached = int(row["reached"])
        text = (
            f"The current tuned configuration (`{row['sweep']}`, {count(int(row['seeds']), 'seed')}, "
            f"{_steps(row['min_steps'])} to {_steps(row['max_steps'])} environment steps) reached the "
            f"{threshold:g} threshold on {reached} of {row['seeds']} seeds"
        )
        text += f", after a median of {_steps(row['median_steps_reached'])} steps" if reached else ""
        missed = int(row["seeds"]) - reached
        text += f"; {missed} did not reach it within its budget" if missed and reached else ""
        text += (
            f". The IQM of the final means was {_iqm_text(row)}, with seeds ranging from {_one(row['min_final'])} to "
            f"{_one(row['max_final'])}. "
            + (
                f"With {row['seeds']} seeds the bootstrap interval reaches the lowest and the highest seed (a "
                f"resample of the lowest seed alone comes up in 1 of {row['seeds'] ** row['seeds']} draws, more often "
                "than the 2.5% each tail leaves out), so it is no narrower than their range and mainly says how few "
                "seeds there were. "
                if _spans_range(row)
                else ""
            )
            + (
                "No final greedy evaluation was recorded."
                if row["evaluated"] == 0
                else f"The final greedy evaluation averaged {_evaluation(row)}."
            )
        )
        section.paragraphs.append(text)
        section.lines.append((
            f"**Learning** (current tuned configuration, `{row['sweep']}`): {reached} of {row['seeds']} seeds reached "
            f"{threshold:g}; final {window}-episode mean IQM {_iqm_text(row)}; greedy evaluation: {_evaluation(row)}.",
            section.anchor,
        ))  # fmt: skip
        twins = current.iloc[1:]
        if len(twins):
            section.paragraphs.append(
                " ".join(
                    f"`{t['sweep']}` held the same settings with a budget of up to {_steps(t['max_steps'])} steps "
                    f"({count(int(t['seeds']), 'seed')}): {t['reached']} of {t['seeds']} reached the threshold, and "
                    f"the final means ranged from {_one(t['min_final'])} to {_one(t['max_final'])}."
                    for _, t in twins.iterrows()
                )
                + " Final means therefore depend on where a run stops, and a run that reached the threshold "
                "did not necessarily stay there."
            )
    else:
        section.paragraphs.append("None of the stored configurations equals the current tuned configuration.")
        section.lines.append(("**Learning**: no stored run of the current tuned configuration.", section.anchor))
    seed = table[(table["role"] == learning.CURRENT) & (table["named"] == "seed")]
    if len(seed) and len(current):
        s, c = seed.iloc[0], current.iloc[0]
        apart = (
            not math.isnan(s["high"]) and not math.isnan(c["low"]) and (c["low"] > s["high"] or s["low"] > c["high"])
        )
        section.paragraphs.append(
            f"The seed configuration (`{s['sweep']}`) ended at an IQM of {_iqm_text(s)} after at most "
            f"{_steps(s['max_steps'])} steps, against {_one(c['iqm'])} for the tuned one; "
            + (
                "the two intervals did not overlap."
                if apart
                else "the intervals overlapped or could not be computed, so this comparison is inconclusive."
            )
            + (
                " The two ran for different budgets, which limits the comparison."
                if s["max_steps"] != c["max_steps"]
                else ""
            )
        )
    superseded = table[table["role"] == learning.SUPERSEDED]
    if others:
        section.paragraphs.append(
            f"The other {count(len(others), 'configuration')} (Figure {appendix_no}, appendix) were ablations and "
            "earlier trials"
            + (
                f"; {listing([f'`{s}`' for s in superseded['sweep']])} holds a configuration that the code's "
                f"`{superseded['named'].iloc[0]}` configuration has since replaced"
                if len(superseded)
                else ""
            )
            + ". They are kept as evidence for the choices the tuned configuration makes."
        )
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
    tallies = []
    newest = analysis.newest_conformance(conformance)
    for impl in matrix.columns:
        outcomes = matrix[impl]
        failed = list(outcomes[outcomes == "failed"].index)
        by_design = int(newest[(newest["implementation"] == impl) & (newest["outcome"] == "failed")]["by_design"].sum())
        passed, skipped = int((outcomes == "passed").sum()), int((outcomes == "skipped").sum())
        text = f"`{impl}` {passed} passed, {len(failed)} failed, {skipped} skipped"
        if by_design:
            text += f" ({by_design} of the failures by design)"
        tallies.append(text)
    section.paragraphs.append(
        f"Figure {fig_no} shows the outcome of each of {count(len(matrix), 'check')} for "
        f"{count(len(matrix.columns), 'implementation')}: {listing(tallies)}. A skipped check is a part the "
        "implementation does not supply, or one the check cannot apply to."
    )
    section.lines.append((f"**Conformance**: {'; '.join(tallies)}.", section.anchor))
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
        section.paragraphs.append(f"Table {tab_no} quotes the message of each failure.")
    return section


def machines_table(runs: pd.DataFrame) -> Table:
    """The newest recorded facts of each machine; a fact the run did not record reads "not recorded"."""
    newest = runs.sort_values("datetime", kind="stable").groupby("machine", sort=True).last()
    header = ["Machine", "CPU", "Cores", "Torch threads", "GPUs", "Torch", "CUDA (torch build)", "Kernel"]
    return Table(
        0,
        "Machines, as their newest stored run recorded them.",
        header,
        [[str(m), *[bench_sections.clean(str(r[f])) for f in MACHINE_FACTS]] for m, r in newest.iterrows()],
    )


def limitations_section(inputs: Inputs) -> Section:
    runs = inputs.runs
    parts = [
        "These results carry the limits of how they were measured. Most comparisons rest on one run per commit "
        "and machine, so their intervals describe the passes of that run, not the spread between runs.",
        "The machines were shared virtual machines whose speed wandered while the benchmarks ran (see Passes within "
        "a run); a ratio between implementations measured in the same pass is less affected than an absolute time.",
    ]
    if len(runs):
        changed = [m for m, rows in runs.groupby("machine") if (rows[list(MACHINE_FACTS)].nunique() > 1).any()]
        if changed:
            parts.append(
                f"The facts of {count(len(changed), 'machine')} ({listing(changed)}) changed during the history (a "
                "kernel, a torch version or a GPU), and one machine id may stand for several leased hosts of one "
                "model; absolute times before and after such a change are not comparable."
            )
    if len(inputs.training):
        parts.append(
            "The learning runs used 1 to 3 seeds each, which allows only coarse intervals; their budgets differed, "
            "so final means from different folders are not measured at the same point of training."
        )
    return Section("Limitations", [" ".join(parts)], results=False)


def inputs_section(inputs: Inputs) -> Section:
    bench = inputs.benchmarks
    parts = [f"This report was generated from {count(len(inputs.files), 'result file')}"]
    if len(bench):
        parts.append(
            f"{count(bench['source'].nunique(), 'benchmark run')} on {count(bench['machine'].nunique(), 'machine')} "
            f"(pytest-benchmark {listing(sorted(bench['version'].unique()))})"
        )
    if len(inputs.conformance):
        parts.append(count(inputs.conformance["implementation"].nunique(), "conformance result"))
    if len(inputs.training):
        parts.append(
            f"{count(inputs.training['source'].nunique(), 'training curve')} in "
            f"{count(inputs.training['sweep'].nunique(), 'configuration')}"
        )
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
        n = quick["source"].nunique()
        text += (
            f" {count(n, 'run was a', 'runs were')} `--quick` smoke {'run' if n == 1 else 'runs'} (one round per "
            "benchmark): they are left out of every comparison and of the history."
        )
    if inputs.skipped_folders:
        text += (
            f" {count(len(inputs.skipped_folders), 'folder')} beside the stores "
            f"({listing([p.name for p in inputs.skipped_folders])}) "
            f"{'was' if len(inputs.skipped_folders) == 1 else 'were'} not read; name a folder on the command line "
            "to include it."
        )
    if inputs.ignored:
        shown = [str(p) for p in inputs.ignored[:3]]
        more = f" and {len(inputs.ignored) - 3} more" if len(inputs.ignored) > 3 else ""
        verb = "was" if len(inputs.ignored) == 1 else "were"
        text += (
            f" {count(len(inputs.ignored), 'JSON file')} found in the folders given {verb} neither benchmark nor "
            f"conformance results and {verb} ignored ({', '.join(shown)}{more})."
        )
    return Section("Inputs", [text], results=False)


def summary_section(sections: list[Section], inputs: Inputs) -> Section:
    summary = Section("Summary", results=False, anchor="summary")
    for section in sections:
        summary.lines += section.lines
    if len(inputs.runs):
        summary.tables.append(machines_table(inputs.runs))
    return summary


def build_sections(
    inputs: Inputs, *, threshold: float = 195.0, window: int = 100, limits: Thresholds | None = None
) -> list[Section]:
    """Summary first (one line per question, each linking to its section), then the results, limitations and
    inputs."""
    numbering = Numbering()
    limits = limits or analysis.thresholds()
    results: list[Section] = []
    bench, runs = inputs.benchmarks, inputs.runs
    if len(bench):
        results += [
            bench_sections.implementation_section(bench, runs, numbering, limits),
            bench_sections.device_section(bench, runs, numbering, limits),
            bench_sections.history_section(bench, runs, numbering, limits, inputs.ab),
        ]
    if len(inputs.training):
        results.append(learning_section(inputs, numbering, threshold, window))
    if len(inputs.conformance):
        results.append(conformance_section(inputs.conformance, numbering))
    if len(bench):
        results.append(bench_sections.passes_section(bench, numbering))
    return [summary_section(results, inputs), *results, limitations_section(inputs), inputs_section(inputs)]
