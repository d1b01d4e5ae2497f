"""Results are written whole or not at all, readable like any file the user writes, and never replaced."""

import os

import pytest

from dqnbench.files import atomic_write, atomic_write_text, refuse_to_overwrite


def test_atomic_write_gives_the_file_the_umask_mode_not_mkstemps_owner_only(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "r.csv", "a,b\n")
    finally:
        os.umask(umask)
    assert oct((tmp_path / "r.csv").stat().st_mode & 0o777) == oct(0o644)


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "r.csv"
    target.write_text("old\n")

    def crash(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, crash)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]


def test_refuse_to_overwrite_names_the_path_and_the_fix(tmp_path):
    (tmp_path / "run").mkdir()
    refuse_to_overwrite(tmp_path / "run", "output folder", "pass a new --out")  # empty folder: fine
    (tmp_path / "run" / "durations.csv").write_text("x")
    with pytest.raises(FileExistsError, match=r"output folder .*run already exists .*; pass a new --out"):
        refuse_to_overwrite(tmp_path / "run", "output folder", "pass a new --out")
