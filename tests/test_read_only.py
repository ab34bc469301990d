"""A hardened container: the package directory read-only and no writable home. numba's on-disk
cache then has no location ("cannot cache function ... no locator available"), which used to stop
every evaluation while /health/production said healthy. Simulated by taking numba's cache
locators away (root could write anywhere, so permissions alone cannot show it here)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, sys, tempfile
    import numba.core.caching as caching
    # no locator finds a writable place: beside the package, in the home, anywhere but CACHE_DIR
    # (numba >= 0.61 reads NUMBA_CACHE_LOCATOR_CLASSES, set by the test; older ones: the class list)
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")
    impl._locator_classes = [getattr(caching, "UserProvidedCacheLocator", None) or getattr(caching, "_UserProvidedCacheLocator")]
    if os.environ.get("NO_TMP") == "1":
        tempfile.tempdir = "/proc"  # not writable, even for root
    import numpy as np
    from aphrodite_sla import ManualClock
    from aphrodite_sla.context import MonitorContext
    from aphrodite_sla.store import kernels
    clock = ManualClock(1000.0)
    ctx = MonitorContext.build(clock=clock)
    for _ in range(30):
        clock.advance(1.0)
        ctx.manager.record_batch("ttft_ms", np.full(50, 5000.0))
        ctx.manager.evaluate()
    status, payload = ctx.endpoints.health()
    print(kernels.CACHE, payload["monitor"]["evaluating"], payload["status"], ctx.snapshot().statuses["ttft_p95"].value)
""")


def run(extra_env: dict[str, str]) -> list[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "APHRODITE_SLA_"))}
    env["NUMBA_CACHE_LOCATOR_CLASSES"] = "UserProvidedCacheLocator"
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env={**env, **extra_env}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split()


def test_kernels_cache_in_a_temp_dir_when_the_package_dir_is_read_only():
    assert run({}) == ["True", "True", "critical", "5000.0"]


def test_kernels_compile_in_memory_when_nothing_is_writable():
    assert run({"NO_TMP": "1"}) == ["False", "True", "critical", "5000.0"]


def test_a_configured_cache_dir_is_used(tmp_path):
    assert run({"APHRODITE_SLA_NUMBA_CACHE_DIR": str(tmp_path)})[0] == "True"
    assert any(p.suffix in (".nbi", ".nbc") for p in tmp_path.rglob("*"))
