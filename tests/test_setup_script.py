"""scripts/setup.sh refuses an interpreter older than the package needs, before any install."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.paths import REPO

FAKE_PYTHON = """#!/usr/bin/env bash
# Answers setup.sh's two version probes like a Python {version} would.
case "$2" in
    *print*) echo {version} ;;
    *exit*) exit {old} ;;
    *) exit 99 ;;
esac
"""


def run_setup(tmp_path: Path, python: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    return subprocess.run(
        ["bash", "scripts/setup.sh"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHON": python},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("version", ["3.10.12", "3.8.18"])
def test_an_old_python_is_refused_with_the_version_it_needs(tmp_path: Path, version: str) -> None:
    fake = tmp_path / "python-old"
    fake.write_text(FAKE_PYTHON.format(version=version, old=1))
    fake.chmod(0o755)
    done = run_setup(tmp_path, str(fake))
    assert done.returncode == 1
    assert (
        f"tampo-core needs Python >= 3.11 (pyproject.toml requires-python), got Python {version}"
        in (done.stderr)
    )
    assert "PYTHON=python3.11" in done.stderr
    assert "[setup 1/5" in done.stdout and "[setup 2/5" not in done.stdout
    assert not (tmp_path / ".venv").exists()


def test_a_missing_interpreter_is_named(tmp_path: Path) -> None:
    done = run_setup(tmp_path, str(tmp_path / "no-such-python"))
    assert done.returncode == 1
    assert "expected a Python >= 3.11 interpreter" in done.stderr
    assert "no-such-python" in done.stderr
    assert not (tmp_path / ".venv").exists()


def test_the_required_version_matches_pyproject() -> None:
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"
    assert "REQUIRED=(3 11)" in (REPO / "scripts" / "setup.sh").read_text()
