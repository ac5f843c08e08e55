"""The built wheel, installed alone and imported from outside the checkout, is the package.

One wheel is built per session (``pip wheel --no-deps``) and unpacked into a directory that a
clean subprocess puts first on its path, with its working directory outside the checkout, so
neither the checkout nor the editable install can supply a module. Every module the wheel holds
is imported from it; an adapter whose framework is not installed must fail with the adapter's
own "install the extra" message and is the only thing skipped.
"""

from __future__ import annotations

import ast
import email
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.paths import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
FRAMEWORKS = {
    *("trl", "transformers", "accelerate", "openrlhf", "ray", "deepspeed", "vllm"),
    *("verl", "omegaconf"),
}
"""What only the adapters may import: the frameworks and the packages they bring."""
ADAPTER_FRAMEWORK = {"trl": "trl", "openrlhf": "openrlhf", "verl": "verl"}
"""Adapter subpackage -> the distribution its import needs (torch_loop needs none)."""
CORE_DEPENDENCIES = {"numpy", "torch", "pydantic", "packaging"}
PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]

IMPORT_ALL = """
import importlib, json, sys
site, names = sys.argv[1], json.loads(sys.argv[2])
result = {}
for name in names:
    try:
        module = importlib.import_module(name)
    except ImportError as error:
        result[name] = {"error": f"{type(error).__name__}: {error}"}
    else:
        result[name] = {"file": module.__file__}
print(json.dumps(result))
"""

CORE_IMPORTS = """
import importlib, json, sys
import tampo_core
for name in json.loads(sys.argv[2]):
    importlib.import_module(name)
loaded = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"loaded": loaded, "version": tampo_core.__version__,
                  "file": tampo_core.__file__}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [*PIP_WHEEL, "-w", str(out), str(REPO)],
        check=True,
    )
    (built,) = out.glob("tampo_core-*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel unpacked as an installed distribution (a pure-Python wheel installs so)."""
    target = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


def wheel_modules(wheel: Path) -> list[str]:
    names = []
    for path in sorted(zipfile.ZipFile(wheel).namelist()):
        if path.startswith("tampo_core/") and path.endswith(".py"):
            parts = path[: -len(".py")].split("/")
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def run_outside_checkout(site: Path, code: str, names: list[str]) -> dict:
    """Run ``code`` in a fresh interpreter: cwd outside the checkout, the wheel first on the
    path, no user site-packages; it prints one JSON object."""
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(site), json.dumps(names)],
        cwd=site.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_module_imports_from_the_wheel_outside_the_checkout(wheel: Path, site: Path):
    names = wheel_modules(wheel)
    on_disk = {
        "tampo_core." + ".".join(p.relative_to(REPO / "tampo_core").with_suffix("").parts)
        for p in (REPO / "tampo_core").rglob("*.py")
    } | {
        "tampo_core.adapters." + ".".join(p.relative_to(REPO / "adapters").with_suffix("").parts)
        for p in (REPO / "adapters").rglob("*.py")
    }
    on_disk = {name.removesuffix(".__init__") for name in on_disk}
    assert set(names) == on_disk, "the wheel and the checkout hold different modules"
    results = run_outside_checkout(site, IMPORT_ALL, names)
    skipped, problems = [], []
    for name in names:
        result = results[name]
        parts = name.split(".")
        adapter = parts[2] if len(parts) > 2 and parts[1] == "adapters" else ""
        framework = ADAPTER_FRAMEWORK.get(adapter)
        if "error" not in result:
            if not Path(result["file"]).is_relative_to(site):
                problems.append(f"{name} came from {result['file']}, not the wheel")
            continue
        absent = framework is not None and importlib.util.find_spec(framework) is None
        intended = (
            f"tampo_core.adapters.{adapter} needs {framework}" in result["error"]
            and f'pip install ".[{adapter}]"' in result["error"]
        )
        if absent and intended:
            skipped.append(name)
        else:
            problems.append(f"{name}: {result['error']}")
    assert not problems, "\n".join(problems)
    assert len(skipped) < len(names) / 2, skipped


def test_the_core_imports_no_framework(wheel: Path, site: Path):
    core = [n for n in wheel_modules(wheel) if not n.startswith("tampo_core.adapters")]
    result = run_outside_checkout(site, CORE_IMPORTS, core)
    assert Path(result["file"]).is_relative_to(site)
    assert not set(result["loaded"]) & FRAMEWORKS


def _imported_roots(source: str) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_every_third_party_import_is_declared(wheel: Path):
    declared = {
        re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0].lower()
        for dep in PYPROJECT["project"]["dependencies"]
    }
    assert declared == CORE_DEPENDENCIES
    allowed = declared | set(sys.stdlib_module_names) | {"tampo_core"}
    with zipfile.ZipFile(wheel) as archive:
        for path in archive.namelist():
            if not (path.startswith("tampo_core/") and path.endswith(".py")):
                continue
            extra = _imported_roots(archive.read(path).decode()) - allowed
            if path.startswith("tampo_core/adapters/"):
                extra -= FRAMEWORKS
            assert not extra, f"{path} imports undeclared {sorted(extra)}"


def test_wheel_metadata_license_typing_marker_and_one_version(wheel: Path, site: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata_path,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(metadata_path))
        licenses = [n for n in names if ".dist-info/licenses/" in n]
        assert [Path(n).name for n in licenses] == ["LICENSE"]
        license_text = archive.read(licenses[0]).decode()
    assert "tampo_core/py.typed" in names
    assert metadata["License-Expression"] == PYPROJECT["project"]["license"] == "Apache-2.0"
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert (REPO / "LICENSE").read_text() == license_text
    assert metadata["Version"] == PYPROJECT["project"]["version"]
    assert set(metadata.get_all("Classifier")) == set(PYPROJECT["project"]["classifiers"])
    requires = {
        re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0] for r in metadata.get_all("Requires-Dist")
    }
    assert requires >= CORE_DEPENDENCIES
    result = run_outside_checkout(site, CORE_IMPORTS, [])
    assert result["version"] == metadata["Version"]
    assignments = [
        path
        for path in names
        if path.endswith(".py")
        and re.search(r"^__version__\s*=", zipfile.ZipFile(wheel).read(path).decode(), re.M)
    ]
    assert assignments == ["tampo_core/__init__.py"]
    source = zipfile.ZipFile(wheel).read("tampo_core/__init__.py").decode()
    assert '__version__ = importlib.metadata.version("tampo-core")' in source
