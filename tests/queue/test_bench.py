"""bench/queue.py runs end to end (on a small count): its own database, the noop plugin, one Worker."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_queue_bench_drains_every_job_exactly_once():
    out = subprocess.run(
        [sys.executable, "-m", "bench.queue", "-n", "300", "--slots", "40", "--max-seconds", "30"],
        cwd=ROOT, capture_output=True, text=True, timeout=90,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert (report["drained"], report["completed_rows"], report["left_in_queue"]) == (300, 300, 0)
    assert report["worker_jobs_per_s"] > 0
