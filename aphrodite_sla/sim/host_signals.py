"""What a host and GPU sampler would read next to the simulated engine, once per call.

Why: the system sampler (``integrations.system``) reads psutil and NVML in a real server; next to
the simulator those readings come from the simulator's state (other processes' CPU and GPU
memory, the GPU throttle flag, process memory), with sampling noise, under the same series names,
so root-cause analysis reads the same series in both. Deployments and configuration changes are
counted as a deployment tracker would see them (one event each).
"""
from __future__ import annotations

import os

import numpy as np

from aphrodite_sla.sim.engine import EngineSimulator

CPU_COUNT = os.cpu_count() or 1
ENGINE_CPU_SHARE_PERCENT = 12.0  # the engine's own share of the host


class HostSignals:
    """``sample(sim)`` -> {series name: value} for one sampler tick."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed + 7919)
        self._deployments = 0
        self._config_changes = 0

    def sample(self, sim: EngineSimulator) -> dict[str, float]:
        rng = self._rng
        proc = max(0.0, ENGINE_CPU_SHARE_PERCENT + rng.normal(0, 1.5))
        out = {
            "engine_stalled": 1.0 if sim.stalled else 0.0,
            "gpu_throttled": 1.0 if sim.gpu_clock_ratio < 0.999 else 0.0,
            "process_cpu_percent": proc * CPU_COUNT,  # psutil's per-core percent, as the sampler records it
            "system_cpu_percent": min(100.0, max(0.0, proc + sim.host_cpu_other_percent + rng.normal(0, 2.0))),
            "gpu_memory_other_percent": max(0.0, sim.gpu_memory_other_percent + abs(rng.normal(0, 0.3))),
            "process_rss_bytes": max(0.0, sim.memory_bytes + rng.normal(0, 8 * 2**20)),
            "deployment_events": float(sim.deployments - self._deployments),
            "config_change_events": float(sim.config_changes - self._config_changes),
        }
        self._deployments, self._config_changes = sim.deployments, sim.config_changes
        return out


SERIES: tuple[tuple[str, str], ...] = (
    ("engine_stalled", ""), ("gpu_throttled", ""), ("process_cpu_percent", "%"), ("system_cpu_percent", "%"),
    ("gpu_memory_other_percent", "%"), ("process_rss_bytes", "bytes"), ("deployment_events", "events"),
    ("config_change_events", "events"),
)
