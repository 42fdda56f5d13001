"""The wheel a reader installs (Colab's setup cell): every package in it, every import declared,
and no warning from the project's own metadata."""
import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {"sklearn": "scikit-learn", "ipywidgets": "ipywidgets", "PIL": "pillow"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Build the wheel from a copy of the sources (setuptools writes build/ next to them), with the
    pinned setuptools of the venv (no download); returns (zip file, pip's output)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "lvm_tutorial", source / "lvm_tutorial",
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                          "-w", str(out), str(source)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    (path,) = out.glob("lvm_tutorial-*.whl")
    return zipfile.ZipFile(path), run.stdout + run.stderr


def test_the_wheel_holds_every_package(wheel):
    names = set(wheel[0].namelist())
    packages = [p.parent.relative_to(ROOT) for p in (ROOT / "lvm_tutorial").rglob("__init__.py")]
    assert len(packages) >= 2
    for package in packages:
        assert f"{package.as_posix()}/__init__.py" in names, f"{package} is not in the wheel"


def test_the_build_prints_no_deprecation_warning(wheel):
    assert "deprecat" not in wheel[1].lower(), wheel[1]


def third_party_imports(source: str) -> set[str]:
    """Top-level names of absolute imports outside the standard library and the package."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "lvm_tutorial"}


def declared_distributions(metadata: str) -> set[str]:
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines()
                if line.startswith("Requires-Dist:")]
    return {req.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
            for req in requires}


def test_every_import_of_the_package_is_a_declared_dependency(wheel):
    metadata = next(n for n in wheel[0].namelist() if n.endswith(".dist-info/METADATA"))
    text = wheel[0].read(metadata).decode()
    assert "License-Expression: MIT" in text
    declared = declared_distributions(text)
    imported = set()
    for path in (ROOT / "lvm_tutorial").rglob("*.py"):
        imported |= third_party_imports(path.read_text())
    missing = {DISTRIBUTIONS.get(n, n) for n in imported} - declared
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"
    # Negative control: a module importing an undeclared library is caught.
    assert {DISTRIBUTIONS.get(n, n) for n in third_party_imports("import torch\n")} - declared
