"""With no DATABASE_URL, `headrace serve` starts an embedded PostgreSQL in its data dir and stops it on exit."""
from __future__ import annotations

import os
import subprocess
import sys

import psutil


def _postgres_processes(pgdata) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(pgdata) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_serve_with_embedded_postgres(tmp_path, spawn_server):
    data_dir = tmp_path / "data"
    env = {"DATABASE_URL": None, "HEADRACE_DATA_DIR": str(data_dir)}
    srv = spawn_server(env=env)
    srv.wait_healthy(timeout=60)
    pgdata = data_dir / "pg"
    assert (pgdata / "PG_VERSION").is_file()
    assert _postgres_processes(pgdata), "no embedded postgres is running for the data dir"

    # The CLI finds the same embedded server through the data dir.
    cli_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    cli_env["HEADRACE_DATA_DIR"] = str(data_dir)
    out = subprocess.run([sys.executable, "-m", "headrace.hub.cli", "token", "create"], env=cli_env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    # ...and leaves it running for the server when it exits.
    assert srv.request("GET", "/api/health")[0] == 200

    status, body = srv.request("POST", "/api/w/main/scripts/create", token=token, body={
        "path": "u/admin/hello", "language": "python3",
        "content": "def main(name: str):\n    print('greeting', name)\n    return {'greeting': 'hello ' + name}\n"})
    assert status == 201, body
    assert srv.request("POST", "/api/w/main/jobs/run_wait_result/p/u/admin/hello", token=token,
                       body={"name": "Ada"}) == (200, {"greeting": "hello Ada"})

    assert srv.stop() == 0, srv.log()
    assert _postgres_processes(pgdata) == [], "the embedded postgres outlived the server"
    assert not (pgdata / "postmaster.pid").exists()
