"""Running a job's process: its own process group, output streamed to the job log, killed as a group."""
from __future__ import annotations

import asyncio
import codecs
import ctypes
import os
import shutil
import signal
from dataclasses import dataclass

from .languages import JobContext

_PR_SET_PDEATHSIG = 1
_TAIL_BYTES = 65536
_DRAIN_S = 0.5
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _libc = None


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the worker is SIGKILLed, the job's leader dies too.
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# A preexec_fn makes Python fork the whole worker (about 24 ms in a worker-sized process) instead of
# vfork (about 2 ms). setpriv sets the same parent-death signal and then execs the job's command.
_SETPRIV = shutil.which("setpriv")


def _spawn_args(argv: list[str]) -> tuple[list[str], dict]:
    if _SETPRIV:
        return [_SETPRIV, "--pdeathsig", "KILL", "--", *argv], {}
    return argv, {"preexec_fn": _die_with_parent}


@dataclass
class ProcessResult:
    returncode: int
    last_line: str  # last non-empty line of stdout (Bash's result convention)
    stderr_tail: str  # the end of stderr, for error messages


async def run_process(argv: list[str], ctx: JobContext, cwd=None) -> ProcessResult:
    """Start ``argv`` in a new session with ``ctx.env``; stream stdout and stderr into ``ctx.log``."""
    argv, extra = _spawn_args(argv)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=str(cwd or ctx.job_dir),
        env=ctx.env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        **extra,
    )
    ctx.process_groups.add(proc.pid)
    out_tail, err_tail = bytearray(), bytearray()

    async def pump(stream: asyncio.StreamReader, tail: bytearray) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while data := await stream.read(65536):
            ctx.log(decoder.decode(data))
            tail.extend(data)
            del tail[:-_TAIL_BYTES]

    pumps = asyncio.gather(pump(proc.stdout, out_tail), pump(proc.stderr, err_tail))
    try:
        # Not proc.wait(): on Python 3.11 it also waits for the pipes to close, which children left
        # in the group (`sleep 1000 &`) keep open.
        await _exited(proc.pid)
        # Drain briefly, then end the whole group, since a job's processes never outlive it.
        try:
            await asyncio.wait_for(asyncio.shield(pumps), _DRAIN_S)
        except asyncio.TimeoutError:
            pass
        kill_group(proc.pid, signal.SIGKILL)
        await pumps
        returncode = await proc.wait()
    except asyncio.CancelledError:
        kill_group(proc.pid, signal.SIGKILL)
        pumps.cancel()
        raise
    finally:
        ctx.process_groups.discard(proc.pid)
    lines = [ln for ln in out_tail.decode("utf-8", "replace").splitlines() if ln.strip()]
    stderr_tail = err_tail[-2000:].decode("utf-8", "replace").strip()
    return ProcessResult(returncode, lines[-1] if lines else "", stderr_tail)


async def _exited(pid: int) -> None:
    """Wait until the process ``pid`` has exited (its pidfd becomes readable)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # already exited and reaped
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(pidfd, lambda: done.done() or done.set_result(None))
    try:
        await done
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
