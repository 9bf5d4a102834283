"""The worker's side of the Python zygote (python_zygote.py): start it, ask it to fork jobs, hear exits.

One zygote per event loop and Python language instance, i.e. per worker. It is started from the
worker's interpreter (the venv's) with a near-empty environment, in its own session, and it dies with
the worker. A zygote that dies is replaced on the next job.
"""
from __future__ import annotations

import asyncio
import atexit
import codecs
import itertools
import json
import os
import socket
import subprocess
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from headrace.core.process import kill_group

ZYGOTE = str(Path(__file__).with_name("python_zygote.py"))
# The zygote's own environment: forked jobs replace os.environ, but /proc/<pid>/environ of a forked
# child still shows the zygote's start-up environment, so it must hold nothing of the worker's.
ZYGOTE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
MAX_MESSAGE = 1 << 20

_live: "weakref.WeakSet[Zygote]" = weakref.WeakSet()


class ZygoteDied(RuntimeError):
    """The zygote exited; ``started`` tells whether the job had been forked already."""

    def __init__(self, started: bool):
        super().__init__("the Python zygote exited" + (" during the job" if started else ""))
        self.started = started


@dataclass
class Spawn:
    """One job handed to the zygote: its child's pid (= pgid) and exit code arrive as futures."""

    started: asyncio.Future
    exited: asyncio.Future
    pid: int | None = None
    cached: bool = False
    abandoned: bool = False  # the job was cancelled: kill the child as soon as its pid is known

    def abandon(self, signum: int) -> None:
        self.abandoned = True
        if self.pid is not None:
            kill_group(self.pid, signum)


class Zygote:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-s", "-E", "-u", ZYGOTE, str(theirs.fileno()), str(os.getpid())],
                pass_fds=[theirs.fileno()], env=ZYGOTE_ENV, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, start_new_session=True, close_fds=True,
            )
        except BaseException:
            self.sock.close()
            raise
        finally:
            theirs.close()
        self.pid = self.proc.pid
        self.sock.setblocking(False)
        self.pending: dict[int, Spawn] = {}
        self._ids = itertools.count(1)
        self.dead = False
        loop.add_reader(self.sock.fileno(), self._on_readable)
        _live.add(self)

    @property
    def usable(self) -> bool:
        return not self.dead and not self.loop.is_closed() and self.proc.poll() is None

    async def spawn(self, job_dir: Path, env: dict[str, str], stdout_fd: int, stderr_fd: int) -> Spawn:
        """Ask for a child running the job in ``job_dir``; the caller keeps (and closes) its fds."""
        if self.dead:
            raise ZygoteDied(False)
        request_id = next(self._ids)
        spawn = Spawn(self.loop.create_future(), self.loop.create_future())
        self.pending[request_id] = spawn
        data = json.dumps({"id": request_id, "job_dir": str(job_dir), "env": env}).encode()
        if len(data) > MAX_MESSAGE:
            del self.pending[request_id]
            raise ValueError("the job's environment is too large")
        while True:
            try:
                socket.send_fds(self.sock, [data], [stdout_fd, stderr_fd])
                return spawn
            except BlockingIOError:  # the zygote is behind: wait until the socket drains
                writable = self.loop.create_future()
                self.loop.add_writer(self.sock.fileno(), writable.set_result, None)
                try:
                    await writable
                finally:
                    self.loop.remove_writer(self.sock.fileno())
            except OSError:
                self._died()
                raise ZygoteDied(False) from None

    def _on_readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(MAX_MESSAGE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._died()
                return
            self._dispatch(json.loads(data))

    def _dispatch(self, message: dict) -> None:
        spawn = self.pending.get(message.get("id"))
        if spawn is None:
            return
        if "pid" in message:
            spawn.pid, spawn.cached = message["pid"], message["cached"]
            if spawn.abandoned:
                kill_group(spawn.pid, 9)
            if not spawn.started.done():
                spawn.started.set_result(spawn.pid)
        elif "exit" in message:
            del self.pending[message["id"]]
            if not spawn.exited.done():
                spawn.exited.set_result(message["exit"])
        elif "error" in message:
            del self.pending[message["id"]]
            error = RuntimeError(f"the Python zygote could not start the job: {message['error']}")
            for fut in (spawn.started, spawn.exited):
                if not fut.done():
                    fut.set_exception(error)
                    fut.exception()  # retrieved: a job cancelled meanwhile must not warn

    def _died(self) -> None:
        if self.dead:
            return
        self.dead = True
        pending, self.pending = self.pending, {}
        for spawn in pending.values():
            error = ZygoteDied(spawn.pid is not None)
            for fut in (spawn.started, spawn.exited):
                if not fut.done():
                    fut.set_exception(error)
                    fut.exception()
        self.close()

    def close(self) -> None:
        """Stop the zygote (its running children die with it) and reap it."""
        self.dead = True
        if not self.loop.is_closed():
            try:
                self.loop.remove_reader(self.sock.fileno())
            except (ValueError, RuntimeError):
                pass
        self.sock.close()
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        _live.discard(self)


class ZygoteKeeper:
    """The zygote of one language instance: started on first use, replaced when it dies or when the
    event loop changes (a new worker in the same process)."""

    def __init__(self):
        self._zygote: Zygote | None = None
        self.starts = 0
        self.forks = 0
        self.cache_hits = 0  # forks whose compiled script came from the zygote's code cache

    def get(self) -> Zygote:
        loop = asyncio.get_running_loop()
        z = self._zygote
        if z is not None and z.usable and z.loop is loop:
            return z
        if z is not None:
            z.close()
        for other in list(_live):  # zygotes of finished event loops (e.g. earlier test servers)
            if other.loop.is_closed():
                other.close()
        self._zygote = Zygote(loop)
        self.starts += 1
        return self._zygote

    @property
    def current(self) -> Zygote | None:
        return self._zygote


@atexit.register
def _close_all() -> None:
    for z in list(_live):
        z.close()


class PipeReader:
    """Reads one pipe into a sink (decoded text) and keeps its last bytes, on the event loop."""

    def __init__(self, fd: int, sink: Callable[[str], None], tail_bytes: int = 65536):
        self.loop = asyncio.get_running_loop()
        self.fd = fd
        self.sink = sink
        self.tail = bytearray()
        self.tail_bytes = tail_bytes
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.done = self.loop.create_future()
        os.set_blocking(fd, False)
        self.loop.add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self.sink(self.decoder.decode(data))
        self.tail.extend(data)
        del self.tail[: -self.tail_bytes]

    def close(self) -> None:
        if self.fd < 0:
            return
        self.loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd = -1
        rest = self.decoder.decode(b"", final=True)
        if rest:
            self.sink(rest)
        if not self.done.done():
            self.done.set_result(None)

    def text(self) -> str:
        return self.tail.decode("utf-8", "replace")
