"""The Python zygote: a lean process that forks one child per job.

Started by the worker as ``python -s -E -u python_zygote.py CONTROL_FD WORKER_PID`` with a near-empty
environment. It imports only the standard library and the job runner, so a fork costs a few
milliseconds instead of an interpreter start. It is single-threaded (forking is safe) and dies with the
worker (PDEATHSIG).

Control socket protocol (AF_UNIX SOCK_SEQPACKET, one JSON object per message):
  worker -> zygote  {"id": N, "job_dir": str, "env": {...}}  with two fds (SCM_RIGHTS): the write ends
                    of the job's stdout and stderr pipes
  zygote -> worker  {"id": N, "pid": PID, "cached": bool}  the child is forked; PID is also its pgid
                    {"id": N, "error": str}                  the fork failed
                    {"id": N, "exit": CODE}                  the child exited (negative: killed by signal)
End of file on the control socket means the worker is gone: the zygote exits.
"""
import ctypes
import hashlib
import json
import os
import selectors
import signal
import socket
import sys
from collections import OrderedDict

import python_wrapper

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_MESSAGE = 1 << 20
CODE_CACHE_SIZE = 256
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class CodeCache:
    """Compiled scripts by the SHA-256 of their source: forked children inherit the code objects."""

    def __init__(self, size=CODE_CACHE_SIZE):
        self.size = size
        self.entries = OrderedDict()

    def get(self, path):
        """(code or None, cached). None when the source does not compile: the child reports the error."""
        with open(path, "rb") as f:
            source = f.read()
        key = hashlib.sha256(source).hexdigest()
        code = self.entries.get(key)
        if code is not None:
            self.entries.move_to_end(key)
            return code, True
        try:
            code = python_wrapper.compile_script(source)
        except (SyntaxError, ValueError):
            return None, False
        self.entries[key] = code
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return code, False


def die_with_parent(expected_parent):
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != expected_parent:  # the parent died before prctl took effect
        os._exit(70)


def send(sock, message):
    sock.send(json.dumps(message).encode())


class Zygote:
    def __init__(self, sock):
        self.sock = sock
        self.pid = os.getpid()
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock, selectors.EVENT_READ, None)
        self.devnull = os.open(os.devnull, os.O_RDONLY)
        self.cache = CodeCache()

    def serve(self):
        while True:
            for key, _ in self.selector.select():
                if key.data is None:
                    if not self.read_request():
                        return
                else:
                    self.reap(key.fd, *key.data)

    def read_request(self):
        try:
            data, fds, flags, _ = socket.recv_fds(self.sock, MAX_MESSAGE, 2)
        except InterruptedError:
            return True
        if not data:
            return False  # the worker closed the socket
        request = None
        try:
            request = json.loads(data)
            if len(fds) != 2 or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                raise ValueError("malformed request")
            self.fork(request, fds)
        except Exception as exc:  # a bad request fails that job, never the zygote
            send(self.sock, {"id": request.get("id") if isinstance(request, dict) else None,
                             "error": f"{type(exc).__name__}: {exc}"})
        finally:
            for fd in fds:
                os.close(fd)
        return True

    def fork(self, request, fds):
        job_dir = request["job_dir"]
        code, cached = self.cache.get(os.path.join(job_dir, python_wrapper.SCRIPT))
        pid = os.fork()
        if pid == 0:
            try:
                self.become_job(request, fds, code)
            finally:
                os._exit(70)
        try:
            os.setpgid(pid, pid)  # also done by the child: whichever runs first, no race
        except OSError:
            pass  # the child already exited or set it
        pidfd = os.pidfd_open(pid)
        self.selector.register(pidfd, selectors.EVENT_READ, (request["id"], pid))
        send(self.sock, {"id": request["id"], "pid": pid, "cached": cached})

    def reap(self, pidfd, request_id, pid):
        self.selector.unregister(pidfd)
        os.close(pidfd)
        # A job's processes never outlive it. Killing the group before reaping its leader is safe:
        # until waitpid, the leader's pid (the pgid) cannot be reused by another process.
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        _, status = os.waitpid(pid, 0)
        send(self.sock, {"id": request_id, "exit": os.waitstatus_to_exitcode(status)})

    def become_job(self, request, fds, code):
        """In the child: the job's own process group, stdio, environment and directory; then run it."""
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
        die_with_parent(self.pid)
        os.dup2(self.devnull, 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        # The job must not hold the control socket (it could drive the zygote) nor other jobs' fds.
        self.selector.close()
        self.sock.close()
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[:] = [p for p in sys.path if p != HERE]
        sys.argv = [python_wrapper.SCRIPT]
        exit_code = python_wrapper.run_job(request["job_dir"], code)
        finish(exit_code)


def finish(exit_code):
    """End the child as a fresh interpreter would: join threads, run atexit handlers, flush."""
    try:
        threading = sys.modules.get("threading")
        if threading is not None:
            threading._shutdown()
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(exit_code)


def main(argv):
    control_fd, worker_pid = int(argv[1]), int(argv[2])
    die_with_parent(worker_pid)
    # This folder stays on sys.path only until python_wrapper is imported (jobs must not import
    # the runner's siblings); children drop it again in case an import put it back.
    sys.path[:] = [p for p in sys.path if p != HERE]
    sock = socket.socket(fileno=control_fd)
    sock.set_inheritable(False)
    Zygote(sock).serve()


if __name__ == "__main__":
    main(sys.argv)
