"""The `headrace` command: serve, worker, migrate, plugins, run, token and workspace admin."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import asyncpg
import sqlalchemy as sa

from headrace.core.config import Settings
from headrace.core.db import Database
from headrace.core.embedded import start_embedded
from headrace.core.languages import JobContext, LanguageCatalog, ScriptError
from headrace.core.migrate import migrate
from headrace.core.plugins import build_registry
from headrace.core import tokens as tok
from headrace.core.schema import workspaces
from headrace.core.secrets import SecretBox
from headrace.core.worker import Worker

EXTENSIONS = {".py": "python3", ".sh": "bash", ".ts": "bun", ".go": "go"}


class CliError(Exception):
    pass


def _settings(args) -> Settings:
    s = Settings.from_env()
    for attr in ("host", "port"):
        if getattr(args, attr, None) is not None:
            setattr(s, attr, getattr(args, attr))
    if getattr(args, "slots", None):
        s.worker_slots = args.slots
    return s


def _database_url(settings: Settings) -> str:
    if settings.database_url is None:
        settings.database_url = start_embedded(settings.data_dir)
    return settings.database_url


# -- commands ----------------------------------------------------------------------------------

def cmd_serve(args) -> None:
    from aiohttp import web

    from .app import make_app

    settings = _settings(args)
    app = make_app(settings, worker=not args.no_worker)
    print(f"Headrace listening on http://{settings.host}:{settings.port}", flush=True)
    try:
        web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)
    except (OSError, asyncpg.PostgresError) as exc:
        # The database is unreachable at start-up, or the port is taken.
        raise CliError(f"cannot start: {exc}") from None


async def _run_worker(settings: Settings, tags: tuple[str, ...]) -> None:
    url = _database_url(settings)
    db = await _open_db(url)
    try:
        await migrate(db.engine)
        registry = build_registry()
        worker = Worker(db.pool, LanguageCatalog.from_registry(registry), settings,
                        slots=settings.worker_slots, tags=tags, dsn=url,
                        secrets=SecretBox(db.engine, SecretBox.load_master_key(settings)))
        task = asyncio.create_task(worker.run())
        loop = asyncio.get_running_loop()
        stopping: list[asyncio.Task] = []

        def stop() -> None:
            # First signal: let running jobs finish (up to the grace period); a second one: stop now.
            if stopping:
                task.cancel()
                return
            print(f"stopping: running jobs get {settings.shutdown_grace_s:g} s to finish", flush=True)

            async def drain_then_cancel() -> None:
                await worker.drain(settings.shutdown_grace_s)
                task.cancel()
            stopping.append(asyncio.create_task(drain_then_cancel()))

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        print(f"worker {worker.name}: {worker.slots} slots, tags {list(tags)}", flush=True)
        await asyncio.gather(task, return_exceptions=True)
    finally:
        await db.close()


def cmd_worker(args) -> None:
    asyncio.run(_run_worker(_settings(args), tuple(args.tag or ["default"])))


async def _open_db(url: str, pool_size: int = 10) -> Database:
    try:
        return await Database.open(url, pool_size=pool_size)
    except (OSError, asyncpg.PostgresError) as exc:
        raise CliError(f"cannot connect to the database ({_redact(url)}): {exc}") from None


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"


async def _with_db(settings: Settings, fn):
    db = await _open_db(_database_url(settings), pool_size=2)
    try:
        return await fn(db)
    finally:
        await db.close()


def cmd_migrate(args) -> None:
    async def go(db: Database):
        await migrate(db.engine)
    asyncio.run(_with_db(_settings(args), go))
    print("database is at the latest schema")


def cmd_plugins(args) -> None:
    infos = build_registry().describe()
    if args.json:
        print(json.dumps([i.__dict__ for i in infos], indent=2))
        return
    for i in infos:
        status = f"ERROR: {i.error}" if i.error else ", ".join(i.hooks)
        print(f"{i.name} {i.version or ''}".rstrip() + f"  [{status}]")
        for note in i.overridden:
            print(f"    warning: {note}")


def cmd_token_create(args) -> None:
    scopes = args.scope or tok.ADMIN_SCOPES
    unknown = tok.validate_scopes(scopes)
    if unknown:
        raise CliError(f"unknown scopes: {', '.join(unknown)}")

    async def go(db: Database):
        await migrate(db.engine)
        async with db.engine.begin() as conn:
            exists = await conn.scalar(sa.select(workspaces.c.id).where(workspaces.c.id == args.workspace))
            if exists is None:
                raise CliError(f"no workspace {args.workspace!r}; create it with `headrace workspace create`")
            return await tok.create_token(
                conn, args.workspace, scopes=scopes, label=args.label or "", owner=args.owner,
                expires_in=timedelta(seconds=args.expires_in_s) if args.expires_in_s else None,
                script_path=args.script_path,
            )
    print(asyncio.run(_with_db(_settings(args), go)))


def cmd_workspace_create(args) -> None:
    async def go(db: Database):
        await migrate(db.engine)
        async with db.engine.begin() as conn:
            exists = await conn.scalar(sa.select(workspaces.c.id).where(workspaces.c.id == args.id))
            if exists is not None:
                raise CliError(f"workspace {args.id!r} already exists")
            await conn.execute(workspaces.insert().values(id=args.id, name=args.name or args.id))
    asyncio.run(_with_db(_settings(args), go))
    print(f"workspace {args.id} created")


def cmd_workspace_list(args) -> None:
    async def go(db: Database):
        async with db.engine.connect() as conn:
            return (await conn.execute(sa.select(workspaces.c.id, workspaces.c.name))).all()
    for ws_id, name in asyncio.run(_with_db(_settings(args), go)):
        print(f"{ws_id}\t{name}")


def _parse_kv(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise CliError(f"argument {pair!r} must look like name=value")
        name, raw = pair.split("=", 1)
        try:
            out[name] = json.loads(raw)
        except ValueError:
            out[name] = raw
    return out


def cmd_run(args) -> None:
    """Run one script file locally, outside the queue, and print its result as JSON."""
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    languages = LanguageCatalog.from_registry(build_registry())
    lang_name = args.language or EXTENSIONS.get(path.suffix)
    language = languages.resolve(lang_name or "")
    if language is None:
        raise CliError(f"cannot tell the language of {path.name}; pass --language (one of {', '.join(languages.names())})")
    content = path.read_text()
    try:
        schema = language.schema(content)
    except ScriptError as exc:
        raise CliError(f"{path}:{exc.line}:{exc.column}: {exc.message}")
    from headrace.core.args import ArgsError, check_args

    try:
        call_args = check_args(f"local:{path}", schema, _parse_kv(args.args))
    except ArgsError as exc:
        raise CliError(exc.message)

    async def go():
        import uuid

        with tempfile.TemporaryDirectory(prefix="headrace-run-") as tmp:
            job_dir = Path(tmp)
            (job_dir / "args.json").write_text(json.dumps(call_args))
            (job_dir / language.file_name).write_text(content)
            ctx = JobContext(
                id=uuid.uuid4(), workspace_id="local", script_path=str(path), script_hash=None,
                content=content, args=call_args, job_dir=job_dir,
                env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": tmp, "LANG": "C.UTF-8"},
                log=lambda text: sys.stderr.write(text),
            )
            return await language.run(ctx)

    outcome = asyncio.run(go())
    print(json.dumps(outcome.result, indent=2, default=str))
    if not outcome.success:
        sys.exit(1)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="headrace", description="Headrace trigger and integration hub")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the API server (with a worker unless --no-worker)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--slots", type=int, help="job slots of the built-in worker")
    s.add_argument("--no-worker", action="store_true", help="serve the API only")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("worker", help="run jobs from the queue")
    s.add_argument("--slots", type=int, help="jobs run at once (default 4)")
    s.add_argument("--tag", action="append", help="queue tags to take (default: default)")
    s.set_defaults(fn=cmd_worker)

    s = sub.add_parser("migrate", help="bring the database schema up to date")
    s.set_defaults(fn=cmd_migrate)

    s = sub.add_parser("plugins", help="list plugins, their hooks and load errors")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_plugins)

    s = sub.add_parser("run", help="run a script file locally: headrace run FILE -- name=value ...")
    s.add_argument("file")
    s.add_argument("--language")
    s.add_argument("args", nargs="*")
    s.set_defaults(fn=cmd_run)

    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="action", required=True)
    s = token.add_parser("create", help="create a token and print it (only its hash is stored)")
    s.add_argument("--workspace", default="main")
    s.add_argument("--scope", action="append", help="repeatable; default: * (admin)")
    s.add_argument("--label")
    s.add_argument("--owner", default="admin")
    s.add_argument("--expires-in-s", type=int)
    s.add_argument("--script-path", help="limit the token to running this one script")
    s.set_defaults(fn=cmd_token_create)

    ws = sub.add_parser("workspace", help="workspaces").add_subparsers(dest="action", required=True)
    s = ws.add_parser("create")
    s.add_argument("id")
    s.add_argument("--name")
    s.set_defaults(fn=cmd_workspace_create)
    s = ws.add_parser("list")
    s.set_defaults(fn=cmd_workspace_list)
    return p


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except CliError as exc:
        print(f"headrace: {exc}", file=sys.stderr)
        sys.exit(2)
    except ValueError as exc:  # e.g. a malformed DATABASE_URL
        print(f"headrace: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
