"""Third-party dependencies: inferred or declared, pinned once per version (its lock), installed into a
content-addressed cache that later jobs reuse. Real pip against the package index, real interpreters."""
from __future__ import annotations

import uuid

import pytest

from headrace.core.languages import JobContext
from headrace.plugins.languages import deps_python
from headrace.plugins.languages.python import Python3


@pytest.fixture
def settings(settings, tmp_path):
    """A cache of this test's own, so that "installs nothing the second time" starts from nothing."""
    settings.cache_dir = tmp_path / "cache"
    return settings


# -- which requirements ------------------------------------------------------------------------------

def test_inference_drops_the_standard_library_and_maps_import_names():
    source = (
        "import os, json, sys\n"
        "import yaml\n"
        "from PIL import Image\n"
        "import sklearn.linear_model\n"
        "from google.cloud import storage\n"
        "import google.cloud.bigquery\n"
        "from . import sibling\n"
        "import requests\n"
        "import requests.adapters\n"
        "try:\n    import ujson\nexcept ImportError:\n    ujson = None\n"
        "def main():\n    import some_package\n"
    )
    assert sorted(deps_python.requirements(source)) == sorted([
        "PyYAML", "Pillow", "scikit-learn", "google-cloud-storage", "google-cloud-bigquery", "requests",
        "some-package",
    ])


def test_from_google_cloud_import_storage_maps_to_its_distribution():
    assert deps_python.requirements("from google.cloud.storage import Client\n") == ["google-cloud-storage"]


def test_requirements_header_overrides_inference():
    source = "# requirements:\n# six==1.16.0\n#  attrs>=22\n\nimport yaml\n\ndef main():\n    pass\n"
    assert deps_python.requirements(source) == ["six==1.16.0", "attrs>=22"]


def test_pep723_block_overrides_header_and_inference():
    source = (
        "# /// script\n"
        "# requires-python = \">=3.11\"\n"
        "# dependencies = [\"six\", \"attrs<30\"]\n"
        "# ///\n"
        "# requirements:\n# requests\n"
        "import yaml\n"
    )
    assert deps_python.requirements(source) == ["six", "attrs<30"]


def test_bad_pep723_block_is_an_error():
    with pytest.raises(deps_python.DependencyError, match="script block"):
        deps_python.requirements("# /// script\n# dependencies = [six\n# ///\n")


def test_standard_library_only_script_has_no_lock():
    assert deps_python.requirements("import json\nfrom collections import deque\n") == []


# -- lock at save time, install once, reuse ----------------------------------------------------------

SIX_SCRIPT = """\
import six

def main(x: int):
    return {"six": six.__version__, "file": six.__file__, "double": x * 2}
"""


async def test_lock_is_stored_and_second_run_installs_nothing(api, settings):
    resolved_before = deps_python.stats["resolved"]
    await api.create_script("u/admin/six", SIX_SCRIPT)
    assert deps_python.stats["resolved"] == resolved_before + 1
    r = await api.get("scripts/get/p/u/admin/six")
    lock = (await r.json())["lock"]
    assert lock.startswith("six==") and lock.endswith("\n")

    installed_before = deps_python.stats["installed"]
    status, first = await api.run_wait("u/admin/six", {"x": 21})
    assert status == 200, first
    assert first["double"] == 42 and lock.strip() == f"six=={first['six']}"
    assert first["file"].startswith(str(settings.cache_dir / "python" / "site"))
    assert deps_python.stats["installed"] == installed_before + 1

    status, second = await api.run_wait("u/admin/six", {"x": 1})
    assert status == 200, second
    assert second["file"] == first["file"]
    assert deps_python.stats["installed"] == installed_before + 1  # the second run installed nothing
    assert deps_python.stats["resolved"] == resolved_before + 1  # and resolved nothing


async def test_pep723_pin_is_honoured(api):
    script = "# /// script\n# dependencies = [\"six==1.16.0\"]\n# ///\nimport six\n\ndef main():\n    return six.__version__\n"
    await api.create_script("u/admin/six_pinned", script)
    status, result = await api.run_wait("u/admin/six_pinned")
    assert (status, result) == (200, "1.16.0")


async def test_unresolvable_requirement_is_refused_at_save_with_the_resolvers_message(api):
    script = "# requirements:\n# headrace-no-such-package-zz9\n\ndef main():\n    return 1\n"
    r = await api.post("scripts/create", {"path": "u/admin/bad_dep", "content": script, "language": "python3"})
    assert r.status == 400
    error = (await r.json())["error"]
    assert error["field"] == "content"
    assert "headrace-no-such-package-zz9" in error["message"]
    assert "No matching distribution" in error["message"]


async def test_job_without_a_stored_lock_resolves_and_a_failure_fails_the_job(tmp_path):
    """A version with no lock (saved before locking, a local run) resolves at run time."""
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    content = "import headrace_no_such_module_zz9\n\ndef main():\n    return 1\n"
    (job_dir / "main.py").write_text(content)
    (job_dir / "args.json").write_text("{}")
    logs: list[str] = []
    ctx = JobContext(
        id=uuid.uuid4(), workspace_id="main", script_path="u/admin/x", script_hash=None, content=content,
        args={}, job_dir=job_dir, env={"PATH": "/usr/bin:/bin"}, log=logs.append,
        cache_dir=tmp_path / "cache",
    )
    outcome = await Python3().run(ctx)
    assert not outcome.success
    error = outcome.result["error"]
    assert error["name"] == "DependencyError"
    assert "headrace-no-such-module-zz9" in error["message"] and "No matching distribution" in error["message"]
