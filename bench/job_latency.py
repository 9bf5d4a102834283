"""End-to-end job latency per language: run-and-wait through the HTTP API, beside the runtime's bare start.

    python -m bench.job_latency [-n 200] [--max-seconds 60] [--languages python3,bash,bun,go]

Starts a real ``headrace serve`` (a subprocess with its standalone worker) on its own fresh database on
the PostgreSQL at HEADRACE_BENCH_PG (default postgresql://postgres@127.0.0.1:5432/postgres), dropped at
the end. For each language it saves a trivial script, warms it up (the first Go run compiles), then times
N sequential ``POST /api/w/main/jobs/run_wait_result/p/<path>`` calls on one keep-alive connection (each
language stops early after --max-seconds). In the same run it times the bare start of the same runtime:
``python -c pass`` (the venv's interpreter), ``bash -c :``, bun running an empty file, and the compiled
Go binary of the script itself. Prints a table of p50 / p99 in milliseconds.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

ADMIN_PG = os.environ.get("HEADRACE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
HEADRACE = str(Path(sys.executable).with_name("headrace"))
SCRIPTS = {
    "python3": "def main(x: int = 1):\n    return x\n",
    "bash": 'x="${1:-1}"\necho "$x"\n',
    "bun": "export async function main(x: number = 1) {\n  return x;\n}\n",
    "go": "package inner\n\nfunc main(x int) (int, error) {\n\treturn x, nil\n}\n",
}
WARMUP = 5
BARE_RUNS = 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def admin(statement: str) -> None:
    conn = await asyncpg.connect(ADMIN_PG)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    ms = sorted(s * 1000 for s in samples)
    if len(ms) < 2:
        return ms[0], ms[0]
    return statistics.median(ms), statistics.quantiles(ms, n=100, method="inclusive")[98]


def time_command(argv: list[str], runs: int, cwd: str | None = None) -> list[float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - t0)
    return samples


class Server:
    """``headrace serve`` in a subprocess with its own data and cache dirs."""

    def __init__(self, db_url: str, work: Path, cache_dir: Path, slots: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ, "DATABASE_URL": db_url, "HEADRACE_DATA_DIR": str(work / "data"),
            "HEADRACE_CACHE_DIR": str(cache_dir), "HEADRACE_PORT": str(self.port),
            "HEADRACE_HOST": "127.0.0.1", "HEADRACE_WORKER_SLOTS": str(slots),
        }
        self.log = open(work / "serve.log", "wb")
        self.proc = subprocess.Popen([HEADRACE, "serve"], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    async def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"headrace serve exited with code {self.proc.returncode}")
                try:
                    async with http.get(f"{self.url}/api/health") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("headrace serve did not become ready")

    def token(self) -> str:
        out = subprocess.run([HEADRACE, "token", "create", "--workspace", "main"], env=self.env,
                             capture_output=True, text=True, check=True)
        return out.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


async def measure_language(http: aiohttp.ClientSession, base: str, language: str, n: int,
                           max_seconds: float) -> list[float]:
    path = f"u/admin/latency_{language}"
    async with http.post(f"{base}/scripts/create",
                         json={"path": path, "content": SCRIPTS[language], "language": language}) as r:
        if r.status != 201:
            raise RuntimeError(f"cannot save the {language} script: {r.status} {await r.text()}")
    url = f"{base}/jobs/run_wait_result/p/{path}"

    async def one(x: int) -> float:
        t0 = time.perf_counter()
        async with http.post(url, json={"x": str(x) if language == "bash" else x}) as r:
            body = await r.json()
        elapsed = time.perf_counter() - t0
        if r.status != 200 or str(body) != str(x):
            raise RuntimeError(f"{language} job failed: {r.status} {body}")
        return elapsed

    for i in range(WARMUP):
        await one(i)
    samples: list[float] = []
    deadline = time.monotonic() + max_seconds
    for i in range(n):
        samples.append(await one(i))
        if time.monotonic() > deadline:
            break
    return samples


def bare_starts(languages: list[str], cache_dir: Path, work: Path) -> dict[str, list[float]]:
    """The bare start of each runtime, in this same run."""
    from headrace.plugins.languages.go import Go
    from headrace.plugins.languages.typescript import find_bun

    out: dict[str, list[float]] = {}
    if "python3" in languages:
        out["python3"] = time_command([sys.executable, "-c", "pass"], BARE_RUNS)
    if "bash" in languages:
        out["bash"] = time_command(["bash", "-c", ":"], BARE_RUNS)
    if "bun" in languages and find_bun():
        empty = work / "empty.ts"
        empty.write_text("")
        out["bun"] = time_command([find_bun(), str(empty)], BARE_RUNS)
    if "go" in languages:
        binary = Go().binary_path(cache_dir, SCRIPTS["go"])
        if binary.exists():  # the script's own compiled binary, run on a job dir of its own
            job = work / "go-job"
            job.mkdir(exist_ok=True)
            (job / "args.json").write_text('{"x": 1}')
            out["go"] = time_command([str(binary), str(job)], BARE_RUNS)
    return out


async def run(args) -> None:
    languages = [lang.strip() for lang in args.languages.split(",") if lang.strip()]
    db = f"hr_bench_latency_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix="headrace-latency-"))
    cache_dir = Path(args.cache_dir) if args.cache_dir else work / "cache"
    await admin(f'CREATE DATABASE "{db}"')
    server = None
    try:
        server = Server(f"{ADMIN_PG.rpartition('/')[0]}/{db}", work, cache_dir, args.slots)
        await server.wait_ready()
        token = server.token()
        results: dict[str, list[float]] = {}
        headers = {"Authorization": f"Bearer {token}"}
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(headers=headers, connector=connector) as http:
            for language in languages:
                results[language] = await measure_language(
                    http, f"{server.url}/api/w/main", language, args.n, args.max_seconds
                )
        bare = bare_starts(languages, cache_dir, work)
    finally:
        if server is not None:
            server.stop()
        await admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'language':<9} {'runs':>5} {'e2e p50 ms':>11} {'e2e p99 ms':>11} {'bare p50 ms':>12} "
          f"{'bare p99 ms':>12}")
    for language in languages:
        p50, p99 = percentiles(results[language])
        b50, b99 = percentiles(bare[language]) if language in bare else (float("nan"), float("nan"))
        print(f"{language:<9} {len(results[language]):>5} {p50:>11.2f} {p99:>11.2f} {b50:>12.2f} {b99:>12.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=200, help="timed runs per language (default 200)")
    p.add_argument("--max-seconds", type=float, default=60.0, help="time bound per language")
    p.add_argument("--languages", default="python3,bash,bun,go")
    p.add_argument("--slots", type=int, default=4, help="worker slots of the server")
    p.add_argument("--cache-dir", help="dependency/build cache (default: a fresh temporary one)")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
