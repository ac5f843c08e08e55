"""The wheel ships the core, every adapter subpackage, and no framework import in the core."""

import ast
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.paths import REPO

ROOT = REPO
FRAMEWORKS = {"trl", "transformers", "openrlhf", "ray", "deepspeed", "vllm", "accelerate"}
CORE_DEPENDENCIES = {"numpy", "torch", "pydantic"}


def _subpackages(folder: Path, prefix: str) -> set[str]:
    return {
        ".".join((prefix, *init.parent.relative_to(folder).parts))
        for init in folder.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }


def test_every_package_folder_is_declared_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = set(config["tool"]["setuptools"]["packages"])
    on_disk = _subpackages(ROOT / "tampo_core", "tampo_core") | _subpackages(
        ROOT / "adapters", "tampo_core.adapters"
    )
    assert on_disk == declared


def test_core_depends_on_numpy_torch_pydantic_only() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    names = {
        dep.split(">")[0].split("=")[0].split("<")[0].strip()
        for dep in config["project"]["dependencies"]
    }
    assert names == CORE_DEPENDENCIES
    for path in (ROOT / "tampo_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & FRAMEWORKS, f"{path.name} imports {roots & FRAMEWORKS}"


def test_wheel_contains_core_and_adapters(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("tampo_core-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "tampo_core/__init__.py",
        "tampo_core/meta_policy.py",
        "tampo_core/kernel.py",
        "tampo_core/kernel_hidden.py",
        "tampo_core/adapters/__init__.py",
    }
    expected |= {
        "tampo_core/adapters/" + str(p.relative_to(ROOT / "adapters"))
        for p in (ROOT / "adapters").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert expected <= names, sorted(expected - names)
