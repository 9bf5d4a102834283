"""Webhook intake and sync-webhook latency against a real `headrace serve`, beside the ceiling servers.

    python -m bench.webhooks [--duration 10] [--connections 50] [--threads 2] [--sync-n 300] [--no-ceiling]

Needs `wrk` (apt-get install -y wrk) and the PostgreSQL at HEADRACE_BENCH_PG (default
postgresql://postgres@127.0.0.1:5432/postgres). Everything runs on 127.0.0.1; the load generator stops
by itself after --duration seconds; the bench databases are dropped at the end.

(a) Async intake: wrk POSTs {"a":1,"b":2} to /api/w/main/jobs/run/p/f/bench/hello (Bearer token) against
    `headrace serve --no-worker`, so that the intake alone is measured. Afterwards every job id that was
    answered 201 must be found committed (queue + completed_jobs); rows beyond the 201 count are
    requests that wrk left in flight when its time was up (the server committed them, wrk stopped reading).
(b) Sync latency, sequential over one keep-alive connection, against `headrace serve --slots 2`:
      webhook       = POST .../jobs/run_wait_result/p/f/bench/hello?token=...&include_header=user-agent
                      with a JSON body (token in the query, a header passed in as an argument);
      run-and-wait  = the same route with a Bearer header and the same body, no webhook extras;
    the two alternate request by request, so drift on this shared machine hits both alike. The server-side
    turnaround of the jobs of this phase (completed_at - created_at) is printed as the floor.
(c) The ceiling servers of /work/shared/bench/ceiling_server.py (hello, insert, batch) under the same wrk
    load; Headrace's intake is printed as a ratio to each.
Prints a human summary and one JSON line.
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import asyncpg

ADMIN_PG = os.environ.get("HEADRACE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
CEILING = Path(os.environ.get("HEADRACE_CEILING_SERVER", "/work/shared/bench/ceiling_server.py"))
SCRIPT_PATH = "f/bench/hello"
SCRIPT = "def main(a: int = 0, b: int = 0, user_agent: str = ''):\n    return a + b\n"
BODY = '{"a":1,"b":2}'
TARGET_RPS = 5000
TARGET_SYNC_GAP_MS = 10.0

# Counts 2xx answers per wrk thread and keeps the bodies of 201s (Headrace: the job ids).
WRK_LUA = r"""
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
local keep_ids = os.getenv("BENCH_IDS_FILE")
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; created = 0; other = 0; ids = {} end
function response(status, headers, body)
  if status == 201 then
    created = created + 1
    if keep_ids then ids[#ids + 1] = body end
  end
  if status >= 200 and status < 300 then ok = ok + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local o, c, x = 0, 0, 0
  local f = keep_ids and io.open(keep_ids, "w")
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); c = c + t:get("created"); x = x + t:get("other")
    if f then for _, id in ipairs(t:get("ids")) do f:write(id, "\n") end end
  end
  if f then f:close() end
  io.write(string.format("BENCH ok=%d created=%d other=%d\n", o, c, x))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def db_url(name: str) -> str:
    return ADMIN_PG.rpartition("/")[0] + "/" + name


async def admin(*sqls: str) -> None:
    conn = await asyncpg.connect(ADMIN_PG)
    try:
        for s in sqls:
            await conn.execute(s)
    finally:
        await conn.close()


async def prepare_database(name: str) -> str:
    """A fresh migrated database with an admin token for workspace main."""
    from headrace.core import tokens as tok
    from headrace.core.db import make_engine
    from headrace.core.migrate import migrate

    await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    engine = make_engine(db_url(name))
    try:
        await migrate(engine)
        async with engine.begin() as conn:
            return await tok.create_token(conn, "main", scopes=["*"], label="bench")
    finally:
        await engine.dispose()


def wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30.0, path: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if path is None:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server on port {port} not ready after {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")


class Proc:
    """A child process in its own process group, stopped with SIGTERM (SIGKILL after a grace period)."""

    def __init__(self, argv: list[str], env: dict, log: Path):
        self.log = log
        self._out = open(log, "wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def stop(self, grace: float = 15.0) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()


def start_headrace(dsn: str, tmp: Path, name: str, *extra: str) -> tuple[Proc, int]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": dsn, "HEADRACE_DATA_DIR": str(tmp / f"data-{name}")}
    proc = Proc([sys.executable, "-m", "headrace.hub.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                 *extra], env, tmp / f"{name}.log")
    wait_port(port, proc.proc, proc.log, path="/api/health")
    return proc, port


def request(port: int, method: str, path: str, body: str | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def run_wrk(url: str, lua: Path, *, duration: int, threads: int, connections: int, auth: str = "",
            ids_file: Path | None = None) -> dict:
    env = {**os.environ, "BENCH_BODY": BODY, "BENCH_AUTH": auth}
    if ids_file is not None:
        env["BENCH_IDS_FILE"] = str(ids_file)
    else:
        env.pop("BENCH_IDS_FILE", None)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(lua), url],
        env=env, capture_output=True, text=True, timeout=duration + 60,
    )
    if out.returncode != 0:
        raise SystemExit(f"wrk failed: {out.stderr or out.stdout}")
    text = out.stdout
    counts = dict(re.findall(r"(ok|created|other)=(\d+)", text))
    elapsed = re.search(r"requests in ([\d.]+)(ms|s|m)", text)
    secs = float(elapsed.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[elapsed.group(2)] if elapsed else duration
    ok = int(counts.get("ok", 0))
    return {
        "ok": ok, "created": int(counts.get("created", 0)), "other": int(counts.get("other", 0)),
        "seconds": round(secs, 2), "ok_per_s": round(ok / secs, 1),
        "wrk_requests_per_s": float(m.group(1)) if (m := re.search(r"Requests/sec:\s+([\d.]+)", text)) else None,
        "errors": (re.search(r"Socket errors:.*|Non-2xx.*", text) or [None])[0],
    }


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 2)


def sync_latency(port: int, token: str, n: int, warmup: int, max_seconds: float) -> dict:
    """Alternate the webhook call and the plain run-and-wait call over two keep-alive connections."""
    base = f"/api/w/main/jobs/run_wait_result/p/{SCRIPT_PATH}"
    calls = {
        "webhook": (f"{base}?token={token}&include_header=user-agent", {"User-Agent": "bench"}),
        "run_and_wait": (base, {"Authorization": f"Bearer {token}"}),
    }
    conns = {k: http.client.HTTPConnection("127.0.0.1", port, timeout=30) for k in calls}
    lat: dict[str, list[float]] = {k: [] for k in calls}
    errors = {k: 0 for k in calls}
    deadline = time.monotonic() + max_seconds
    for i in range(warmup + n):
        if time.monotonic() > deadline:
            break
        for name, (path, headers) in calls.items():
            t0 = time.perf_counter()
            conns[name].request("POST", path, body=BODY, headers={"Content-Type": "application/json", **headers})
            r = conns[name].getresponse()
            data = r.read()
            dt = (time.perf_counter() - t0) * 1000
            if i >= warmup:
                lat[name].append(dt)
                if r.status != 200 or data.strip() != b"3":
                    errors[name] += 1
    for c in conns.values():
        c.close()
    return {
        name: {"n": len(v), "p50_ms": percentile(v, 0.5), "p90_ms": percentile(v, 0.9),
               "p99_ms": percentile(v, 0.99), "mean_ms": round(statistics.fmean(v), 2), "errors": errors[name]}
        for name, v in lat.items() if v
    }


async def committed(dsn: str, ids: list[str]) -> dict:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetchval(
            "SELECT (SELECT count(*) FROM queue WHERE script_path = $1)"
            " + (SELECT count(*) FROM completed_jobs WHERE script_path = $1)", SCRIPT_PATH)
        found = await conn.fetchval(
            "SELECT count(*) FROM unnest($1::uuid[]) AS i(id)"
            " WHERE EXISTS (SELECT 1 FROM queue q WHERE q.id = i.id)"
            " OR EXISTS (SELECT 1 FROM completed_jobs c WHERE c.id = i.id)", ids)
        events = await conn.fetchval("SELECT count(*) FROM events WHERE script_path = $1", SCRIPT_PATH)
        return {"rows": rows, "answered_ids_found": found, "event_rows": events}
    finally:
        await conn.close()


async def turnaround(dsn: str, since: float) -> dict | None:
    """Server-side created -> completed of the jobs created since ``since``."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM completed_at - created_at) * 1000 AS ms FROM completed_jobs"
            " WHERE script_path = $1 AND created_at >= to_timestamp($2)", SCRIPT_PATH, since)
    finally:
        await conn.close()
    ms = [float(r["ms"]) for r in rows]
    return {"n": len(ms), "p50_ms": percentile(ms, 0.5), "p99_ms": percentile(ms, 0.99)} if ms else None


def ceiling(mode: str, lua: Path, tmp: Path, db: str, **wrk_kw) -> dict:
    port = free_port()
    proc = Proc([sys.executable, str(CEILING), "--mode", mode, "--port", str(port), "--dsn", ADMIN_PG, "--db", db],
                dict(os.environ), tmp / f"ceiling-{mode}.log")
    try:
        wait_port(port, proc.proc, proc.log)
        time.sleep(0.5 if mode == "hello" else 1.5)  # insert/batch create their database at start-up
        request(port, "POST", "/hook", BODY)
        return run_wrk(f"http://127.0.0.1:{port}/hook", lua, **wrk_kw)
    finally:
        proc.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=10, help="seconds of load per wrk run")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--sync-n", type=int, default=300, help="sequential calls of each kind")
    p.add_argument("--sync-max-seconds", type=float, default=120.0)
    p.add_argument("--no-ceiling", action="store_true")
    a = p.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    wrk_kw = dict(duration=a.duration, threads=a.threads, connections=a.connections)
    name = f"hr_bench_webhooks_{os.getpid()}"
    ceiling_db = f"hr_bench_ceiling_{os.getpid()}"
    dsn = db_url(name)
    report: dict = {"target_async_per_s": TARGET_RPS, "target_sync_gap_ms": TARGET_SYNC_GAP_MS,
                    "wrk": {k: v for k, v in wrk_kw.items()}}
    with tempfile.TemporaryDirectory(prefix="hr-bench-") as tmpdir:
        tmp = Path(tmpdir)
        lua = tmp / "bench.lua"
        lua.write_text(WRK_LUA)
        token = asyncio.run(prepare_database(name))
        auth = {"Authorization": f"Bearer {token}"}
        try:
            # (a) async intake, API only
            serve, port = start_headrace(dsn, tmp, "serve-intake", "--no-worker")
            try:
                status, text = request(port, "POST", "/api/w/main/scripts/create", json.dumps(
                    {"path": SCRIPT_PATH, "content": SCRIPT, "language": "python3"}), auth)
                assert status == 201, (status, text)
                url = f"http://127.0.0.1:{port}/api/w/main/jobs/run/p/{SCRIPT_PATH}"
                for _ in range(20):  # warm the script and token caches
                    status, text = request(port, "POST", url.split(str(port), 1)[1], BODY, auth)
                    assert status == 201, (status, text)
                ids_file = tmp / "ids.txt"
                intake = run_wrk(url, lua, auth=f"Bearer {token}", ids_file=ids_file, **wrk_kw)
                time.sleep(0.5)  # let the requests wrk abandoned at its deadline finish committing
            finally:
                serve.stop()
            ids = [i.strip() for i in ids_file.read_text().splitlines() if i.strip()]
            check = asyncio.run(committed(dsn, ids))
            warm = 20
            intake.update(check)
            intake["every_201_committed"] = check["answered_ids_found"] == len(ids) == intake["created"]
            intake["rows_minus_201s"] = check["rows"] - warm - intake["created"]
            report["async_intake"] = intake
            asyncio.run(admin_sql(dsn, "DELETE FROM queue"))

            # (c) ceilings, same load
            if not a.no_ceiling:
                report["ceilings"] = {}
                for mode in ("hello", "insert", "batch"):
                    report["ceilings"][mode] = ceiling(mode, lua, tmp, ceiling_db, **wrk_kw)
                report["ratio_to_ceiling"] = {
                    mode: round(intake["ok_per_s"] / c["ok_per_s"], 2) if c["ok_per_s"] else None
                    for mode, c in report["ceilings"].items()
                }

            # (b) sync latency, with a worker of 2 slots
            serve, port = start_headrace(dsn, tmp, "serve-sync", "--slots", "2")
            try:
                since = time.time() + 1.0  # leave out warm-up jobs (approximately) from the floor
                report["sync"] = sync_latency(port, token, a.sync_n, warmup=30, max_seconds=a.sync_max_seconds)
                report["sync"]["server_turnaround"] = asyncio.run(turnaround(dsn, since))
            finally:
                serve.stop()
        finally:
            asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                              f'DROP DATABASE IF EXISTS "{ceiling_db}" WITH (FORCE)'))
    print_report(report)


async def admin_sql(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def print_report(r: dict) -> None:
    i = r["async_intake"]
    print(f"async webhook intake: {i['ok_per_s']:.0f} committed requests/s ({i['created']} x 201 in "
          f"{i['seconds']} s, non-2xx {i['other']}); every 201 committed: {i['every_201_committed']} "
          f"(rows {i['rows']}, +{i['rows_minus_201s']} in flight at wrk's deadline; target >= {TARGET_RPS}/s)")
    for mode, c in r.get("ceilings", {}).items():
        print(f"  ceiling {mode:6s}: {c['ok_per_s']:8.0f} req/s   headrace/{mode} = {r['ratio_to_ceiling'][mode]}")
    s = r.get("sync", {})
    if "webhook" in s and "run_and_wait" in s:
        w, b = s["webhook"], s["run_and_wait"]
        gap = round(w["p50_ms"] - b["p50_ms"], 2)
        r["sync_p50_gap_ms"] = gap
        print(f"sync webhook:  p50 {w['p50_ms']} ms, p99 {w['p99_ms']} ms (n={w['n']}, errors {w['errors']})")
        print(f"run-and-wait:  p50 {b['p50_ms']} ms, p99 {b['p99_ms']} ms (n={b['n']}, errors {b['errors']})")
        if s.get("server_turnaround"):
            t = s["server_turnaround"]
            print(f"server-side created->completed: p50 {t['p50_ms']} ms, p99 {t['p99_ms']} ms")
        print(f"sync p50 - run-and-wait p50 = {gap} ms (target <= {TARGET_SYNC_GAP_MS})")
    print(json.dumps(r, default=str))


if __name__ == "__main__":
    main()
