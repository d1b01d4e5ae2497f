"""Reading stored results into pandas tables: benchmark runs, conformance results and training curves.

Every file is recognised by its content, not its name. A file named on the command line must be one of the
three kinds; inside a folder, JSON files of other kinds (a training run's config.json, a sweep's summary) are
listed as ignored. A file that cannot be parsed at all is always an error naming it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# The history store's own machine id, so that the report names machines as the store's folders do.
from dqnbench.bench.history import (
    BenchFileError,
    is_run_file,
    machine_id_from_info,
    read_result_text,
    without_packed_twins,
)

CONFORMANCE_SCHEMA = "dqnbench.conformance/1"
TRAINING_COLUMNS = ("episode", "duration", "total_steps", "epsilon", "mean_loss", "wall_s")
# fmt: off
BENCHMARK_COLUMNS = (
    "source", "machine", "datetime", "commit", "version", "quick", "group", "name", "fullname", "operation",
    "device", "impl", "median", "q1", "q3", "iqr", "mean", "stddev", "rounds", "first_call", "pass_medians",
)
# fmt: on
CONFORMANCE_COLUMNS = (
    "source",
    "implementation",
    "created",
    "torch",
    "check",
    "outcome",
    "message",
    "duration_s",
    "by_design",
)
# One row per benchmark run: the facts that say on what it ran. A change in any of them between two runs of one
# machine is a break in its history, never a regression (`dqnbench.report.verdicts`).
RUN_COLUMNS = (
    "source",
    "machine",
    "datetime",
    "commit",
    "quick",
    "passes",
    "cpu_model",
    "cores",
    "torch_threads",
    "gpus",
    "torch",
    "cuda",
    "kernel",
)
MACHINE_FACTS = ("cpu_model", "cores", "torch_threads", "gpus", "torch", "cuda", "kernel")
NOT_RECORDED = "not recorded"
TRAINING_TABLE_COLUMNS = ("source", "sweep", "seed", *TRAINING_COLUMNS)
OUTCOMES = ("passed", "failed", "skipped")
# Where the implementation's name may be recorded: the benchmark suite's `subject` parameter and `impl` extra
# info, or the names a hand-written benchmark is likely to use.
_IMPL_KEYS = ("subject", "impl", "implementation")
# Parameters that say *where* or *what* runs; every other parameter is part of the operation's identity.
_PLACEMENT_PARAMS = ("device", *_IMPL_KEYS)


class ReportInputError(ValueError):
    """A result file the report cannot use; the message names the file and the fix."""


@dataclass(frozen=True)
class Inputs:
    """Everything a report is made from, one row per measurement."""

    benchmarks: pd.DataFrame
    conformance: pd.DataFrame
    training: pd.DataFrame
    files: tuple[Path, ...] = ()
    ignored: tuple[Path, ...] = ()
    runs: pd.DataFrame = field(default_factory=lambda: _empty(RUN_COLUMNS))
    sweeps: Mapping[str, SweepInfo] = field(default_factory=dict)
    skipped_folders: tuple[Path, ...] = ()
    ab: tuple[ABResult, ...] = ()


@dataclass(frozen=True)
class ABResult:
    """A stored A/B gate result (`dqnbench bench ab`, kind "dqnbench-ab"): candidate against baseline, each
    benchmark's verdict ("slower", "faster" or "same")."""

    source: Path
    machine: str
    when: pd.Timestamp
    baseline: str
    candidate: str
    verdicts: Mapping[str, str]


@dataclass(frozen=True)
class SweepInfo:
    """What a training folder records beside its curves: the configuration and each seed's greedy evaluation."""

    folder: Path
    config: Mapping[str, Any] | None
    final_eval: Mapping[str, float | None]


def load_inputs(paths: Sequence[Path]) -> Inputs:
    """Read every result file named, or found under a named folder, into one `Inputs`."""
    if not paths:
        raise ReportInputError("no result files or folders were given; name at least one (e.g. reports/history)")
    benchmark_rows: list[dict[str, Any]] = []
    run_rows: list[dict[str, Any]] = []
    conformance_rows: list[dict[str, Any]] = []
    training_frames: list[pd.DataFrame] = []
    used: list[Path] = []
    ignored: list[Path] = []
    versions: dict[int, Path] = {}
    ab: list[ABResult] = []
    expanded, skipped = _expand(paths)
    for path, explicit in expanded:
        if path.suffix == ".csv":
            training_frames.append(read_training_csv(path))
            used.append(path)
            continue
        document = read_json(path)
        if isinstance(document, Mapping) and document.get("kind") == "dqnbench-ab":
            ab.append(ab_result_from(path, document))
        elif is_benchmark_document(document) and set(path.parts[:-1]) & set(_NOT_RUNS) and not explicit:
            ignored.append(path)  # a run kept beside A/B results is not a run of the history
            continue
        elif is_benchmark_document(document):
            _check_version(path, document, versions)
            benchmark_rows.extend(benchmark_rows_from(path, document))
            run_rows.append(run_row_from(path, document))
        elif is_conformance_document(document):
            if "schema" in document:
                _check_schema(path, document)
            conformance_rows.extend(conformance_rows_from(path, document))
        elif explicit:
            raise ReportInputError(
                f"{path}: not a pytest-benchmark JSON (no 'benchmarks' list with 'stats') nor a conformance result "
                f"(schema {CONFORMANCE_SCHEMA!r}); give a file written by --benchmark-json, the history store or "
                "a conformance run (`--conformance-json`)"
            )
        else:
            ignored.append(path)
            continue
        used.append(path)
    if not used:
        raise ReportInputError(
            f"no benchmark, conformance or training results were found in {', '.join(map(str, paths))}"
        )
    training = pd.concat(training_frames, ignore_index=True) if training_frames else _empty(TRAINING_TABLE_COLUMNS)
    sweeps = sweep_infos(training)
    # A training folder's own config.json and summary.json are read as its metadata, not ignored.
    metadata = {p.resolve() for info in sweeps.values() for p in _metadata_files(info.folder)}
    return Inputs(
        benchmarks=pd.DataFrame(benchmark_rows, columns=list(BENCHMARK_COLUMNS)),
        conformance=pd.DataFrame(conformance_rows, columns=list(CONFORMANCE_COLUMNS)),
        training=training,
        files=tuple(used),
        ignored=tuple(p for p in ignored if p.resolve() not in metadata),
        runs=pd.DataFrame(run_rows, columns=list(RUN_COLUMNS)),
        sweeps=sweeps,
        skipped_folders=tuple(skipped),
        ab=tuple(ab),
    )


def _empty(columns: Iterable[str]) -> pd.DataFrame:
    return pd.DataFrame(columns=list(columns))


# A results root (the repository's `reports/`) holds these stores; its other folders (stability experiments, built
# reports) are listed as not read, and are read when named themselves.
STORES = ("history", "ab", "learning", "conformance")
# A/B gate results (`dqnbench bench ab`: `ab/<machine>/`, or `history/<machine>/ab/`) are verdicts, not runs of the
# history.
_NOT_RUNS = ("ab",)


def _search_roots(folder: Path) -> tuple[list[Path], list[Path]]:
    """The folders to search under `folder`, and the folders of a results root that are left out."""
    if not (folder / "history").is_dir():
        return [folder], []
    children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [p for p in children if p.name in STORES], [p for p in children if p.name not in STORES]


def _expand(paths: Sequence[Path]) -> tuple[list[tuple[Path, bool]], list[Path]]:
    """(file, named explicitly) pairs, and the folders left out: folders are searched for JSON results and
    training `durations.csv`.

    A file reached twice (a folder and a file inside it) is read once, so no run is counted twice.
    """
    found: dict[Path, tuple[Path, bool]] = {}
    left_out: list[Path] = []
    for path in paths:
        if path.is_dir():
            roots, skipped = _search_roots(path)
            left_out += skipped
            files = [p for root in roots for p in sorted(root.rglob("*")) if p.is_file()]
            for p in without_packed_twins(p for p in files if is_run_file(p) or p.name == "durations.csv"):
                found.setdefault(p.resolve(), (p, False))
        elif path.is_file():
            found[path.resolve()] = (path, True)
        else:
            raise ReportInputError(f"{path}: no such file or folder; check the path given to `dqnbench report`")
    return list(found.values()), left_out


def read_json(path: Path) -> Any:
    try:
        text = read_result_text(path)
    except BenchFileError as error:
        raise ReportInputError(
            f"{error}; restore it with `git checkout -- {path}` if it is committed, or move it out of the folder "
            "and run `dqnbench report` again"
        ) from error
    if not text.strip():
        raise ReportInputError(f"{path}: the file is empty; the run that wrote it probably failed, re-run it")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ReportInputError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}; the file has "
            f"{len(text)} characters): it is probably truncated by an interrupted run; re-run it or remove it"
        ) from error


def is_benchmark_document(document: Any) -> bool:
    return (
        isinstance(document, Mapping)
        and isinstance(document.get("benchmarks"), list)
        and all(isinstance(b, Mapping) and isinstance(b.get("stats"), Mapping) for b in document["benchmarks"])
    )


def is_conformance_document(document: Any) -> bool:
    """A conformance result of any schema version (`_check_schema` then refuses versions this reader lacks), or
    one without a schema that names its implementation and lists its results."""
    if not isinstance(document, Mapping):
        return False
    if str(document.get("schema", "")).startswith("dqnbench.conformance/"):
        return True
    return (
        "schema" not in document and bool(document.get("implementation")) and isinstance(document.get("results"), list)
    )


def _check_schema(path: Path, document: Mapping[str, Any]) -> None:
    if document["schema"] != CONFORMANCE_SCHEMA:
        raise ReportInputError(
            f"{path}: conformance schema {document['schema']!r}, but this report reads {CONFORMANCE_SCHEMA!r}; "
            "re-run the conformance kit with this dqnbench version, or report with the dqnbench that wrote it"
        )


def _check_version(path: Path, document: Mapping[str, Any], seen: dict[int, Path]) -> None:
    """All benchmark files must come from one pytest-benchmark major version: its statistics changed between them.

    A file without a `version` (hand-made, or from another harness) is read as it is, unchecked.
    """
    if "version" not in document:
        return
    version = str(document["version"])
    match = re.match(r"(\d+)\.", version)
    if match is None:
        raise ReportInputError(
            f"{path}: the pytest-benchmark 'version' field is {version!r}, not a version number; "
            "was the file edited by hand?"
        )
    major = int(match.group(1))
    if seen and major not in seen:
        other_major, other = next(iter(seen.items()))
        raise ReportInputError(
            f"{path}: written by pytest-benchmark {version} but {other} by version {other_major}.x; mixed versions "
            "are not compared; report them separately or re-run the older benchmarks"
        )
    seen.setdefault(major, path)


def operation_name(benchmark: Mapping[str, Any]) -> str:
    """The test's name without its parameters, plus any parameter other than device or implementation."""
    base = str(benchmark.get("name") or benchmark.get("fullname") or "unnamed").split("[", 1)[0]
    base = base.removeprefix("test_")
    params = benchmark.get("params") or {}
    identity = [f"{k}={v}" for k, v in sorted(params.items()) if k not in _PLACEMENT_PARAMS]
    return f"{base}[{', '.join(identity)}]" if identity else base


def _first(mappings: Sequence[Mapping[str, Any]], keys: Sequence[str], default: str) -> str:
    for mapping in mappings:
        for key in keys:
            if mapping.get(key):
                return str(mapping[key])
    return default


def benchmark_rows_from(path: Path, document: Mapping[str, Any]) -> list[dict[str, Any]]:
    machine_info = document.get("machine_info") or {}
    suite_facts = machine_info.get("dqnbench") or {}
    commit_info = document.get("commit_info") or {}
    when = benchmark_time(path, document)
    rows = []
    for index, benchmark in enumerate(document["benchmarks"]):
        stats = benchmark["stats"]
        missing = [key for key in ("median", "q1", "q3", "rounds") if not isinstance(stats.get(key), int | float)]
        if missing:
            raise ReportInputError(
                f"{path}: benchmark #{index} ({benchmark.get('name', '?')}) has no numeric {', '.join(missing)} in "
                "its stats; was it written by pytest-benchmark --benchmark-json?"
            )
        params = benchmark.get("params") or {}
        extra = benchmark.get("extra_info") or {}
        rows.append(
            {
                "source": str(path),
                "machine": machine_id_from_info(dict(machine_info)),
                "datetime": when,
                "commit": str(commit_info.get("id") or "unknown")[:10],
                "version": str(document.get("version", "unknown")),
                "quick": suite_facts.get("mode") == "quick" or bool(extra.get("quick")),
                "group": benchmark.get("group") or "",
                "name": benchmark.get("name", ""),
                "fullname": benchmark.get("fullname") or benchmark.get("name", ""),
                "operation": operation_name(benchmark),
                # Without a recorded device the run is a plain CPU benchmark (pytest-benchmark knows no devices).
                "device": _first([params, extra], ["device"], "cpu").split(":")[0],
                "impl": _first([params, extra], _IMPL_KEYS, "reference"),
                "median": float(stats["median"]),
                "q1": float(stats["q1"]),
                "q3": float(stats["q3"]),
                "iqr": float(stats.get("iqr", stats["q3"] - stats["q1"])),
                "mean": float(stats.get("mean", stats["median"])),
                "stddev": float(stats.get("stddev", 0.0)),
                "rounds": int(stats["rounds"]),
                # The suite times the first call apart (lazy set-up, torch.compile's compilation): seconds or NaN.
                "first_call": _first_call_s(extra),
                # A run timed in passes (`--passes`) records each pass's median: seconds, or None.
                "pass_medians": _pass_medians_s(extra),
            }
        )
    return rows


def ab_result_from(path: Path, document: Mapping[str, Any]) -> ABResult:
    """An A/B result; its machine is the history folder it is stored under, its time the stamp its name starts
    with (else the file's time)."""
    stamp = re.match(r"\d{8}T\d{6}Z", path.name)
    when = pd.Timestamp(stamp.group(0)) if stamp else pd.Timestamp(path.stat().st_mtime, unit="s")
    benchmarks = document.get("benchmarks")
    verdicts = {
        str(node): str(entry.get("verdict", NOT_RECORDED))
        for node, entry in (benchmarks.items() if isinstance(benchmarks, Mapping) else [])
        if isinstance(entry, Mapping)
    }

    def commit(side: str) -> str:
        value = document.get(side)
        return str(value.get("commit") or "worktree") if isinstance(value, Mapping) else NOT_RECORDED

    if path.parent.name == "ab":
        machine = path.parent.parent.name
    elif path.parent.parent.name == "ab":
        machine = path.parent.name
    else:
        machine = NOT_RECORDED
    return ABResult(path, machine, when.tz_localize("UTC") if when.tzinfo is None else when, commit("baseline"),
                    commit("candidate"), verdicts)  # fmt: skip


def run_row_from(path: Path, document: Mapping[str, Any]) -> dict[str, Any]:
    """The run's facts: when, which commit, and on what hardware and software; "not recorded" where absent."""
    info = document.get("machine_info") or {}
    suite = info.get("dqnbench") or {}
    cpu = info.get("cpu") or {}
    benchmarks = document.get("benchmarks") or [{}]
    first = benchmarks[0] if benchmarks else {}

    def fact(value: Any) -> str:
        return NOT_RECORDED if value in (None, "", []) else str(value)

    gpus = suite.get("gpus")
    return {
        "source": str(path),
        "machine": machine_id_from_info(dict(info)),
        "datetime": benchmark_time(path, document),
        "commit": str((document.get("commit_info") or {}).get("id") or "unknown")[:10],
        "quick": suite.get("mode") == "quick",
        "passes": int(suite.get("passes") or (first.get("extra_info") or {}).get("passes") or 1),
        "cpu_model": fact(cpu.get("brand_raw")),
        "cores": fact(suite.get("cpu_count") or cpu.get("count")),
        "torch_threads": fact(suite.get("torch_threads")),
        # A machine without GPUs records an empty list: that is a fact, not a gap.
        "gpus": (f"{len(gpus)} × {', '.join(sorted(set(map(str, gpus))))}" if gpus else "none")
        if isinstance(gpus, list)
        else NOT_RECORDED,
        "torch": fact(suite.get("torch")),
        "cuda": fact(suite.get("cuda")),
        "kernel": fact(info.get("release")),
    }


def benchmark_time(path: Path, document: Mapping[str, Any]) -> pd.Timestamp:
    when = (
        pd.Timestamp(document["datetime"]) if document.get("datetime") else pd.Timestamp(path.stat().st_mtime, unit="s")
    )
    return when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")


def _pass_medians_s(extra: Mapping[str, Any]) -> np.ndarray | None:
    value = extra.get("pass_medians_s")
    numbers = isinstance(value, list) and value and all(isinstance(v, int | float) for v in value)
    return np.asarray(value, dtype=float) if numbers else None


def _first_call_s(extra: Mapping[str, Any]) -> float:
    value = extra.get("first_call_ms")
    return float(value) / 1e3 if isinstance(value, int | float) and not isinstance(value, bool) else float("nan")


def conformance_rows_from(path: Path, document: Mapping[str, Any]) -> list[dict[str, Any]]:
    results = document.get("results")
    if not isinstance(results, list):
        raise ReportInputError(
            f"{path}: a {CONFORMANCE_SCHEMA} file needs a 'results' list; it has {type(results).__name__}"
        )
    rows = []
    for index, result in enumerate(results):
        outcome = result.get("outcome") if isinstance(result, Mapping) else None
        if outcome not in OUTCOMES or not result.get("check"):
            raise ReportInputError(
                f"{path}: results[{index}] needs a 'check' name and an 'outcome' in {OUTCOMES}; got {result!r}"
            )
        rows.append(
            {
                "source": str(path),
                "implementation": str(document.get("implementation") or path.stem),
                "created": str(document.get("created", "")),
                "torch": str(document.get("torch", "")),
                "check": str(result["check"]),
                "outcome": outcome,
                "message": str(result.get("message") or result.get("reason") or ""),
                "duration_s": float(result.get("duration_s") or 0.0),
                "by_design": bool(result.get("by_design", False)),
            }
        )
    return rows


def read_training_csv(path: Path) -> pd.DataFrame:
    """One seed's `durations.csv`; its sweep is the folder above `seed<N>/` (or its own folder)."""
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ReportInputError(f"{path}: not a readable training CSV ({error}); re-run the training") from error
    missing = [c for c in ("episode", "duration") if c not in frame.columns]
    if missing:
        raise ReportInputError(
            f"{path}: training CSV lacks column(s) {', '.join(missing)}; "
            f"expected the header {','.join(TRAINING_COLUMNS)}"
        )
    seed_match = re.fullmatch(r"seed[_-]?(\d+)", path.parent.name)
    sweep_dir = path.parent.parent if seed_match else path.parent
    frame = frame.reindex(columns=list(TRAINING_COLUMNS))
    frame.insert(0, "seed", seed_match.group(1) if seed_match else path.parent.name)
    frame.insert(0, "sweep", sweep_dir.name or str(sweep_dir))
    frame.insert(0, "source", str(path))
    return frame


def _metadata_files(folder: Path) -> list[Path]:
    return [folder / "summary.json", *sorted(folder.glob("seed*/config.json"))]


def _read_optional_json(path: Path) -> Any:
    """A metadata file's content, or None when it is absent or unreadable (the curves are still reported)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def sweep_infos(training: pd.DataFrame) -> dict[str, SweepInfo]:
    """Per sweep: its configuration (summary.json's, else a seed's config.json) and each seed's final greedy
    evaluation (`final_eval_mean` in summary.json; None where not recorded)."""
    infos: dict[str, SweepInfo] = {}
    for sweep, rows in training.groupby("sweep", sort=True):
        source = Path(str(rows["source"].iloc[0]))
        folder = source.parent.parent if re.fullmatch(r"seed[_-]?\d+", source.parent.name) else source.parent
        summary = _read_optional_json(folder / "summary.json")
        summary = summary if isinstance(summary, Mapping) else {}
        config = summary.get("config")
        if not isinstance(config, Mapping):
            configs = [_read_optional_json(p) for p in sorted(folder.glob("seed*/config.json"))]
            config = next((c for c in configs if isinstance(c, Mapping)), None)
        evaluations: dict[str, float | None] = {str(seed): None for seed in rows["seed"].unique()}
        for entry in summary.get("seeds") or []:
            if isinstance(entry, Mapping) and "seed" in entry:
                value = entry.get("final_eval_mean")
                evaluations[str(entry["seed"])] = float(value) if isinstance(value, int | float) else None
        infos[str(sweep)] = SweepInfo(folder, config, evaluations)
    return infos
