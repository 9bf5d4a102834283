"""Runs inside a Python job's process: load main.py, call main(**args), write result.json.

Two callers: the zygote (python_zygote.py) calls ``run_job`` in a freshly forked child, passing the
compiled code it caches by script hash; ``python python_wrapper.py JOB_DIR`` runs a job in a fresh
interpreter (the fallback when no zygote can be started). Only the standard library is imported here,
so the zygote stays lean.

Extra import paths (cached third-party packages) come from the job's environment variable
HEADRACE_EXTRA_PATHS (os.pathsep-separated) and from an optional JSON list in JOB_DIR/paths.json; they
go on sys.path right after the job dir.
"""
import json
import os
import sys
import traceback

SCRIPT = "main.py"
EXTRA_PATHS_VAR = "HEADRACE_EXTRA_PATHS"
PATHS_FILE = "paths.json"
# A trigger's event for a script with a preprocessor (headrace.core.ledger.EVENT_ARG; stdlib only here).
EVENT_ARG = "__headrace_event"


def _write(path, value):
    with open(path, "w") as f:
        json.dump(value, f, default=str)


def compile_script(source):
    """The code object of a job's script; the same file name as in tracebacks of a fresh run."""
    return compile(source, SCRIPT, "exec", dont_inherit=True)


def _user_frames(tb):
    """The traceback from the first frame outside this file: the job's own frames."""
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return tb


def extra_paths(job_dir):
    paths = [p for p in os.environ.get(EXTRA_PATHS_VAR, "").split(os.pathsep) if p]
    paths_file = os.path.join(job_dir, PATHS_FILE)
    if os.path.exists(paths_file):
        with open(paths_file) as f:
            paths.extend(str(p) for p in json.load(f))
    return paths


def call_entry(namespace, args):
    """main(**args); for a trigger's event (args ``{EVENT_ARG: event}``), main(**preprocessor(event))."""
    entry = namespace.get("main")
    if not callable(entry):
        raise NameError("the script defines no main() function")
    if EVENT_ARG in args:
        preprocessor = namespace.get("preprocessor")
        if not callable(preprocessor):
            raise NameError("the job carries a trigger event but the script defines no preprocessor() function")
        args = preprocessor(args[EVENT_ARG])
        if not isinstance(args, dict):
            raise TypeError(f"preprocessor() must return a dict of main()'s arguments, not {type(args).__name__}")
    return entry(**args)


def run_job(job_dir, code=None):
    """Run one job in this process (already chdir'd or not); return the process exit code."""
    os.chdir(job_dir)
    sys.path[:0] = [job_dir] + extra_paths(job_dir)
    with open("args.json") as f:
        args = json.load(f)
    try:
        namespace = {"__name__": "__headrace_main__", "__file__": os.path.join(job_dir, SCRIPT)}
        if code is None:
            with open(SCRIPT) as f:
                code = compile_script(f.read())
        exec(code, namespace)
        result = call_entry(namespace, args)
    except BaseException as exc:
        tb = "".join(traceback.format_exception(type(exc), exc, _user_frames(exc.__traceback__)))
        sys.stderr.write(tb)
        _write("error.json", {"name": type(exc).__name__, "message": str(exc), "stack": tb})
        sys.stderr.flush()
        return 1
    _write("result.json", result)
    return 0


if __name__ == "__main__":
    # Drop this file's own folder from the path: the job must not import the runner's siblings.
    del sys.path[0]
    sys.exit(run_job(sys.argv[1]))
