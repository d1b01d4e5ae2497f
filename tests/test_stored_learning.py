"""The stored learning results (`reports/learning/`): compact, labelled, and consistent with their CSVs."""

import json
from pathlib import Path

import pytest

from dqnbench.config import NAMED_CONFIGS
from dqnbench.sweep_summary import seed_dirs, summarise

LEARNING = Path(__file__).resolve().parents[1] / "reports" / "learning"
INDEX = json.loads((LEARNING / "index.json").read_text())
FOLDERS = sorted(path.name for path in LEARNING.iterdir() if path.is_dir())
RUN_OPTIONS = {"seed", "out", "device", "episodes", "max_env_steps", "compile", "cuda_graph"}
"""Fields that say how long and where a run went, not what learned: excluded when matching a named config."""


def test_every_folder_is_labelled_in_the_index_and_the_index_names_no_missing_folder():
    assert sorted(INDEX["folders"]) == FOLDERS
    for name, entry in INDEX["folders"].items():
        assert entry["status"] in ("current", "candidate", "superseded"), (name, entry["status"])
        assert entry["command"] and entry["note"], name


@pytest.mark.parametrize("name", sorted(NAMED_CONFIGS))
def test_the_current_folders_of_a_named_configuration_ran_that_configuration(name):
    expected = NAMED_CONFIGS[name].to_json_dict()
    for folder in INDEX["current"][name]:
        assert INDEX["folders"][folder]["status"] == "current", folder
        for seed, run in seed_dirs(LEARNING / folder).items():
            stored = json.loads((run / "config.json").read_text())
            differing = {
                key: (stored[key], expected[key])
                for key in stored.keys() & expected.keys() - RUN_OPTIONS
                if stored[key] != expected[key]
            }
            assert not differing, f"{folder}/seed{seed} is labelled --config {name} but differs: {differing}"


@pytest.mark.parametrize("folder", FOLDERS)
def test_a_folder_holds_compact_results_and_its_summary_matches_its_files(folder):
    path = LEARNING / folder
    heavy = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.suffix in (".pt", ".png") and p.is_file())
    ignored = (LEARNING.parents[1] / ".gitignore").read_text()
    assert not heavy or ("reports/learning/**/*.pt" in ignored and "reports/learning/**/*.png" in ignored), heavy
    for run in seed_dirs(path).values():
        assert (run / "durations.csv").is_file() and (run / "config.json").is_file(), run
    stored = json.loads((path / "summary.json").read_text())
    again = json.loads(json.dumps(summarise(path), allow_nan=True).replace("NaN", "null"))
    for key in ("reached", "iqm_final_mean", "iqm_final_eval_mean", "evaluated"):
        close = stored[key] == again[key] or (
            None not in (stored[key], again[key]) and stored[key] == pytest.approx(again[key])
        )
        assert close, f"{folder}/summary.json: {key} is {stored[key]}, its files give {again[key]}"
    assert [s["final_eval_mean"] for s in stored["seeds"]] == [s["final_eval_mean"] for s in again["seeds"]]
