"""The report folder: what it holds and how large, never overwritten, the command line, numbers checked against the
stored data they come from, and the page opened and looked at in a real headless Chromium."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dqnbench.cli import main
from dqnbench.report import ReportInputError, build_report
from report_support import bench_document, conformance_document, passes, write_json, write_sweep

REPOSITORY = Path(__file__).resolve().parent.parent
ARTEFACTS = REPOSITORY / "build" / "artefacts"
"""Where tests leave what a person may want to look at after CI (git-ignored, like all of build/)."""
KB = 1024


@pytest.fixture
def full_inputs(tmp_path: Path) -> list[Path]:
    """Every kind of input: two machines (one with a GPU) with histories timed in passes, conformance results,
    and training folders (the current tuned configuration among them)."""
    results = tmp_path / "results"
    for day in range(1, 6):
        cpu_entries = [
            (op, "cpu", impl, passes(base * (1 if impl == "reference" else 1 / gain), 0.03, seed=day * 7 + i))
            for i, (op, base, gain) in enumerate([("optimize", 30e-3, 1.2), ("replay_sample", 2e-3, 3.0)])
            for impl in ("reference", "fast")
        ]
        write_json(results, f"history/lab/{day}.json", bench_document(
            cpu_entries, when=f"2026-11-2{day}T10:00:00+00:00", commit=str(day) * 40, node="lab"))  # fmt: skip
        gpu_entries = cpu_entries + [(op, "cuda", impl, [v / 8 for v in t]) for op, _, impl, t in cpu_entries]
        write_json(results, f"history/gpu/{day}.json", bench_document(
            gpu_entries, when=f"2026-11-2{day}T11:00:00+00:00", commit=str(day) * 40, node="gpu",
            gpus=["NVIDIA Test"], kernel="6.18" if day < 4 else "6.19"))  # fmt: skip
    write_json(results, "conformance/reference.json", conformance_document("reference"))
    write_json(results, "conformance/mine.json", conformance_document("mine", failed=["bellman_targets"]))
    from test_report import tuned_config

    write_sweep(results / "learning", "current", 230, config=tuned_config())
    write_sweep(results / "learning", "trial", 40)
    return [results]


def test_report_folder_holds_small_figures_a_small_page_and_the_summary_first(
    full_inputs: list[Path], tmp_path: Path
) -> None:
    folder = build_report(full_inputs, out_root=tmp_path / "reports", name="full")
    stems = {"speedups", "cuda_speedups", "history", "learning_curves", "learning_appendix", "conformance", "passes"}
    assert {p.name for p in folder.iterdir()} == {"index.html", "report.md"} | {
        f"{s}.{ext}" for s in stems for ext in ("png", "svg")
    }
    page = (folder / "index.html").read_text()
    assert sorted(re.findall(r'<img src="([^"]+)"', page)) == sorted(f"{s}.png" for s in stems)
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "the page must open offline"
    assert page.index('<section id="summary">') < page.index("<h2>Results</h2>")
    for anchor in re.findall(r'<a href="#([^"]+)">details</a>', page):
        assert f'<section id="{anchor}">' in page, f"summary link #{anchor} has no section"
    markdown = (folder / "report.md").read_text()
    assert markdown.split("\n\n")[1] == "## Summary"
    for path in folder.glob("*.png"):
        assert path.stat().st_size <= 300 * KB, f"{path.name} is {path.stat().st_size / KB:.0f} KB"
    for path in folder.glob("*.svg"):
        svg = path.read_text()
        assert "<text" in svg and '<path id="DejaVuSans' not in svg, f"{path.name}: glyphs drawn as paths"
    assert (folder / "index.html").stat().st_size <= 1024 * KB
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 2048 * KB
    assert not list((tmp_path / "reports").glob(".*")), "no staging folder may be left behind"


def test_existing_report_is_never_overwritten(tmp_path: Path) -> None:
    run = write_json(tmp_path, "run.json", bench_document([("op", "cpu", "reference", [1e-3])]))
    folder = build_report([run], out_root=tmp_path / "reports", name="mine")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(FileExistsError, match=f"{re.escape(str(folder))} already exists.*choose another --name"):
        build_report([run], out_root=tmp_path / "reports", name="mine")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_bad_input_writes_no_report(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("")
    with pytest.raises(ReportInputError):
        build_report([bad], out_root=tmp_path / "reports", name="x")
    assert not (tmp_path / "reports" / "x").exists()


def test_cli_prints_progress_and_reports_bad_input_by_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entries = [("op", "cpu", "reference", [2e-3]), ("op", "cpu", "fast", [1e-3])]
    run = write_json(tmp_path, "run.json", bench_document(entries))
    assert main(["report", str(run), "--out", str(tmp_path / "reports"), "--name", "cli"]) == 0
    out, err = capsys.readouterr()
    assert "reports/cli/index.html" in out
    assert re.search(r"\[\s*[\d.]+ s\] reading .*run\.json", err) and "drawing figure 1" in err, err
    assert "read 1 file: 1 benchmark run, 0 training curves" in err
    assert main(["report", str(run), "--out", str(tmp_path / "reports"), "--name", "cli"]) == 2
    assert "already exists" in capsys.readouterr().err
    truncated = tmp_path / "cut.json"
    truncated.write_text('{"benchmarks": [')
    assert main(["report", str(truncated), "--out", str(tmp_path / "reports"), "--name", "cut"]) == 2
    assert f"dqnbench report: error: {truncated}: not valid JSON" in capsys.readouterr().err


def test_cli_without_arguments_reads_reports_and_writes_under_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report"]) == 2
    err = capsys.readouterr().err
    assert "no stored results here" in err and "Run `dqnbench report` from the repository root" in err, err
    for day in (20, 21):
        document = bench_document([("op", "cpu", "x", [1e-3])], when=f"2026-11-{day}T10:00:00+00:00")
        write_json(tmp_path, f"reports/history/lab-1/202611{day}T100000Z-aaaaaaaa.json", document)
    lenient = tmp_path / "thresholds.toml"
    lenient.write_text('default = 0.5\n[benchmarks]\n"test_op*" = 0.7\n')
    assert main(["report", "--name", "all", "--thresholds", str(lenient)]) == 0
    markdown = (tmp_path / "build" / "reports" / "all" / "report.md").read_text()
    assert "threshold (50% by default, 70% for `test_op*`)" in markdown


def test_same_inputs_give_the_same_report(tmp_path: Path) -> None:
    entries = [("op", "cpu", "reference", passes(1e-3)), ("op", "cpu", "fast", passes(5e-4, seed=3))]
    run = write_json(tmp_path, "run.json", bench_document(entries))
    first = build_report([run], out_root=tmp_path / "one", name="same")
    second = build_report([run], out_root=tmp_path / "two", name="same")
    for name in ("report.md", "index.html", "speedups.svg", "speedups.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), f"{name} differs between identical runs"


# ---- the stored data -----------------------------------------------------------------------------------------


def _newest_commit_ratios(machine: Path, operation: str, device: str) -> np.ndarray:
    """fast / reference per-pass ratios of `operation` over the runs of the machine's newest commit, straight
    from the stored JSON."""
    runs = [json.loads(gzip.decompress(p.read_bytes())) for p in sorted(machine.glob("*.json.gz"))]
    runs = [r for r in runs if r["machine_info"].get("dqnbench", {}).get("mode") != "quick"]
    newest = max(runs, key=lambda r: r["datetime"])["commit_info"]["id"]
    ratios: list[float] = []
    for run in runs:
        if run["commit_info"]["id"] != newest:
            continue
        found = {
            b["extra_info"]["impl"]: b["extra_info"]
            for b in run["benchmarks"]
            if b["name"].startswith(f"test_{operation}[") and b["extra_info"].get("device") == device
        }
        if {"reference", "fast"} <= found.keys():
            ratios += list(np.divide(found["reference"]["pass_medians_s"], found["fast"]["pass_medians_s"]))
    return np.asarray(ratios)


@pytest.mark.slow
def test_the_report_of_the_stored_results_states_the_numbers_they_hold(tmp_path: Path) -> None:
    stored = REPOSITORY / "reports"
    machine = stored / "history" / "vm-0bd6b127"
    if not machine.is_dir():
        pytest.skip("the stored history of vm-0bd6b127 is not in this checkout")
    folder = build_report([stored], out_root=tmp_path, name="stored")
    markdown = (folder / "report.md").read_text()
    summary = markdown.split("## Results")[0]
    ratios = _newest_commit_ratios(machine, "screen_render", "cpu")
    assert len(ratios) >= 3
    assert f"screen render {float(np.median(ratios)):#.3g}×" in summary, summary
    # Learning: the current tuned configuration's seeds, each final mean at its own end.
    finals = []
    for csv in sorted((stored / "learning").glob("*/seed*/durations.csv")):
        config = json.loads((csv.parent.parent / "summary.json").read_text()).get("config", {}) if (
            csv.parent.parent / "summary.json").is_file() else {}  # fmt: skip
        if (
            config.get("target_update_steps") == 5000
            and config.get("learning_rate_final") == 3e-5
            and csv.parent.parent.name in summary
        ):
            durations = np.loadtxt(csv, delimiter=",", skiprows=1, usecols=1)
            finals.append(durations[-100:].mean())
    assert finals, "no stored run of the current tuned configuration is named in the summary"
    assert "range of those means" in markdown and f"{min(finals):.1f}" in markdown and f"{max(finals):.1f}" in markdown


# ---- the page in a real browser ------------------------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
# Injected into a copy of the page: records console errors and failed loads from the first moment, and after
# `load` writes what the page looks like (image sizes, where the summary sits, figures wider than their column)
# into the DOM that --dump-dom prints.
PROBE = """<script>
window.__errors = [];
const __error = console.error;
console.error = (...args) => { window.__errors.push(args.join(' ')); __error(...args); };
window.addEventListener('error',
  e => window.__errors.push('error: ' + (e.message || (e.target && e.target.src))), true);
window.addEventListener('load', () => {
  const out = document.createElement('pre');
  out.id = 'probe';
  const summary = document.getElementById('summary');
  const overflowing = Array.from(document.querySelectorAll('figure')).filter(f => {
    const column = f.parentElement.getBoundingClientRect(), box = f.querySelector('img').getBoundingClientRect();
    return box.right > column.right + 1 || box.left < column.left - 1;
  }).map(f => f.id);
  out.textContent = JSON.stringify({
    images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
    errors: window.__errors, title: document.title, figures: document.querySelectorAll('figure').length,
    summaryTop: summary ? summary.getBoundingClientRect().top + window.scrollY : null,
    width: window.innerWidth, pageWidth: document.documentElement.scrollWidth, overflowing});
  document.body.appendChild(out);
});
</script>"""


def chromium_or_skip() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        reason = "Chromium is not installed (apt-get install chromium); the HTML report cannot be checked in a browser"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}, and CI=true: .ci/run must install it")
        pytest.skip(reason)
    return found


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_chromium_skips_locally_but_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="Chromium is not installed"):
        chromium_or_skip()


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def console_errors(stderr: str) -> list[str]:
    """Chromium logs page console messages as `...:CONSOLE(line)] "text", source: ...`; keep error-level ones."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line and ":ERROR:" in line]


@pytest.mark.slow
def test_html_report_renders_with_the_summary_on_the_first_screen(full_inputs: list[Path], tmp_path: Path) -> None:
    binary = chromium_or_skip()
    folder = build_report(full_inputs, out_root=tmp_path / "reports", name="browser")
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTEFACTS / "report-top.png"
    shot = run_chromium(
        binary, tmp_path / "profile-shot", "--window-size=1400,1000", f"--screenshot={screenshot}",
        (folder / "index.html").as_uri(),
    )  # fmt: skip
    assert shot.returncode == 0 and screenshot.is_file(), f"no screenshot: {shot.stderr[-2000:]}"
    assert console_errors(shot.stderr) == []
    # A blank page compresses to a few kB; a page of text and tables does not.
    assert screenshot.stat().st_size > 20_000, f"screenshot {screenshot} is only {screenshot.stat().st_size} bytes"
    print(f"screenshot of the top of the report: {screenshot}")
    probed = folder / "probed.html"  # beside the figures, which the page links
    probed.write_text((folder / "index.html").read_text().replace("<head>", "<head>" + PROBE, 1))

    dom = run_chromium(
        binary, tmp_path / "profile-dom", "--window-size=1400,1000", "--virtual-time-budget=10000", "--dump-dom",
        probed.as_uri(),
    )  # fmt: skip
    assert dom.returncode == 0, f"chromium --dump-dom exited {dom.returncode}: {dom.stderr[-2000:]}"
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"the page's load event never fired; DOM tail: {dom.stdout[-1000:]!r}"
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["title"] == "dqnbench report: browser"
    assert len(probe["images"]) == probe["figures"] == 7, probe
    blank = [i for i, (complete, width, height) in enumerate(probe["images"]) if not (complete and width and height)]
    assert not blank, f"images {blank} did not render (complete, naturalWidth, naturalHeight): {probe['images']}"
    assert probe["errors"] == [] and console_errors(dom.stderr) == [], (probe["errors"], console_errors(dom.stderr))
    assert probe["width"] == 1400, probe
    assert probe["summaryTop"] is not None and probe["summaryTop"] < 1000, f"summary starts at {probe['summaryTop']} px"
    assert probe["overflowing"] == [] and probe["pageWidth"] <= probe["width"], probe
