"""The history store: every benchmark run kept as a compact summary, never overwritten, its raw rounds beside it.

Layout: ``<dir>/<machine id>/<UTC time of the run>-<short commit>[-dirty].json.gz``: the run's pytest-benchmark
JSON with each benchmark's raw rounds (`stats["data"]`) left out, gzipped. Everything else stays: medians,
quartiles, IQR, means, round counts, pass medians (`extra_info.pass_medians_s`), machine and commit facts; a
run of the whole suite is a few KB. The full run, raw rounds included, goes to ``<dir>-raw/<machine id>/<same
name>`` (`reports/history-raw/`, git-ignored, outside the store so that readers of the store never see a run
twice): the rounds are the large part, and the verdicts need only the summaries. Runs
stored before summaries keep their raw rounds in git history (e.g. `git show e835409:reports/history/<machine>/
<file>`). Run names sort chronologically, so "the newest run" and "the previous run" are the last two in a
machine's folder. Runs from different machines live in different folders and are never compared without being
asked (see `dqnbench.bench.compare`).

    dqnbench bench store results.json [--dir reports/history]
    python -m dqnbench.bench.history list [--dir reports/history] [--machine ID]
    python -m dqnbench.bench.history pack [--dir reports/history]     # gzip runs stored as plain JSON
    python -m dqnbench.bench.history compact [--dir reports/history]  # full runs -> summaries + <dir>-raw/
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import sys
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path("reports/history")
PLAIN, PACKED = ".json", ".json.gz"
RAW_SUFFIX = "-raw"
"""The store `<dir>` keeps full runs, raw rounds included, in `<dir>-raw/<machine>/` (git-ignored)."""
REQUIRED_STATS = ("median", "q1", "q3", "iqr", "rounds")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "unknown"


def machine_id_from_info(machine_info: dict[str, Any]) -> str:
    """The history store's folder name for the machine a run came from.

    A run written by this suite carries it (`machine_info.dqnbench.machine_id`); for any other
    pytest-benchmark JSON it is derived from the host name, CPU model, core count, architecture and GPUs (their
    names, and their UUIDs where recorded), so a different CPU or GPU under the same host name is a different
    machine: leased GPU machines share one host name and one hardware model, but each card has its own UUID.
    """
    recorded = machine_info.get("dqnbench", {}).get("machine_id") if isinstance(machine_info, dict) else None
    if isinstance(recorded, str) and recorded:
        return recorded
    cpu = machine_info.get("cpu", {}) if isinstance(machine_info.get("cpu"), dict) else {}
    hardware = [
        str(cpu.get("brand_raw", "")),
        str(cpu.get("count", "")),
        str(machine_info.get("machine", "")),
        *[str(name) for name in machine_info.get("dqnbench", {}).get("gpus", [])],
        *[str(uuid) for uuid in machine_info.get("dqnbench", {}).get("gpu_uuids", [])],
    ]
    digest = hashlib.sha256("|".join(hardware).encode()).hexdigest()[:8]
    return f"{_slug(str(machine_info.get('node', 'unknown')))}-{digest}"


class BenchFileError(ValueError):
    """A file that is not a usable pytest-benchmark run; the message names the file and what is wrong."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)


@dataclass(frozen=True)
class Run:
    """A validated pytest-benchmark run."""

    path: Path
    data: dict[str, Any]

    @property
    def machine_id(self) -> str:
        return machine_id_from_info(self.data["machine_info"])

    @property
    def commit(self) -> str:
        info = self.data["commit_info"]
        commit = str(info.get("id") or "unknown")
        short = commit[:8] if re.fullmatch(r"[0-9a-f]{7,40}", commit) else _slug(commit)
        return f"{short}-dirty" if info.get("dirty") else short

    @property
    def time(self) -> datetime:
        return datetime.fromisoformat(self.data["datetime"]).astimezone(UTC)

    @property
    def quick(self) -> bool:
        return bool(self.data["machine_info"].get("dqnbench", {}).get("mode") == "quick")

    @property
    def benchmarks(self) -> dict[str, dict[str, Any]]:
        """Benchmarks by `fullname` (the test node id: file, function and parameters)."""
        return {bench["fullname"]: bench for bench in self.data["benchmarks"]}

    def run_name(self) -> str:
        """The stored file's name without its suffix: when the run was made, and from which commit."""
        return f"{self.time:%Y%m%dT%H%M%S.%fZ}-{self.commit}"


def run_name(path: Path) -> str:
    """A stored run's name: its file name without `.json` or `.json.gz`."""
    return path.name.removesuffix(PACKED).removesuffix(PLAIN)


def is_run_file(path: Path) -> bool:
    """Whether `path` is named like a JSON result, plain or gzipped (temporary `.name` files are not)."""
    return path.name.endswith((PLAIN, PACKED)) and not path.name.startswith(".")


def read_result_bytes(path: Path) -> bytes:
    """The bytes of a JSON result file as the run wrote them, gunzipped when it is named `*.json.gz`.

    Raises OSError when the file cannot be read, and `BenchFileError` when a `.gz` file is not sound gzip data.
    """
    raw = path.read_bytes()
    if not path.name.endswith(PACKED):
        return raw
    try:
        return gzip.decompress(raw)
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise BenchFileError(
            path, f"is not sound gzip data ({error}); was it copied or written only in part? Restore it"
        ) from error


def read_result_text(path: Path) -> str:
    return read_result_bytes(path).decode("utf-8", errors="replace")


def _packed(raw: bytes) -> bytes:
    # mtime=0: the same run always packs to the same bytes, so storing it again is seen as a repeat.
    return gzip.compress(raw, compresslevel=9, mtime=0)


def load_run(path: Path | str) -> Run:
    """Read and validate a pytest-benchmark JSON file (or gzipped JSON), raising `BenchFileError` naming it."""
    path = Path(path)
    try:
        text = read_result_text(path)
    except OSError as error:
        raise BenchFileError(path, f"cannot be read ({error.strerror or error})") from error
    if not text.strip():
        raise BenchFileError(path, "is empty; expected the JSON a `pytest --benchmark-json=FILE` run writes")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise BenchFileError(
            path,
            f"is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
            "was the run interrupted while writing it?",
        ) from error
    if not isinstance(data, dict) or not {"machine_info", "commit_info", "benchmarks", "datetime"} <= set(data):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise BenchFileError(
            path,
            f"is not pytest-benchmark JSON: expected keys machine_info, commit_info, benchmarks and "
            f"datetime, got {keys}",
        )
    if not isinstance(data["benchmarks"], list) or not data["benchmarks"]:
        raise BenchFileError(
            path, "holds no benchmarks; was the run made with --benchmark-disable, or were all benchmarks skipped?"
        )
    for index, bench in enumerate(data["benchmarks"]):
        stats = bench.get("stats") if isinstance(bench, dict) else None
        if not isinstance(stats, dict) or "fullname" not in bench:
            raise BenchFileError(path, f"benchmarks[{index}] has no fullname or stats")
        missing = [key for key in REQUIRED_STATS if not isinstance(stats.get(key), int | float)]
        if missing:
            raise BenchFileError(path, f"benchmarks[{index}] ({bench['fullname']}) lacks the statistics {missing}")
        if stats["median"] <= 0:
            raise BenchFileError(
                path, f"benchmarks[{index}] ({bench['fullname']}) has median {stats['median']}: not a timing"
            )
    try:
        datetime.fromisoformat(str(data["datetime"]))
    except ValueError as error:
        raise BenchFileError(path, f"datetime {data['datetime']!r} is not an ISO 8601 time") from error
    return Run(path, data)


@dataclass(frozen=True)
class Stored:
    path: Path
    new: bool
    """False when the identical run was already in the store (storing is idempotent)."""


def _write_new(path: Path, content: bytes) -> bool:
    """Create `path` with `content` in one step, on disk; False, with nothing written, when `path` exists."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(content)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; a stored run is as readable as the others
        # A hard link appears complete or not at all, and never replaces an existing file (unlike rename).
        os.link(tmp_name, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp_name)
        _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Put the folder's entries (a new link, an unlink) on disk, so that a crash cannot reorder them."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def summary(data: dict[str, Any]) -> dict[str, Any]:
    """A run's JSON without its raw rounds (`stats["data"]` of each benchmark): all its statistics and facts."""
    benchmarks = [
        {**bench, "stats": {key: value for key, value in bench["stats"].items() if key != "data"}}
        for bench in data["benchmarks"]
    ]
    return {**data, "benchmarks": benchmarks}


def _summary_bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(summary(data), indent=1).encode()


def _keep_raw(folder: Path, name: str, raw: bytes) -> None:
    """The full run in the raw store beside the store `folder` belongs to (never replacing one already there)."""
    raw_path(folder, name).parent.mkdir(parents=True, exist_ok=True)
    _write_new(raw_path(folder, name), _packed(raw))


def raw_path(folder: Path, name: str) -> Path:
    """Where the full run `name` of the machine folder `folder` (`<dir>/<machine>`) is kept: `<dir>-raw/<machine>/`."""
    return folder.parent.with_name(folder.parent.name + RAW_SUFFIX) / folder.name / f"{name}{PACKED}"


def store(path: Path | str, directory: Path | str = DEFAULT_DIR) -> Stored:
    """Add the run in `path` to the history store as a summary, its full JSON to `<dir>-raw/`; nothing is replaced."""
    run = load_run(path)
    if run.quick:
        raise BenchFileError(
            run.path,
            "is a --quick run (every benchmark once: a smoke test, not a measurement); run the "
            "benchmarks without --quick to store them",
        )
    folder = Path(directory) / run.machine_id
    folder.mkdir(parents=True, exist_ok=True)
    raw = read_result_bytes(run.path)
    compact = _summary_bytes(run.data)
    for attempt in range(1, 1000):
        # "_N" sorts after the bare name, so a second run with the same name still lists after the first.
        name = run.run_name() if attempt == 1 else f"{run.run_name()}_{attempt}"
        plain, packed = folder / f"{name}{PLAIN}", folder / f"{name}{PACKED}"
        for existing in (packed, plain):
            if existing.exists() and read_result_bytes(existing) in (compact, raw):
                return Stored(existing, new=False)
        if not plain.exists() and _write_new(packed, _packed(compact)):
            _keep_raw(folder, name, raw)
            return Stored(packed, new=True)
    raise BenchFileError(run.path, f"999 different runs named {run.run_name()}* are already in {folder}")


@dataclass(frozen=True)
class Packed:
    source: Path
    packed: Path
    bytes_before: int
    bytes_after: int


def pack(directory: Path | str = DEFAULT_DIR) -> tuple[list[Packed], list[BenchFileError]]:
    """Replace each uncompressed run in the store by its gzipped copy, once the copy is on disk and reads back
    identical; the runs packed, and the problems of those left as they were (nothing is ever deleted unproven).
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such history store; give the folder `tox -e bench` stores runs in")
    done: list[Packed] = []
    problems: list[BenchFileError] = []
    for source in sorted(root.glob(f"*/*{PLAIN}")):
        if source.name.startswith("."):
            continue
        try:
            done.append(_pack_one(source))
        except BenchFileError as problem:
            problems.append(problem)
        except OSError as error:
            problems.append(BenchFileError(source, f"left as it is: {error.strerror or error}"))
    return done, problems


def _pack_one(source: Path) -> Packed:
    raw = source.read_bytes()
    target = source.with_name(f"{run_name(source)}{PACKED}")
    existed = target.exists()
    if not existed and not _write_new(target, _packed(raw)):
        raise BenchFileError(source, f"{target.name} appeared beside it while packing; run pack again")
    if read_result_bytes(target) != raw:
        if existed:
            raise BenchFileError(source, f"differs from {target.name} beside it; both are kept: move one of them aside")
        raise BenchFileError(target, f"does not read back as {source.name}; both are kept")
    source.unlink()
    _sync_folder(source.parent)
    return Packed(source, target, len(raw), target.stat().st_size)


def compact(directory: Path | str = DEFAULT_DIR) -> list[Path]:
    """Turn every stored run that still holds raw rounds into its summary, in place, once its full copy is safe in
    `<dir>-raw/` (read back identical); the runs compacted. The summary keeps every statistic, only not the rounds."""
    done = []
    for machine in machines(directory):
        folder = Path(directory) / machine
        for path in machine_runs(directory, machine):
            run = load_run(path)
            if not any("data" in bench["stats"] for bench in run.data["benchmarks"]):
                continue
            raw = read_result_bytes(path)
            _keep_raw(folder, run_name(path), raw)
            if read_result_bytes(raw_path(folder, run_name(path))) != raw:
                raise BenchFileError(path, f"{raw_path(folder, run_name(path))} is another run; left as it is")
            fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(_packed(_summary_bytes(run.data)) if path.name.endswith(PACKED) else _summary_bytes(run.data))
                tmp.flush()
                os.fsync(tmp.fileno())
            os.chmod(tmp_name, 0o644)  # mkstemp makes it private; a stored run is as readable as the others
            os.replace(tmp_name, path)
            done.append(path)
    return done


def machine_runs(directory: Path | str, machine: str) -> list[Path]:
    """The runs stored for `machine`, plain or gzipped, oldest first."""
    folder = Path(directory) / machine
    if not folder.is_dir():
        return []
    return sorted(without_packed_twins(path for path in folder.iterdir() if path.is_file() and is_run_file(path)),
                  key=_order)  # fmt: skip


def without_packed_twins(paths: Iterable[Path]) -> list[Path]:
    """`paths` less each `X.json` whose `X.json.gz` is among them (what an interrupted `pack` leaves): one run."""
    chosen = list(paths)
    packed = {path.with_name(run_name(path)) for path in chosen if path.name.endswith(PACKED)}
    return [path for path in chosen if path.name.endswith(PACKED) or path.with_name(run_name(path)) not in packed]


def _order(path: Path) -> tuple[str, str]:
    return run_name(path), path.name


def machines(directory: Path | str) -> list[str]:
    root = Path(directory)
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def newest_run(directory: Path | str, machine: str | None = None) -> Path:
    """The most recent stored run (of `machine`, or of any machine), by the run's time."""
    candidates = (
        machine_runs(directory, machine)
        if machine
        else [path for name in machines(directory) for path in machine_runs(directory, name)]
    )
    if not candidates:
        where = f"{Path(directory) / machine}" if machine else f"{directory}"
        raise FileNotFoundError(
            f"no stored benchmark runs under {where}; store one with "
            "`python -m dqnbench.bench.history store RESULTS.json`"
        )
    return max(candidates, key=lambda path: (*_order(path), str(path)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dqnbench.bench.history", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    store_cmd = commands.add_parser("store", help="add pytest-benchmark JSON files to the history store")
    store_cmd.add_argument("files", nargs="+", type=Path, metavar="FILE")
    store_cmd.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"history store (default: {DEFAULT_DIR})")
    list_cmd = commands.add_parser("list", help="list the stored runs, oldest first")
    list_cmd.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"history store (default: {DEFAULT_DIR})")
    list_cmd.add_argument("--machine", help="only this machine's runs")
    pack_cmd = commands.add_parser("pack", help="gzip the runs stored uncompressed, keeping each until proven equal")
    pack_cmd.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"history store (default: {DEFAULT_DIR})")
    compact_cmd = commands.add_parser("compact", help="runs holding raw rounds -> summaries (full runs to <dir>-raw/)")
    compact_cmd.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"history store (default: {DEFAULT_DIR})")
    args = parser.parse_args(argv)

    if args.command == "compact":
        for path in compact(args.dir):
            print(f"compacted: {path} (full run in {raw_path(path.parent, run_name(path))})")
        return 0
    if args.command == "pack":
        try:
            packed, problems = pack(args.dir)
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        for item in packed:
            print(f"packed: {item.source} -> {item.packed.name} ({item.bytes_before:,} -> {item.bytes_after:,} bytes)")
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if problems:
            print(f"{len(packed)} run(s) packed, {len(problems)} left uncompressed (above)", file=sys.stderr)
            return 1
        print(f"{len(packed)} run(s) packed" if packed else f"nothing to pack: every run under {args.dir} is gzipped")
        return 0
    if args.command == "list":
        for name in [args.machine] if args.machine else machines(args.dir):
            for path in machine_runs(args.dir, name):
                print(path)
        return 0
    return store_files(args.files, args.dir)


def store_files(files: Sequence[Path], directory: Path) -> int:
    """Store each file, saying where; the exit status (1 when any could not be stored, each named)."""
    failed = False
    for file in files:
        try:
            stored = store(file, directory)
        except (BenchFileError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            failed = True
            continue
        print(f"{'stored' if stored.new else 'already stored'}: {file} -> {stored.path}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
