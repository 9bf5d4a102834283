"""Built-in plugins from one list; third-party plugins pip-installed and found through entry points."""
from __future__ import annotations

import json
import sys

from headrace.core.plugins import DEFAULT_PLUGINS, build_registry


def _plugins(run_cli, python) -> dict[str, dict]:
    out = run_cli(python, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    return {p["name"]: p for p in json.loads(out.stdout)}


def test_builtin_plugins_come_from_the_default_list():
    reg = build_registry(load_entry_points=False)
    names = [p.name for p in reg.describe()]
    assert names == list(DEFAULT_PLUGINS)
    assert all(p.builtin and p.package == "headrace" and p.error is None for p in reg.describe())
    assert all(p.hooks for p in reg.describe()), "a built-in plugin implements no hook"


def test_example_plugin_is_not_in_the_project_venv(run_cli):
    # The installed copies below are what make the plugins appear, not anything in the checkout.
    names = set(_plugins(run_cli, sys.executable))
    assert "example" not in names and "broken" not in names


def test_pip_installed_plugin_is_listed(plugin_python, run_cli):
    example = _plugins(run_cli, plugin_python)["example"]
    assert example == {
        "name": "example", "version": "0.3.1", "package": "headrace-example", "builtin": False,
        "hooks": ["headrace_languages", "headrace_routes"], "error": None, "overridden": [],
    }


def test_plugin_that_raises_on_import_is_reported(plugin_python, run_cli):
    plugins = _plugins(run_cli, plugin_python)
    broken = plugins["broken"]
    assert broken["version"] == "0.0.7" and broken["package"] == "headrace-broken"
    assert broken["hooks"] == []
    assert broken["error"] == "RuntimeError: headrace_broken cannot start: its configuration is missing"
    # Everything else still loads.
    assert plugins["example"]["error"] is None
    assert all(plugins[name]["error"] is None for name in DEFAULT_PLUGINS)
    # The plain listing shows it too.
    text = run_cli(plugin_python, "plugins")
    assert text.returncode == 0
    line = next(line for line in text.stdout.splitlines() if line.startswith("broken "))
    assert "0.0.7" in line and "ERROR" in line and "configuration is missing" in line


def test_installed_plugin_works_in_a_running_server(plugin_python, spawn_server, db_url, token_for):
    import asyncio

    token = asyncio.run(token_for())
    srv = spawn_server(env={"DATABASE_URL": db_url}, python=str(plugin_python))
    # The broken plugin does not stop the server from starting.
    srv.wait_healthy()
    assert "broken failed to load" in srv.log() or "plugin broken failed to load" in srv.log()

    assert srv.request("GET", "/api/plugins/example/hello?name=ada") == (
        200, {"plugin": "headrace-example", "hello": "ada"})

    status, body = srv.request("POST", "/api/w/main/scripts/create", token=token, body={
        "path": "f/demo/greet", "content": "Hello {name}, from {place}!", "language": "tmpl"})
    assert status == 201, body
    status, body = srv.request("GET", "/api/w/main/scripts/get/p/f/demo/greet", token=token)
    assert body["language"] == "template" and body["schema"]["required"] == ["name", "place"]
    assert srv.request("POST", "/api/w/main/jobs/run_wait_result/p/f/demo/greet", token=token,
                       body={"name": "Ada", "place": "Headrace"}) == (200, "Hello Ada, from Headrace!")

    status, body = srv.request("GET", "/api/w/main/plugins", token=token)
    assert status == 200
    by_name = {p["name"]: p for p in body}
    assert by_name["example"]["version"] == "0.3.1"
    assert by_name["broken"]["error"].startswith("RuntimeError")
    assert srv.stop() == 0
