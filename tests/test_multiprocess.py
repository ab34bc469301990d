"""Under PROMETHEUS_MULTIPROC_DIR (vLLM with several API servers) our families reach the engine's
/metrics, which is a fresh registry with a MultiProcessCollector."""
import subprocess
import sys
import textwrap


def test_families_reach_a_multiprocess_registry(tmp_path):
    script = textwrap.dedent(
        """
        import math
        import numpy as np
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess
        from aphrodite_sla.clock import ManualClock
        from aphrodite_sla.config import SLAConfig
        from aphrodite_sla.runtime import SLARuntime

        clock = ManualClock(1_700_000_000.0)
        rt = SLARuntime(SLAConfig(system_sampler=False), clock=clock)
        rt.model_name = "m"
        rt._register_collector()
        for i in range(400):
            clock.advance(1.0)
            rt.manager.record_batch("ttft_ms", np.full(20, 9000.0))  # bound 2500: critical
            if i % 5 == 0:
                rt.manager.evaluate()
        rt.manager.evaluate()
        registry = CollectorRegistry()          # what vLLM's /metrics builds in this mode
        multiprocess.MultiProcessCollector(registry)
        print(generate_latest(registry).decode())
        """
    )
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    body = proc.stdout
    lines = [line for line in body.splitlines() if line.startswith("sla_violation_active{") and 'sla="ttft_p95"' in line]
    assert any('severity="critical"' in line and line.endswith(" 1.0") for line in lines), lines
    assert "pid=" in lines[0]
    assert "sla_compliance_rate{" in body and "sla_window_quantile{" in body and "sla_events_total{" in body


def test_a_process_that_exits_removes_its_series(tmp_path):
    """Dead processes' series remained on the engine's /metrics."""
    script = textwrap.dedent(
        """
        import numpy as np
        from aphrodite_sla.clock import ManualClock
        from aphrodite_sla.config import SLAConfig
        from aphrodite_sla.runtime import SLARuntime

        clock = ManualClock(1_700_000_000.0)
        rt = SLARuntime(SLAConfig(system_sampler=False), clock=clock)
        rt._register_collector()
        clock.advance(1.0)
        rt.manager.record_batch("ttft_ms", np.full(20, 900.0))
        rt.manager.evaluate()
        import os, glob
        print(len(glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], f"gauge_liveall_{os.getpid()}.db"))))
        """
    )
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"  # while it ran
    assert list(tmp_path.glob("gauge_liveall_*.db")) == []  # gone with it
