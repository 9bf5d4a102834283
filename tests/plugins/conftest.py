"""A throwaway virtualenv that sees the project's venv and has the example plugins pip-installed.

The plugins are never installed into the shared .venv: tests running in parallel (xdist) must not
see them. The throwaway venv reaches the project's packages through a .pth file that calls
``site.addsitedir`` on the parent venv's site-packages (so its editable install and entry points work).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE / "example_plugin"
BROKEN = HERE / "broken_plugin"


def _purelib(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    )
    return Path(out.stdout.strip())


def make_plugin_env(root: Path, *packages: Path) -> Path:
    """Create a venv under ``root`` layered on ours, pip-install ``packages`` into it; return its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    parent = sysconfig.get_paths()["purelib"]
    (_purelib(python) / "_headrace_parent.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    sources = []
    for pkg in packages:
        # pip builds in the source tree; a private copy keeps the checkout clean and xdist workers apart.
        copy = root / "src" / pkg.name
        shutil.copytree(pkg, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        sources.append(str(copy))
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         *sources],
        check=True, capture_output=True, text=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    return python


@pytest.fixture(scope="session")
def plugin_python(tmp_path_factory) -> Path:
    """Python of a venv with both example plugins installed (the good one and the one that fails)."""
    return make_plugin_env(tmp_path_factory.mktemp("plugin-env"), EXAMPLE, BROKEN)


def _run_cli(python: Path, *args: str, env: dict | None = None, timeout: float = 60):
    return subprocess.run(
        [str(python), "-m", "headrace.hub.cli", *args], capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=timeout,
    )


@pytest.fixture
def run_cli():
    """run_cli(python, *args) -> CompletedProcess of `headrace ...` under that interpreter."""
    return _run_cli


