"""What the host, the GPU and the engine look like at analysis time (attached to every report).

Why at analysis time: an operator reading an RCA hours later needs the state it was made in; the
top processes name a noisy neighbour the metrics only hint at. Every probe is optional and fails
soft (a probe that raises becomes an ``error`` entry)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psutil

TOP_N = 5


def top_processes(n: int = TOP_N) -> dict[str, list[dict[str, Any]]]:
    rows = []
    for p in psutil.process_iter(["pid", "name", "cpu_percent", "memory_percent"]):
        info = p.info
        rows.append({"pid": info["pid"], "name": info.get("name") or "", "cpu_percent": float(info.get("cpu_percent") or 0.0),
                     "memory_percent": round(float(info.get("memory_percent") or 0.0), 2)})
    return {"by_cpu": sorted(rows, key=lambda r: -r["cpu_percent"])[:n],
            "by_memory": sorted(rows, key=lambda r: -r["memory_percent"])[:n]}


def gpu_state() -> list[dict[str, Any]]:
    try:
        import pynvml  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:
        return []
    out = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            out.append({"index": i, "utilization_percent": pynvml.nvmlDeviceGetUtilizationRates(h).gpu,
                        "memory_used_percent": round(100.0 * mem.used / max(mem.total, 1), 1),
                        "sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
                        "throttle_reasons": int(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(h))})
    finally:
        pynvml.nvmlShutdown()
    return out


def collect(engine_state: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, probe in (("processes", top_processes), ("gpus", gpu_state), ("engine", engine_state)):
        if probe is None:
            continue
        try:
            out[key] = probe()
        except Exception as exc:  # a probe's failure is a fact for the report, not an error of the analysis
            out[key] = {"error": f"{type(exc).__name__}: {exc}"}
    return out
