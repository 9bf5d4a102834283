"""Runs inside a Python job's process: load main.py, call main(**args), write result.json.

Usage: python python_wrapper.py JOB_DIR. Only the standard library is imported here, so the job's
start-up cost is the interpreter's and the script's own imports.
"""
import json
import os
import sys
import traceback


def _write(path, value):
    with open(path, "w") as f:
        json.dump(value, f, default=str)


def main(job_dir):
    os.chdir(job_dir)
    sys.path.insert(0, job_dir)
    with open("args.json") as f:
        args = json.load(f)
    try:
        namespace = {"__name__": "__headrace_main__", "__file__": os.path.join(job_dir, "main.py")}
        with open("main.py") as f:
            code = compile(f.read(), "main.py", "exec")
        exec(code, namespace)
        entry = namespace.get("main")
        if not callable(entry):
            raise NameError("the script defines no main() function")
        result = entry(**args)
    except BaseException as exc:
        tb = traceback.format_exc()
        sys.stderr.write(tb)
        _write("error.json", {"name": type(exc).__name__, "message": str(exc), "stack": tb})
        sys.stderr.flush()
        return 1
    _write("result.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
