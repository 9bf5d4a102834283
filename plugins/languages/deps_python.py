"""Third-party dependencies of Python scripts: infer, pin (the version's lock), install into a cache.

- Requirements come from a PEP 723 ``# /// script`` block, else a ``# requirements:`` comment header,
  else the script's top-level imports (standard library dropped, import names mapped to distribution
  names where they differ).
- ``resolve`` pins them with pip's resolver (``pip install --dry-run --report``): the lock is one
  ``name==version`` line per distribution, transitive ones included, sorted.
- ``site_dirs`` installs a lock once into ``<cache>/python/site/<sha256 of the lock>`` (pip
  ``--target --no-deps``) and returns that folder for the job's sys.path; later jobs with the same lock
  reuse it and install nothing.
"""
from __future__ import annotations

import ast
import asyncio
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Callable

from headrace.core.config import Settings
from headrace.core.languages import JobContext, ScriptError
from headrace.core.queue import Outcome

# Import names whose distribution on PyPI is named differently.
IMPORT_TO_DIST = {
    "yaml": "PyYAML",
    "PIL": "Pillow",
    "sklearn": "scikit-learn",
    "cv2": "opencv-python",
    "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil",
    "dotenv": "python-dotenv",
    "jwt": "PyJWT",
    "psycopg2": "psycopg2-binary",
    "Crypto": "pycryptodome",
    "OpenSSL": "pyOpenSSL",
    "magic": "python-magic",
    "slugify": "python-slugify",
    "docx": "python-docx",
    "pptx": "python-pptx",
    "serial": "pyserial",
    "usb": "pyusb",
    "git": "GitPython",
    "ldap": "python-ldap",
    "attr": "attrs",
    "zmq": "pyzmq",
    "fitz": "PyMuPDF",
    "kafka": "kafka-python",
    "nacl": "PyNaCl",
    "telegram": "python-telegram-bot",
    "multipart": "python-multipart",
    "wmill": "wmill",
}

# pip reads its own configuration (index, mirrors, certificates); everything else is the worker's.
_PIP_ENV_KEEP = ("PATH", "HOME", "LANG", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY",
                 "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
                 "PIP_FIND_LINKS", "PIP_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_CONFIG_FILE", "XDG_CONFIG_HOME")
_REQ_HEADER = re.compile(r"^#\s*requirements\s*:\s*$", re.IGNORECASE)
_PEP723 = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")

#: Counters, for tests and the bench: resolutions run and lock installs done by this process.
stats = {"resolved": 0, "installed": 0}


class DependencyError(Exception):
    """Requirements that cannot be read, resolved or installed; the message is the resolver's."""


# -- which requirements -------------------------------------------------------------------------------

def pep723_dependencies(content: str) -> list[str] | None:
    """The ``dependencies`` of a ``# /// script`` block, or None when there is no such block."""
    for m in _PEP723.finditer(content):
        if m.group("type") != "script":
            continue
        toml = "".join(line[2:] if line.startswith("# ") else line[1:]
                       for line in m.group("content").splitlines(keepends=True))
        try:
            deps = tomllib.loads(toml).get("dependencies", [])
        except tomllib.TOMLDecodeError as exc:
            raise DependencyError(f"invalid # /// script block: {exc}") from None
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            raise DependencyError("# /// script: dependencies must be a list of strings")
        return deps
    return None


def header_requirements(content: str) -> list[str] | None:
    """Windmill's header: ``# requirements:`` then one requirement per comment line."""
    lines = content.splitlines()
    for i, line in enumerate(lines):
        if _REQ_HEADER.match(line.strip()):
            reqs = []
            for follow in lines[i + 1:]:
                text = follow.strip()
                if not text.startswith("#") or not text.lstrip("#").strip():
                    break
                reqs.append(text.lstrip("#").strip())
            return reqs
    return None


def _catches_import_error(node: ast.Try) -> bool:
    for handler in node.handlers:
        names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names):
            return True
    return False


def imported_modules(content: str) -> list[str]:
    """Absolute imports of the script (dotted names), except those guarded by ``except ImportError``."""
    try:
        tree = ast.parse(content)
    except SyntaxError:
        return []  # the schema step reports it, with line and column
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and _catches_import_error(node):
            for inner in node.body:
                guarded.update(id(n) for n in ast.walk(inner))
    names: list[str] = []
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "google.cloud":  # a namespace package: the name imported is the distribution
                names.extend(f"google.cloud.{alias.name}" for alias in node.names)
            else:
                names.append(node.module)
    return names


def inferred_requirements(content: str) -> list[str]:
    found: list[str] = []
    for name in imported_modules(content):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top == "__future__":
            continue
        parts = name.split(".")
        if parts[:2] == ["google", "cloud"] and len(parts) > 2:  # google.cloud.storage
            dist = f"google-cloud-{parts[2].replace('_', '-')}"
        else:
            dist = IMPORT_TO_DIST.get(".".join(parts[:2])) or IMPORT_TO_DIST.get(top) or top.replace("_", "-")
        if dist not in found:
            found.append(dist)
    return found


def requirements(content: str) -> list[str]:
    """What the script needs: PEP 723 block, else ``# requirements:`` header, else inferred imports."""
    for explicit in (pep723_dependencies(content), header_requirements(content)):
        if explicit is not None:
            return explicit
    return inferred_requirements(content)


# -- resolve and install ------------------------------------------------------------------------------

def _pip_env(cache_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _PIP_ENV_KEEP}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["PIP_CACHE_DIR"] = str(cache_dir / "python" / "pip")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


async def _pip(args: list[str], cache_dir: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pip", *args, env=_pip_env(cache_dir),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = await proc.communicate()
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode("utf-8", "replace")


def _pip_error(output: str) -> str:
    """pip's own error lines, without its hints and progress."""
    lines = [ln for ln in output.splitlines() if ln.strip() and not ln.startswith(("WARNING", "  Downloading",
                                                                                      "Collecting", "  Using"))]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return "\n".join(errors or lines[-5:]).strip()


async def resolve(reqs: list[str], cache_dir: Path) -> str:
    """Pin ``reqs`` (and everything they pull in) for this interpreter: ``name==version`` lines."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="resolve-") as tmp:
        report = Path(tmp) / "report.json"
        code, output = await _pip(
            ["install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report), "--", *reqs],
            cache_dir,
        )
        if code != 0 or not report.exists():
            raise DependencyError(f"could not resolve {', '.join(reqs)}: {_pip_error(output)}")
        installs = json.loads(report.read_text())["install"]
    stats["resolved"] += 1
    pins = sorted(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in installs)
    return "".join(f"{pin}\n" for pin in pins)


async def lock_for(content: str, cache_dir: Path) -> str | None:
    """The lock of a script version, or None when it has no third-party requirement."""
    reqs = requirements(content)
    if not reqs:
        return None
    return await resolve(reqs, cache_dir)


def _lock_key(lock: str) -> str:
    return hashlib.sha256(f"{sys.version_info[:2]}\n{lock}".encode()).hexdigest()[:32]


async def install(lock: str, cache_dir: Path, log: Callable[[str], None] = lambda text: None) -> Path:
    """The folder holding the lock's packages, installed now unless a previous job did."""
    root = cache_dir / "python" / "site"
    target = root / _lock_key(lock)
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    # One installer per lock across workers on this machine; the others wait and reuse its folder.
    with open(root / f"{target.name}.lock", "w") as guard:
        await asyncio.to_thread(fcntl.flock, guard, fcntl.LOCK_EX)
        try:
            if target.is_dir():
                return target
            log(f"[headrace] installing {lock.count(chr(10))} Python package(s) into the cache\n")
            staging = Path(tempfile.mkdtemp(dir=root, prefix=f"{target.name}.tmp-"))
            try:
                req_file = staging / "requirements.lock"
                req_file.write_text(lock)
                code, output = await _pip(
                    ["install", "--quiet", "--no-deps", "--no-compile", "--target", str(staging / "site"),
                     "-r", str(req_file)],
                    cache_dir,
                )
                if code != 0:
                    raise DependencyError(f"could not install {lock.strip()}: {_pip_error(output)}")
                os.rename(staging / "site", target)
                stats["installed"] += 1
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)
    return target


async def site_dirs(
    content: str, cache_dir: Path, lock: str | None = None, log: Callable[[str], None] = lambda text: None
) -> list[str]:
    """The folders a job of ``content`` needs on sys.path (empty when it needs no package).

    ``lock`` is the version's stored lock; without one (a version saved before locking, a local run)
    the requirements are resolved here, once per set of requirements, and the lock is kept in the cache.
    Raises DependencyError with the resolver's or installer's message.
    """
    if lock is None:
        lock = await _cached_lock(content, cache_dir)
    if not lock or not lock.strip():
        return []
    return [str(await install(lock, cache_dir, log))]


PATHS_FILE = "paths.json"  # read by python_wrapper.extra_paths


async def prepare_job(ctx: JobContext) -> Outcome | None:
    """Put the job's installed packages on its path (JOB_DIR/paths.json); a failed Outcome if impossible."""
    cache_dir = ctx.cache_dir or Settings.from_env().job_cache_dir
    try:
        paths = await site_dirs(ctx.content, cache_dir, ctx.lock, ctx.log)
    except DependencyError as exc:
        return Outcome.failure("DependencyError", str(exc))
    if paths:
        (ctx.job_dir / PATHS_FILE).write_text(json.dumps(paths))
    return None


async def save_time_lock(content: str, cache_dir: Path) -> str | None:
    """Language.lock for Python: the resolver's failure becomes a ScriptError (a 400 on save)."""
    try:
        return await lock_for(content, cache_dir)
    except DependencyError as exc:
        raise ScriptError(str(exc)) from None


@functools.lru_cache(maxsize=1024)
def _requirements_of(content: str) -> tuple[str, ...]:
    return tuple(requirements(content))  # parsed once per script content, not once per job


async def _cached_lock(content: str, cache_dir: Path) -> str | None:
    reqs = list(_requirements_of(content))
    if not reqs:
        return None
    key = hashlib.sha256("\n".join(reqs).encode()).hexdigest()[:32]
    path = cache_dir / "python" / "locks" / f"{key}.txt"
    if path.exists():
        return path.read_text()
    lock = await resolve(reqs, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(lock)
    os.replace(tmp, path)
    return lock
