"""Run every benchmark in sequence, each in its own process (``python benchmarks/run_all.py``).

Each script prints its own figures, the ratio against its in-run baseline and whether its target
is met. This runner exits non-zero only if a script crashed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = [
    "bench_record.py",
    "bench_evaluate.py",
    "bench_quantile_error.py",
    "bench_memory.py",
    "bench_window_coverage.py",
    "bench_import.py",
    "bench_anomaly.py",
    "bench_scrape.py",
    "bench_simulator.py",
    "bench_breaker.py",
    "bench_recovery.py",
    "bench_recovery_mttr.py",
    "bench_notify.py",
    "bench_page_rules.py",
    "bench_false_pages.py",
    "bench_incidents.py",
    "bench_console.py",
    "bench_rca.py",
]


def main() -> int:
    failed = []
    for name in SCRIPTS:
        path = os.path.join(HERE, name)
        if not os.path.exists(path):
            print(f"## {name}: not present, skipped\n", flush=True)
            continue
        print(f"## {name}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, path]).returncode
        print(f"## {name}: exit {rc}, {time.perf_counter() - t0:.1f} s\n", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"crashed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
