"""Benchmark sections: fast against reference, CUDA against CPU, the history's verdicts, and passes within a run.

Every sentence is computed from the numbers; each section also leaves its one-line answers in `Section.lines`
for the summary at the top of the report.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import pandas as pd
from scipy import stats

from dqnbench.bench import changes
from dqnbench.bench.compare import Thresholds
from dqnbench.report import analysis, figures, verdicts
from dqnbench.report.analysis import as_ratio
from dqnbench.report.figures import format_seconds, pretty, significant
from dqnbench.report.load import ABResult
from dqnbench.report.prose import (
    NumberedFigure,
    Numbering,
    Section,
    Table,
    count,
    distinguishable_cell,
    interval_cell,
    label,
    listing,
    matters_cell,
    percent,
    ratio_interval,
    values_text,
)


def clean(text: str) -> str:
    """A hardware name without trademark marks: "Intel Xeon Processor"."""
    return " ".join(str(text).replace("(R)", "").replace("(TM)", "").split())


def _forest_labels(table: pd.DataFrame, column: str, default: str) -> pd.Series:
    return pd.Series(
        [label(o, "" if c == default else str(c)) for o, c in zip(table["operation"], table[column], strict=True)],
        index=table.index,
    )


def _comparison_table(number: int, table: pd.DataFrame, labels: pd.Series, kind: str, caption: str) -> Table:
    place = "Device" if kind == "impl" else "Implementation"
    column = "device" if kind == "impl" else "impl"
    base, cand = ("Baseline", "Candidate") if kind == "impl" else ("CPU", "CUDA")
    rows = []
    for index, r in table.iterrows():
        ratio = as_ratio(r)
        base_time, cand_time = format_seconds(r["base_median"]), format_seconds(r["median"])
        rows.append([
            str(r["machine"]), str(r[column]), labels[index],
            f"{r['baseline']}: {base_time}" if kind == "impl" else base_time,
            f"{r['candidate']}: {cand_time}" if kind == "impl" else cand_time,
            interval_cell(ratio), values_text(int(r["values"]), str(r["unit"])), distinguishable_cell(ratio),
            matters_cell(ratio),
        ])  # fmt: skip
    return Table(
        number,
        caption,
        ["Machine", place, "Operation", base, cand, "Speed-up (95% CI)", "Values", "Distinguishable", "Matters"],
        rows,
    )


def _facet_paragraph(rows: pd.DataFrame, labels: pd.Series, who: str, against: str, where: str) -> str:
    ratios = [as_ratio(r) for _, r in rows.iterrows()]
    told = [r for r in ratios if r.distinguishable]
    faster = [r for r in told if r.value > 1]
    matter = [r for r in told if r.matters]
    best, worst = rows["ratio"].idxmax(), rows["ratio"].idxmin()
    commit = str(rows["commit"].iloc[0])[:7]
    text = (
        f"{where}, at commit {commit} ({count(int(rows['runs'].max()), 'run')}), {who} was measured against "
        f"{against} in {count(len(rows), 'comparison')}. "
    )
    if not any(r.has_interval for r in ratios):
        text += (
            "None of these comparisons had an interval (each rested on fewer than 3 passes or runs), so they "
            "should be read as point estimates. "
        )
    else:
        text += (
            f"The interval excluded 1 in {len(told)} of them ({len(faster)} faster, {len(told) - len(faster)} slower), "
            f"and {len(matter)} of those lay beyond the threshold. "
        )
    text += (
        f"The speed-ups ranged from {ratio_interval(as_ratio(rows.loc[worst]))} for {labels[worst]} to "
        f"{ratio_interval(as_ratio(rows.loc[best]))} for {labels[best]}."
    )
    return text


def implementation_section(
    bench: pd.DataFrame, runs: pd.DataFrame, numbering: Numbering, limits: Thresholds
) -> Section:
    section = Section("Fast against reference")
    table = analysis.comparisons(bench, "impl", limits)
    if table.empty:
        impls = sorted(bench["impl"].unique())
        section.paragraphs.append(
            f"Only the {listing(impls)} implementation was measured, so no implementations could be compared "
            "(`--dqn-impl` adds one to a benchmark run)."
            if len(impls) == 1
            else f"The implementations {listing(impls)} were never measured in the same run on one machine, so "
            "they could not be compared."
        )
        section.lines.append(("**Fast vs reference**: not measured side by side.", section.anchor))
        return section
    baseline = str(table["baseline"].iloc[0])
    labels = _forest_labels(table, "candidate", "fast")
    fig_no, tab_no = numbering.figure(), numbering.table()
    section.figures.append(
        NumberedFigure(
            fig_no,
            f"Speed-up of each implementation over the {baseline} (time {baseline} / time implementation; right of "
            "1 is faster) on each machine's newest commit, with 95% bootstrap intervals over passes; the grey band "
            "is the regression gate's threshold.",
            functools.partial(figures.forest_figure, table, ["machine", "device"], labels, "speedups", "speed-up"),
        )
    )
    section.tables.append(
        _comparison_table(
            tab_no,
            table,
            labels,
            "impl",
            "Median times and speed-ups over the baseline. Distinguishable: the 95% interval excludes 1 ('-': fewer "
            "than 3 values, no interval). Matters: the speed-up lies beyond the gate's threshold (10% by default).",
        )
    )
    section.paragraphs.append(
        f"Figure {fig_no} and Table {tab_no} compare each implementation with the {baseline} on the newest "
        "commit measured on each machine. A speed-up is the ratio of the two median times; its interval is a "
        "percentile bootstrap of the median over the per-pass ratios of every run of that commit (each pass "
        "timed both implementations within minutes), so it describes how the ratio varied across the run, not "
        "across the rounds of one pass."
    )
    facts = runs.sort_values("datetime").groupby("machine").last()
    for (machine, device), rows in table.groupby(["machine", "device"], sort=False):
        fact = facts.loc[machine] if machine in facts.index else None
        hardware = (
            "not recorded" if fact is None
            else clean(str(fact["gpus"]).split(" × ", 1)[-1]) if device == "cuda"
            else clean(str(fact["cpu_model"]))
        )  # fmt: skip
        where = f"On the {'GPU' if device == 'cuda' else 'CPU'} of {machine} ({hardware})"
        section.paragraphs.append(_facet_paragraph(rows, labels, "each implementation", f"the {baseline}", where))
        main = rows[rows["candidate"] == ("fast" if "fast" in set(rows["candidate"]) else rows["candidate"].iloc[0])]
        parts = [f"{compact(str(r['operation']))} {_short(as_ratio(r))}" for _, r in main.iterrows()]
        variants = [
            f"{r['candidate']} {compact(str(r['operation']))} {_short(as_ratio(r))}"
            for _, r in rows[~rows.index.isin(main.index)].iterrows()
        ]
        section.lines.append((
            f"**{main['candidate'].iloc[0].capitalize()} vs {baseline}** ({str(device).upper()}, {machine}, commit "
            f"{str(rows['commit'].iloc[0])[:7]}): {'; '.join(parts)}."
            + (f" Variants: {'; '.join(variants)}." if variants else ""),
            section.anchor,
        ))  # fmt: skip
    return section


def compact(operation: str) -> str:
    """ "forward (batch 1)": an operation's name as short as a summary line needs it."""
    return re.sub(r", batch size (\d+)", r" (batch \1)", pretty(operation))


def _short(ratio: analysis.Ratio) -> str:
    if ratio.has_interval:
        return f"{times_text(ratio.value)} ({significant(ratio.low)}–{significant(ratio.high)})"
    return f"{times_text(ratio.value)} (-)"


def times_text(value: float) -> str:
    return f"{significant(value)}×"


def device_section(bench: pd.DataFrame, runs: pd.DataFrame, numbering: Numbering, limits: Thresholds) -> Section:
    section = Section("CUDA against CPU")
    table = analysis.comparisons(bench, "device", limits)
    if table.empty:
        cuda = (bench["device"] == "cuda").any()
        section.paragraphs.append(
            "CUDA measurements were supplied, but none matched a CPU measurement of the same operation and "
            "implementation on the same machine and commit, so the two devices could not be compared."
            if cuda
            else f"No CUDA run was among the inputs (all measurements came from the CPUs of "
            f"{listing(sorted(bench['machine'].unique()))}), so CPU and CUDA could not be compared; a benchmark run "
            "on a machine with a GPU (`tox -e bench` there) supplies them."
        )
        section.lines.append(("**CUDA vs CPU**: no CUDA run was stored.", section.anchor))
        return section
    labels = _forest_labels(table, "impl", "")
    fig_no, tab_no = numbering.figure(), numbering.table()
    section.figures.append(
        NumberedFigure(
            fig_no,
            "Speed-up of CUDA over the same machine's CPU (time CPU / time CUDA; right of 1, CUDA is faster) per "
            "operation and implementation; hollow markers have no interval (fewer than 3 runs or passes).",
            functools.partial(figures.forest_figure, table, ["machine"], labels, "cuda_speedups", "CUDA speed-up"),
        )
    )
    section.tables.append(
        _comparison_table(
            tab_no, table, labels, "device", "CPU and CUDA median times on one machine and CUDA's speed-up."
        )
    )
    facts = runs.sort_values("datetime").groupby("machine").last()
    for machine, rows in table.groupby("machine", sort=False):
        fact = facts.loc[machine] if machine in facts.index else None
        gpu = clean(str(fact["gpus"]).split(" × ", 1)[-1]) if fact is not None else "not recorded"
        cpu = f"{clean(fact['cpu_model'])}, {fact['cores']} cores" if fact is not None else "not recorded"
        where = f"On {machine} (GPU: {gpu}; CPU: {cpu})"
        section.paragraphs.append(_facet_paragraph(rows, labels, "CUDA", "the CPU", where) + _size_trend(rows, fig_no))
        best, worst = rows.loc[rows["ratio"].idxmax()], rows.loc[rows["ratio"].idxmin()]
        section.lines.append((
            f"**CUDA vs CPU** ({machine}: {gpu} against {cpu}): from {_short(as_ratio(worst))} for "
            f"{labels[worst.name]} to {_short(as_ratio(best))} for {labels[best.name]}, over "
            f"{count(len(rows), 'comparison')}.",
            section.anchor,
        ))  # fmt: skip
    return section


def _size_trend(rows: pd.DataFrame, fig_no: int) -> str:
    """A hedged sentence when the speed-up rose with the CPU time per call (a fixed per-call cost on the GPU would
    do that), and nothing otherwise."""
    if len(rows) < 5:
        return ""
    rho = float(stats.spearmanr(rows["base_median"], rows["ratio"]).statistic)
    if rho < 0.5:
        return ""
    return (
        f" As Figure {fig_no} shows, the speed-up tended to rise with the CPU time per call (Spearman ρ = {rho:.2f}), "
        "which suggests a roughly fixed per-call cost on the GPU side (launches and transfers)."
    )


def _history_frame(bench: pd.DataFrame, limits: Thresholds) -> pd.DataFrame:
    trend = verdicts.history(bench, limits)
    if trend.empty:
        return trend
    size = trend.groupby(verdicts.SERIES)["datetime"].transform("size")
    return trend[size >= 2]


def _machine_commits(
    trend: pd.DataFrame, histories: dict[str, verdicts.MachineHistory]
) -> tuple[dict[str, list[str]], dict[str, list[int]], pd.DataFrame]:
    """Per machine, its commits in the order first measured, the commit positions after a machine change, and the
    change points to mark: machine, operation, device, impl, commit (the first after the step), slower."""
    commits: dict[str, list[str]] = {}
    breaks: dict[str, list[int]] = {}
    marks = []
    for machine, rows in trend.sort_values("datetime", kind="stable").groupby("machine", sort=True):
        found = histories[str(machine)]
        order = list(dict.fromkeys(rows["commit"]))
        commits[str(machine)] = order
        breaks[str(machine)] = sorted({order.index(found.commit(cut.after)) for cut in found.breaks})
        marks += [
            (str(machine), *found.series(step), found.commit(step.first_after), step.slower) for step in found.steps
        ]
    columns = ["machine", "operation", "device", "impl", "commit", "slower"]
    return commits, breaks, pd.DataFrame(marks, columns=columns)


def ab_text(result: ABResult) -> str:
    """'2 of 18 benchmarks slower (a, b), 1 faster' for an A/B result."""
    slower = sorted(node for node, verdict in result.verdicts.items() if verdict == "slower")
    faster = sum(verdict == "faster" for verdict in result.verdicts.values())
    named = f" ({listing([re.sub(r'^.*::', '', n) for n in slower])})" if 0 < len(slower) <= 3 else ""
    total = count(len(result.verdicts), "benchmark")
    return (
        f"{len(slower)} of {total} slower{named}, {faster} faster"
        if slower
        else f"no regression among {total}, {faster} faster"
    )


def _matching_ab(results: Sequence[ABResult], machine: str, commit: str) -> ABResult | None:
    """The newest A/B result of `machine` whose candidate is `commit` (either written as a prefix of the other)."""
    found = [
        r
        for r in results
        if r.machine == machine
        and r.candidate != "worktree"
        and (commit.startswith(r.candidate) or r.candidate.startswith(commit))
    ]
    return max(found, key=lambda r: r.when) if found else None


def _step_text(step: changes.Step, found: verdicts.MachineHistory, label_of: dict[verdicts.Key, str]) -> str:
    """'op (reference, cpu) 50% slower (median after/before ×1.50) in 2222222..3333333, 3 runs before and 4 after'."""
    way = "slower" if step.slower else "faster"
    return (
        f"{label_of[found.series(step)]} {abs(step.ratio - 1):.0%} {way} (median after/before ×{step.ratio:.2f}) in "
        f"{found.commit(step.last_before)[:7]}..{found.commit(step.first_after)[:7]}, "
        f"{count(step.runs_before, 'run')} before and {step.runs_after} after"
    )


def history_section(
    bench: pd.DataFrame, runs: pd.DataFrame, numbering: Numbering, limits: Thresholds, ab: Sequence[ABResult] = ()
) -> Section:
    section = Section("History")
    trend = _history_frame(bench, limits)
    if trend.empty:
        section.paragraphs.append(
            f"Every benchmark was measured in a single run ({count(bench['source'].nunique(), 'file')} read), so "
            "no trend could be drawn; each `tox -e bench` adds a run to the history store (reports/history)."
        )
        section.lines.append(("**Regressions**: a single run per benchmark, nothing to compare.", section.anchor))
        return section
    histories = verdicts.machine_histories(trend, runs)
    commits, breaks, marks = _machine_commits(trend, histories)
    fig_no, tab_no = numbering.figure(), numbering.table()
    section.figures.append(
        NumberedFigure(
            fig_no,
            "Median time per commit (x: the machine's commits in the order they were first measured) of each "
            "benchmark; one colour per implementation in every panel. A change point (a lasting step, marked at the "
            "first commit after it) is ▼ with a red edge when slower, ▲ with a green edge when faster; a dashed "
            "line marks a change of the machine (kernel, torch, GPU...), where the line breaks.",
            functools.partial(figures.history_figure, trend, commits, breaks, marks),
        )
    )
    counts = []
    for machine, rows in trend.groupby("machine", sort=True):
        found = histories[str(machine)]
        slower = sum(step.slower for step in found.steps)
        counts.append([
            str(machine), str(rows["source"].nunique()), str(len(commits[str(machine)])),
            f"{rows['datetime'].min():%Y-%m-%d} to {rows['datetime'].max():%Y-%m-%d}",
            str(slower), str(len(found.steps) - slower), str(len(found.breaks)),
        ])  # fmt: skip
    section.tables.append(
        Table(
            tab_no,
            "Runs and change points per machine: lasting steps of one benchmark beyond its threshold, with the "
            "host factor divided out and runs of one commit pooled; machine changes break the history.",
            ["Machine", "Runs", "Commits", "Dates", "Slower steps", "Faster steps", "Machine changes"],
            counts,
        )
    )
    section.paragraphs.append(
        "A regression in a history is a change point: a shift in a benchmark's level that persists over later "
        "runs, found as `dqnbench bench compare --history` finds it (`dqnbench.bench.changes`: binary "
        "segmentation under an L1 cost, the cost asv's step detection minimises). Each run's times are first "
        "divided by its host factor (how much slower the run was across all its benchmarks), and consecutive runs "
        f"of one commit are pooled, so a step always falls between two commits. A step needs at least "
        f"{changes.MIN_POINTS} commits on each side, levels apart by more than the threshold "
        f"({_thresholds_text(limits)}), and a jump at the split itself, so a single outlier run or a slow drift is "
        "not one. A change of a machine fact (CPU, cores, torch threads, GPU, torch, CUDA, kernel) cuts the "
        f"history: runs on either side are not compared. Table {tab_no} gives the counts and Figure {fig_no} the "
        "series."
    )
    label_of = {
        (o, d, i): f"{pretty(o)} ({i}, {d})"
        for o, d, i in trend[["operation", "device", "impl"]].itertuples(index=False)
    }
    for machine, rows in trend.groupby("machine", sort=True):
        found = histories[str(machine)]
        text = (
            f"On {machine}, {count(rows['source'].nunique(), 'run')} of {count(len(commits[str(machine)]), 'commit')} "
            f"were stored between {rows['datetime'].min():%d %b} and {rows['datetime'].max():%d %b %Y}. "
        )
        if found.steps:
            text += f"The history shows {count(len(found.steps), 'lasting step')}: " + "; ".join(
                _step_text(step, found, label_of) for step in found.steps
            )
        else:
            text += "The history shows no lasting step beyond the thresholds"
        if found.breaks:
            times_changed = "once" if len(found.breaks) == 1 else f"{len(found.breaks)} times"
            text += (
                f". The machine changed {times_changed} (Figure {fig_no}, dashed lines): "
                + "; ".join(
                    f"{', '.join(cut.differences)} between commits {found.commit(cut.before)[:7]} and "
                    f"{found.commit(cut.after)[:7]}"
                    for cut in found.breaks
                )
                + "; runs on either side of a change were not compared."
            )
        else:
            text += "."
        section.paragraphs.append(text)
    for verdict in verdicts.newest_verdicts(trend, histories, label_of):
        found = histories[verdict.machine]
        current = found.current_steps()
        lasting = (
            f"; since the last machine change, the level at this commit follows {count(len(current), 'lasting step')}: "
            + "; ".join(_step_text(step, found, label_of) for step in current)
            if current
            else ""
        )
        gate = _matching_ab(ab, verdict.machine, verdict.commit)
        if gate is not None:
            section.paragraphs.append(
                f"The A/B gate timed commit {gate.candidate[:7]} against {gate.baseline[:7]} on {verdict.machine} "
                f"({gate.when:%d %b %H:%M} UTC), interleaving the two in the same passes: {ab_text(gate)}. Its "
                "verdict rests on paired passes and outweighs the comparison of two separate runs."
            )
            section.lines.append((
                f"**Regressions** ({verdict.machine}, A/B gate, {gate.candidate[:7]} against {gate.baseline[:7]}): "
                f"{ab_text(gate)}{lasting}.",
                section.anchor,
            ))  # fmt: skip
            continue
        section.paragraphs.append(
            f"The newest run on {verdict.machine} (commit {verdict.commit[:7]}, {verdict.when:%d %b %H:%M} UTC) "
            f"showed {verdict.text}"
            + (f": {listing(list(verdict.slower))}" if 0 < len(verdict.slower) <= 3 else "")
            + ". A single run against a single run is weak evidence; an A/B comparison times both commits side by side."
        )
        section.lines.append(
            (
                f"**Regressions** ({verdict.machine}, newest run, commit {verdict.commit[:7]}): "
                f"{verdict.text}{lasting}.",
                section.anchor,
            )
        )
    return section


def _thresholds_text(limits: Thresholds) -> str:
    text = f"{limits.default:.0%} by default"
    if limits.overrides:
        text += ", " + ", ".join(f"{limit:.0%} for `{pattern}`" for pattern, limit in limits.overrides)
    return text


def passes_section(bench: pd.DataFrame, numbering: Numbering) -> Section:
    section = Section("Passes within a run")
    drift = analysis.pass_drift(bench)
    if drift.empty:
        section.paragraphs.append(
            "No run among the inputs was timed in passes (`pytest benchmarks --passes=N`, as `tox -e bench` runs "
            "it), so the report cannot show how the machine's speed moved during a run."
        )
        return section
    fig_no = numbering.figure()
    section.figures.append(
        NumberedFigure(
            fig_no,
            "Each benchmark's median in each pass against its median over the whole run (thin lines), and the "
            "median of those over the benchmarks (thick); dashed lines at ±10 %.",
            functools.partial(figures.drift_figure, drift),
        )
    )
    common_by_machine = analysis.common_pass_drift(drift)
    for machine, run in drift.groupby("machine", sort=True):
        common = common_by_machine.loc[machine]
        worst = run.loc[(run["relative"] - 1).abs().idxmax()]
        passes = int(run["pass"].max())
        section.paragraphs.append(
            f"The newest run timed in passes on {machine} ({run['datetime'].iloc[0]:%Y-%m-%d %H:%M} UTC, commit "
            f"{str(run['commit'].iloc[0])[:7]}) went over its "
            f"{count(run[['operation', 'device', 'impl']].drop_duplicates().shape[0], 'benchmark')} {passes} times "
            f"(Figure {fig_no}). Over the benchmarks, the median pass ran from {percent(common.min())} (pass "
            f"{int(common.idxmin())}) to {percent(common.max())} (pass {int(common.idxmax())}) of the run's medians; "
            f"the largest single deviation was {percent(worst['relative'] - 1)}, {pretty(str(worst['operation']))} "
            f"({worst['impl']}, {worst['device']}) in pass {int(worst['pass'])}. A pass in which most benchmarks "
            "were slower at once suggests that the machine, rather than the code, changed speed."
        )
    return section
