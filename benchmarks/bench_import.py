"""Start-up costs: ``import aphrodite_sla`` and the first evaluation.

1. ``import aphrodite_sla`` timed inside fresh subprocesses (median of several, interleaved with
   the baseline: ``import numpy`` alone in a fresh subprocess). The whole child's wall time
   (interpreter start + import) is shown too. Checks that numba and scipy are NOT in
   ``sys.modules`` after the import (target: the package loads numpy only).
2. ``python -X importtime -c "import aphrodite_sla"``: the package's own modules and the largest
   non-numpy imports.
3. First ``evaluate()`` in a fresh process with a warm numba cache: the same child runs twice (the
   first run may compile and populates the cache; the second is timed), production defaults
   (``create_production_sla_manager``), all windows full; compared with a steady-state evaluation
   measured in that same child. A third run loads numba, the kernels and scipy explicitly first,
   to show where the first evaluation's time goes.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import fmt_ns, header, verdict

RUNS = 9

IMPORT_CHILD = r"""
import json, sys, time
t0 = time.perf_counter_ns()
import {module}
t1 = time.perf_counter_ns()
heavy = [m for m in ("numba", "llvmlite", "scipy", "scipy.stats", "prometheus_client", "psutil") if m in sys.modules]
print(json.dumps({{"ns": t1 - t0, "heavy": heavy, "modules": len(sys.modules)}}))
"""

EVAL_CHILD = r"""
import json, sys, time
sys.path.insert(0, {here!r})
t0 = time.perf_counter_ns()
import numpy as np
import aphrodite_sla
from aphrodite_sla import ManualClock, create_production_sla_manager
from _common import T0, fill_all, fill_full, timed_ns
out = {{"import_ns": time.perf_counter_ns() - t0}}
if {preload!r}:
    ns, _ = timed_ns(lambda: __import__("numba"))
    out["numba_import_ns"] = ns
    def _load():
        from aphrodite_sla.store import kernels
        kernels.warm_up()
    ns, _ = timed_ns(_load)
    out["kernels_load_ns"] = ns
    ns, _ = timed_ns(lambda: __import__("scipy.stats"))
    out["scipy_import_ns"] = ns
clock = ManualClock(T0)
mgr = create_production_sla_manager(clock=clock)
rng = np.random.default_rng(3)
fill_full(mgr, clock, rng)
out["scipy_before_first"] = "scipy" in sys.modules
ns, _ = timed_ns(mgr.evaluate)
out["first_ns"] = ns
out["scipy_after_first"] = "scipy" in sys.modules
steady = []
for i in range(30):
    t_prev = clock()
    clock.advance(5.0)
    fill_all(mgr, rng, t_prev, clock())
    ns, _ = timed_ns(mgr.evaluate)
    if i >= 5:
        steady.append(ns)
out["steady_ns"] = sorted(steady)[len(steady) // 2]
print(json.dumps(out))
"""


def run_child(code: str, *extra: str, env: dict | None = None) -> tuple[dict, float, str]:
    t0 = time.perf_counter_ns()
    p = subprocess.run([sys.executable, *extra, "-c", code], capture_output=True, text=True, check=True, env=env)
    wall = time.perf_counter_ns() - t0
    lines = p.stdout.strip().splitlines()
    return (json.loads(lines[-1]) if lines else {}), float(wall), p.stderr


def main() -> None:
    header("bench_import: import time and first evaluation")

    # -- 1. import time ------------------------------------------------------------------------
    # Bytecode: this environment may set PYTHONDONTWRITEBYTECODE (then every import compiles the
    # package's sources). The headline figure uses a bytecode cache, as an installed package has,
    # kept in a temporary PYTHONPYCACHEPREFIX so nothing is written next to the sources.
    cache_dir = tempfile.mkdtemp(prefix="aphrodite_sla_bench_pyc_")
    cached_env = dict(os.environ, PYTHONPYCACHEPREFIX=cache_dir)
    cached_env.pop("PYTHONDONTWRITEBYTECODE", None)
    envs = [("bytecode cached", cached_env)]
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        envs.append(("as this environment runs it (PYTHONDONTWRITEBYTECODE set: sources compiled at each import)",
                     dict(os.environ)))
    heavy: set[str] = set()
    modules = 0
    try:
        for label, env in envs:
            ours, base, ours_wall, base_wall = [], [], [], []
            for _ in range(2):  # warm the OS file cache and the bytecode cache
                run_child(IMPORT_CHILD.format(module="aphrodite_sla"), env=env)
                run_child(IMPORT_CHILD.format(module="numpy"), env=env)
            for _ in range(RUNS):
                d, w, _ = run_child(IMPORT_CHILD.format(module="aphrodite_sla"), env=env)
                ours.append(d["ns"])
                ours_wall.append(w)
                heavy.update(d["heavy"])
                modules = d["modules"]
                d, w, _ = run_child(IMPORT_CHILD.format(module="numpy"), env=env)
                base.append(d["ns"])
                base_wall.append(w)
            o, b = statistics.median(ours), statistics.median(base)
            ow, bw = statistics.median(ours_wall), statistics.median(base_wall)
            print(f"{label}:")
            print(f"   import aphrodite_sla (fresh process, median of {RUNS})  {fmt_ns(o):>10} (min {fmt_ns(min(ours))})"
                  f"   whole child {fmt_ns(ow)}")
            print(f"   baseline: import numpy alone                        {fmt_ns(b):>10} (min {fmt_ns(min(base))})"
                  f"   whole child {fmt_ns(bw)}")
            print(f"   ratio aphrodite_sla / numpy import: {o / b:.2f}x  (+{fmt_ns(o - b)} beyond numpy; whole child "
                  f"{ow / bw:.2f}x)   no numeric target in the issue (informational)")
            if label == "bytecode cached":
                _, _, err = run_child("import aphrodite_sla", "-X", "importtime", env=env)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    print(f"modules in sys.modules after import aphrodite_sla: {modules}")
    numba_loaded = "numba" in heavy or "llvmlite" in heavy
    scipy_loaded = "scipy" in heavy
    print(f"numba in sys.modules after import: {numba_loaded};  scipy: {scipy_loaded}   "
          f"target: neither loaded: {verdict(not numba_loaded and not scipy_loaded)}")
    others = sorted(heavy - {"numba", "llvmlite", "scipy", "scipy.stats"})
    if others:
        print(f"   also loaded: {', '.join(others)}")

    # -- 2. -X importtime ----------------------------------------------------------------------
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = [p.strip() for p in line[len("import time:"):].split("|")]
        if not parts[0].isdigit():
            continue
        rows.append((int(parts[0]), int(parts[1]), parts[2]))
    own = [r for r in rows if r[2].strip().startswith("aphrodite_sla")]
    print("-X importtime (bytecode cached), the package's modules (self / cumulative us):")
    for self_us, cum_us, name in own:
        print(f"   {self_us:>7} {cum_us:>8}  {name.strip()}")
    top = sorted((r for r in rows if not r[2].strip().startswith(("numpy", "aphrodite_sla"))), reverse=True)[:5]
    print("   largest other imports by self time: " + ", ".join(f"{n.strip()} {s} us" for s, _, n in top))

    # -- 3. first evaluation with a warm numba cache ------------------------------------------
    first_run, _, _ = run_child(EVAL_CHILD.format(here=HERE, preload=False))
    warm, _, _ = run_child(EVAL_CHILD.format(here=HERE, preload=False))
    pre, _, _ = run_child(EVAL_CHILD.format(here=HERE, preload=True))
    print("first evaluate() in a fresh process, production defaults, all windows full:")
    print(f"   run 1 (may compile / populate the numba cache)   first {fmt_ns(first_run['first_ns']):>10}")
    ratio = warm["first_ns"] / warm["steady_ns"]
    print(f"   run 2 (warm numba cache)                         first {fmt_ns(warm['first_ns']):>10}   "
          f"steady-state {fmt_ns(warm['steady_ns'])}   first/steady {ratio:.0f}x   (informational)")
    if warm["scipy_after_first"] and not warm["scipy_before_first"]:
        print("   note: the first evaluate() imported scipy (it runs the regression checks at once)")
    print(f"   run 3 (libraries loaded first): import numba {fmt_ns(pre['numba_import_ns'])}, load kernels "
          f"{fmt_ns(pre['kernels_load_ns'])}, import scipy.stats {fmt_ns(pre['scipy_import_ns'])}; then first "
          f"evaluate() {fmt_ns(pre['first_ns'])}, steady {fmt_ns(pre['steady_ns'])}")


if __name__ == "__main__":
    main()
