"""The wheel holds every subpackage listed in pyproject, and pyproject lists every package folder."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PACKAGES: list[str] = SETUPTOOLS["packages"]
PACKAGE_DIR: dict[str, str] = SETUPTOOLS["package-dir"]


def source_dir(package: str) -> Path:
    """The folder of a dotted package name, through the package-dir mapping."""
    for prefix, folder in sorted(PACKAGE_DIR.items(), key=lambda kv: -len(kv[0])):
        if package == prefix or package.startswith(prefix + "."):
            rest = package[len(prefix):].lstrip(".")
            return ROOT / folder / Path(*rest.split(".")) if rest else ROOT / folder
    raise AssertionError(f"{package} is not under any package-dir mapping")


def _wheel(tmp_path: Path) -> zipfile.ZipFile:
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    for folder in set(PACKAGE_DIR.values()):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("headrace-*.whl")
    return zipfile.ZipFile(wheel)


def test_every_package_folder_is_listed():
    # A folder with Python files that pyproject forgets would be missing from every install but -e.
    listed = set(PACKAGES)
    for prefix, folder in PACKAGE_DIR.items():
        for d in [ROOT / folder, *(p for p in (ROOT / folder).rglob("*") if p.is_dir())]:
            if "__pycache__" in d.parts or not any(d.glob("*.py")):
                continue
            dotted = ".".join([prefix, *d.relative_to(ROOT / folder).parts])
            assert dotted in listed, f"{d.relative_to(ROOT)} has Python files but {dotted} is not in pyproject"


def test_wheel_holds_every_listed_package(tmp_path):
    with _wheel(tmp_path) as wheel:
        names = set(wheel.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "headrace = headrace.hub.cli:main" in wheel.read(entry_points).decode()
    for package in PACKAGES:
        folder = source_dir(package)
        target = package.replace(".", "/")
        py_files = sorted(p.name for p in folder.glob("*.py"))
        assert py_files, f"{package}: no Python files in {folder}"
        for name in py_files:
            assert f"{target}/{name}" in names, f"{target}/{name} is missing from the wheel"
    # Files that are easy to lose: migration scripts, their template, the Python job wrapper.
    versions = sorted((ROOT / "migrations" / "versions").glob("0*.py"))
    assert versions
    for v in versions:
        assert f"headrace/migrations/versions/{v.name}" in names
    assert "headrace/migrations/script.py.mako" in names
    assert "headrace/migrations/env.py" in names
    assert "headrace/plugins/languages/python_wrapper.py" in names
    # No stray top-level packages (tests, bench) and no `headrace/__init__.py` (namespace package).
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"headrace"}
    assert "headrace/__init__.py" not in names
