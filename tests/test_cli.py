"""The `headrace` command line: workspaces, tokens, plugins, local runs, and clear errors."""
from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys

import asyncpg


def cli(*args: str, env: dict | None = None, stdin: str | None = None):
    return subprocess.run(
        [sys.executable, "-m", "headrace.hub.cli", *args], env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=60, input=stdin,
    )


async def _fetch(url: str, sql: str, *args):
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def test_workspace_create_and_list(db_url):
    env = {"DATABASE_URL": db_url}
    out = cli("workspace", "create", "acme", "--name", "Acme Inc", env=env)
    assert out.returncode == 0, out.stderr
    assert "acme" in out.stdout
    listed = cli("workspace", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = dict(line.split("\t") for line in listed.stdout.splitlines())
    assert rows == {"main": "main", "acme": "Acme Inc"}
    again = cli("workspace", "create", "acme", env=env)
    assert again.returncode == 2
    assert "workspace 'acme' already exists" in again.stderr and "Traceback" not in again.stderr


def test_token_create_prints_a_token_stored_only_as_hash(db_url):
    out = cli("token", "create", "--workspace", "main", "--scope", "jobs:run", "--label", "ci", env={"DATABASE_URL": db_url})
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.startswith("hr_") and len(token) > 30
    rows = asyncio.run(_fetch(db_url, "SELECT hash, scopes, label FROM tokens WHERE label = 'ci'"))
    assert [(r["hash"], r["scopes"]) for r in rows] == [(hashlib.sha256(token.encode()).hexdigest(), ["jobs:run"])]


def test_token_create_errors(db_url):
    env = {"DATABASE_URL": db_url}
    out = cli("token", "create", "--workspace", "nope", env=env)
    assert out.returncode == 2 and "no workspace 'nope'" in out.stderr and "Traceback" not in out.stderr
    out = cli("token", "create", "--scope", "root:everything", env=env)
    assert out.returncode == 2 and "unknown scopes: root:everything" in out.stderr


def test_malformed_database_url_is_a_clear_error():
    out = cli("migrate", env={"DATABASE_URL": "mysql://localhost/x"})
    assert out.returncode == 2
    assert "DATABASE_URL must be a postgresql:// URL" in out.stderr and "Traceback" not in out.stderr


def test_unreachable_database_is_a_clear_error():
    out = cli("workspace", "list", env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"})
    assert out.returncode == 2
    assert "cannot connect to the database" in out.stderr and "Traceback" not in out.stderr


def test_run_a_local_script(tmp_path):
    script = tmp_path / "add.py"
    script.write_text("def main(a: int, b: int = 2):\n    print('adding')\n    return {'sum': a + b}\n")
    out = cli("run", str(script), "--", "a=40")
    assert out.returncode == 0, out.stderr
    import json
    assert json.loads(out.stdout) == {"sum": 42}
    assert "adding" in out.stderr  # the job's log


def test_run_reports_bad_scripts_and_args(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def main(:\n    pass\n")
    out = cli("run", str(broken))
    assert out.returncode == 2 and f"{broken}:1:" in out.stderr
    ok = tmp_path / "ok.py"
    ok.write_text("def main(a: int):\n    return a\n")
    out = cli("run", str(ok), "--", "a=notanumber")
    assert out.returncode == 2 and "'a'" in out.stderr
    out = cli("run", str(ok), "--", "a")
    assert out.returncode == 2 and "name=value" in out.stderr
    out = cli("run", str(tmp_path / "missing.py"))
    assert out.returncode == 2 and "no such file" in out.stderr
    odd = tmp_path / "x.cobol"
    odd.write_text("x")
    out = cli("run", str(odd))
    assert out.returncode == 2 and "python3" in out.stderr and "bash" in out.stderr


def test_failed_local_run_exits_nonzero(tmp_path):
    script = tmp_path / "fail.sh"
    script.write_text('echo "about to fail"\nexit 3\n')
    out = cli("run", str(script))
    assert out.returncode == 1
    assert "about to fail" in out.stderr


def test_help_lists_every_command():
    out = cli("--help")
    assert out.returncode == 0
    for command in ("serve", "worker", "migrate", "plugins", "run", "token", "workspace"):
        assert command in out.stdout
