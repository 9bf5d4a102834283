"""npm dependencies of TypeScript (bun) scripts: infer from imports, pin with bun, install into a cache.

- Bare import specifiers (``import x from "is-number"``, ``import("@scope/pkg/sub")``, ``require(...)``)
  name the packages; relative paths, ``node:``/``bun:`` modules and Node's built-ins are dropped.
- ``resolve`` runs ``bun install --lockfile-only`` on a generated package.json: the lock is a JSON
  document holding that package.json and bun's text lockfile.
- ``node_modules_for`` installs a lock once into ``<cache>/bun/modules/<sha256 of the lock>`` with
  ``bun install --frozen-lockfile``; later jobs with the same lock reuse it (a marker file says the
  install finished) and the job dir gets a ``node_modules`` symlink to it.
"""
from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from .ts_signature import mask

NODE_BUILTINS = frozenset("""
assert async_hooks buffer child_process cluster console constants crypto dgram diagnostics_channel dns
domain events fs http http2 https inspector module net os path perf_hooks process punycode querystring
readline repl stream string_decoder sys test timers tls trace_events tty url util v8 vm wasi
worker_threads zlib
""".split())
_SPECIFIERS = re.compile(
    r"""(?:\bimport\s+(?:type\s+)?(?:[\w$*{}\s,]+?\s+from\s+)?|\bexport\s+[\w$*{}\s,]+?\s+from\s+|"""
    r"""\bimport\s*\(\s*|\brequire\s*\(\s*)(["'])"""
)
_ENV_KEEP = ("PATH", "LANG", "SSL_CERT_FILE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy",
             "https_proxy", "no_proxy", "NPM_CONFIG_REGISTRY", "BUN_CONFIG_REGISTRY", "NODE_EXTRA_CA_CERTS")
MARKER = ".headrace-installed"

#: Counters, for tests and the bench: resolutions and installs done by this process.
stats = {"resolved": 0, "installed": 0}


class DependencyError(Exception):
    """Packages that cannot be resolved or installed; the message is bun's."""


def packages(content: str) -> list[str]:
    """npm package names the script imports, in order of appearance."""
    masked = mask(content)
    found: list[str] = []
    for m in _SPECIFIERS.finditer(masked):
        quote_at = m.end() - 1
        end = content.find(m.group(1), quote_at + 1)
        if end < 0:
            continue
        spec = content[quote_at + 1:end]
        name = package_name(spec)
        if name and name not in found:
            found.append(name)
    return found


def package_name(spec: str) -> str | None:
    if spec.startswith("npm:"):
        spec = spec[4:]
    if not spec or spec.startswith((".", "/")) or re.match(r"^[a-z]+:", spec):
        return None  # relative, absolute, node:, bun:, https:, file: ...
    parts = spec.split("/")
    if spec.startswith("@"):
        name = "/".join(parts[:2]) if len(parts) > 1 else None
    else:
        name = parts[0]
    if name is None or name in NODE_BUILTINS:
        return None
    return name.split("@")[0] if not name.startswith("@") else name


def _env(cache_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    home = cache_dir / "bun" / "home"
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    env["BUN_INSTALL_CACHE_DIR"] = str(cache_dir / "bun" / "install-cache")
    env["DO_NOT_TRACK"] = "1"
    return env


async def _bun(bun: str, args: list[str], cwd: Path, cache_dir: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        bun, *args, cwd=str(cwd), env=_env(cache_dir), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )
    try:
        out, _ = await proc.communicate()
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode("utf-8", "replace").strip()


def _package_json(names: list[str]) -> str:
    deps = {name: "latest" for name in sorted(names)}
    return json.dumps({"name": "headrace-job", "private": True, "dependencies": deps}, indent=2) + "\n"


async def resolve(names: list[str], bun: str, cache_dir: Path) -> str:
    """Pin ``names`` (and what they pull in): the lock document."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    package_json = _package_json(names)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="bun-resolve-") as tmp:
        Path(tmp, "package.json").write_text(package_json)
        code, output = await _bun(bun, ["install", "--lockfile-only", "--no-progress", "--no-summary"],
                                  Path(tmp), cache_dir)
        lockfile = Path(tmp, "bun.lock")
        if code != 0 or not lockfile.exists():
            raise DependencyError(f"could not resolve {', '.join(names)}: {output}")
        stats["resolved"] += 1
        return json.dumps({"package.json": package_json, "bun.lock": lockfile.read_text()}, sort_keys=True)


async def lock_for(content: str, bun: str | None, cache_dir: Path) -> str | None:
    names = packages(content)
    if not names:
        return None
    if bun is None:
        raise DependencyError("the script imports npm packages but bun is not installed")
    return await resolve(names, bun, cache_dir)


async def install(lock: str, bun: str, cache_dir: Path, log: Callable[[str], None] = lambda t: None) -> Path:
    """The node_modules folder of ``lock``, installed now unless a previous job did."""
    root = cache_dir / "bun" / "modules"
    target = root / hashlib.sha256(lock.encode()).hexdigest()[:32]
    if (target / MARKER).exists():
        return target / "node_modules"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{target.name}.lock", "w") as guard:
        await asyncio.to_thread(fcntl.flock, guard, fcntl.LOCK_EX)
        try:
            if not (target / MARKER).exists():
                try:
                    doc = json.loads(lock)
                    package_json, bun_lock = doc["package.json"], doc["bun.lock"]
                except (ValueError, KeyError, TypeError):
                    raise DependencyError("the script's lock is not a bun lock document") from None
                log("[headrace] installing npm packages into the cache\n")
                shutil.rmtree(target, ignore_errors=True)  # an install that was interrupted
                target.mkdir()
                (target / "package.json").write_text(package_json)
                (target / "bun.lock").write_text(bun_lock)
                code, output = await _bun(
                    bun, ["install", "--frozen-lockfile", "--production", "--no-progress", "--no-summary"],
                    target, cache_dir,
                )
                if code != 0:
                    raise DependencyError(f"could not install the script's npm packages: {output}")
                (target / "node_modules").mkdir(exist_ok=True)
                (target / MARKER).write_text("")
                stats["installed"] += 1
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)
    return target / "node_modules"


async def node_modules_for(
    content: str, lock: str | None, bun: str, cache_dir: Path, log: Callable[[str], None] = lambda t: None
) -> Path | None:
    """The installed node_modules a job of ``content`` needs, or None when it imports no package.

    Without a stored lock the packages are resolved here, once per set of packages (kept in the cache).
    """
    if lock is None:
        names = packages(content)
        if not names:
            return None
        key = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:32]
        path = cache_dir / "bun" / "locks" / f"{key}.json"
        if path.exists():
            lock = path.read_text()
        else:
            lock = await resolve(names, bun, cache_dir)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(lock)
            os.replace(tmp, path)
    return await install(lock, bun, cache_dir, log)
