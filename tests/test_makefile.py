"""The Makefile's venv rule, run on a copy of the Makefile in a temporary folder with a
stand-in interpreter (no real venv is made): a half-made .venv is rebuilt, a complete one is
updated in place, and the stamp is written only once the install succeeded."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A stand-in for python3.11: `-m venv DIR` copies itself to DIR/bin/python; `-m pip` logs its
# arguments and fails when a `no-pip` file sits in the venv (Debian's venv without
# python3.11-venv) or, for `install -r`, when FAIL_INSTALL is set (an interrupted install).
FAKE_PYTHON = """#!/bin/sh
if [ "$1 $2" = "-m venv" ]; then
    mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && echo "venv $3" >> "$LOG"; exit 0
fi
if [ "$1 $2" = "-m pip" ]; then
    shift 2; echo "pip $*" >> "$LOG"
    [ -e "$(dirname "$0")/../no-pip" ] && exit 1
    [ "$*" = "install -q -r requirements.txt" ] && [ -n "$FAIL_INSTALL" ] && exit 1
    exit 0
fi
exit 2
"""


@pytest.fixture
def project(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path)
    for name in ("requirements.txt", "pyproject.toml"):
        (tmp_path / name).write_text("")
    python = tmp_path / "python3.11"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return tmp_path


def make(project: Path, **env) -> tuple[int, list[str]]:
    """Run `make .venv/.installed` in `project`; its exit status and the stand-in's log."""
    log = project / "log"
    log.write_text("")
    run = subprocess.run(
        [
            "make",
            "-s",
            ".venv/.installed",
            f"PYTHON={project / 'python3.11'}",
        ],
        cwd=project,
        env={**os.environ, "LOG": str(log), **env},
        capture_output=True,
        text=True,
    )
    return run.returncode, log.read_text().splitlines()


def test_a_fresh_venv_is_made_and_stamped_last(project):
    status, log = make(project)
    assert status == 0
    assert (
        log[0].startswith("venv ")
        and log[-1] == "pip install -q -r requirements.txt"
    )
    assert (project / ".venv/.installed").is_file()
    assert make(project) == (0, [])  # up to date: nothing runs


def assert_rebuilt(project):
    """make rebuilds the half-made .venv from scratch: a file left in it is gone."""
    (project / ".venv/leftover").write_text("")
    status, log = make(project)
    assert status == 0 and log[0].startswith("venv ")
    assert not (project / ".venv/leftover").exists()
    assert (project / ".venv/.installed").is_file()


def test_an_interrupted_install_leaves_no_stamp_and_is_rebuilt(project):
    status, _ = make(project, FAIL_INSTALL="1")
    assert status != 0
    assert (project / ".venv/bin/python").is_file()
    assert not (project / ".venv/.installed").exists()
    assert_rebuilt(project)


def test_a_venv_without_pip_is_rebuilt(project):
    # As `python3.11 -m venv` leaves it on Debian without python3.11-venv:
    # an interpreter, no pip.
    (project / ".venv/bin").mkdir(parents=True)
    shutil.copy(project / "python3.11", project / ".venv/bin/python")
    assert_rebuilt(project)


def test_a_complete_venv_is_updated_in_place(project):
    assert make(project)[0] == 0
    (project / ".venv/kept").write_text("")
    stamp = project / ".venv/.installed"
    os.utime(stamp, (0, 0))  # older than requirements.txt
    status, log = make(project)
    assert status == 0
    assert not any(line.startswith("venv") for line in log)
    assert (project / ".venv/kept").is_file() and stamp.stat().st_mtime > 0
    # Negative control: the same venv with pip broken is not updated in place.
    (project / ".venv/no-pip").write_text("")
    os.utime(stamp, (0, 0))
    assert make(project)[1][1].startswith("venv ")
