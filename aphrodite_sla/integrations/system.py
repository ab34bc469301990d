"""Host, process and GPU gauges sampled on a background thread (psutil, NVML through ``pynvml``).

Why a thread of its own: psutil and NVML calls are blocking system calls (NVML ones take up to
milliseconds each); the engine's event loop must never wait for them.

Series recorded (one sample per ``interval_s``; windows of 10 min at 1/interval Hz):

* host and process: ``system_cpu_percent``, ``system_memory_percent``, ``disk_usage_percent`` (of
  ``disk_path``), ``process_rss_bytes``, ``process_cpu_percent`` (can exceed 100 on several cores),
  ``process_open_files`` (open file descriptors incl. sockets: what runs out at ``ulimit -n``);
* GPUs, aggregated over the GPUs sampled: ``gpu_utilization_percent`` (mean; the default SLA reads
  it), ``gpu_memory_used_percent`` (max: the fullest GPU is the one that OOMs),
  ``gpu_temperature_celsius`` (max), ``gpu_power_watts`` (sum), ``gpu_throttled`` (1 if any GPU is
  slowed by power cap, thermal or hardware slowdown, else 0), ``gpu_throttle_reasons`` (OR of the
  NVML bitmasks);
* per GPU (``per_gpu=True``), by NVML index i: ``gpu{i}_utilization_percent``,
  ``gpu{i}_memory_used_percent``, ``gpu{i}_temperature_celsius``, ``gpu{i}_power_watts``,
  ``gpu{i}_throttle_reasons``, ``gpu{i}_throttled``.

GPUs sampled: those of ``CUDA_VISIBLE_DEVICES`` (indices or ``GPU-`` UUIDs) when set, else all.
Where NVML is missing or fails to start, GPU series are simply absent (logged once at INFO).
"""
from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import psutil

from aphrodite_sla.clock import system_clock
from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.periodic import PeriodicThread
from aphrodite_sla.self_metrics import Component

logger = logging.getLogger(__name__)

WINDOW_S = 600.0
ERROR_LOG_INTERVAL_S = 60.0

# NVML clock-event (throttle) reason bits that mean "slowed down", not "idle" or "app clocks".
_SW_POWER_CAP = 0x4
_HW_SLOWDOWN = 0x8
_SW_THERMAL = 0x20
_HW_THERMAL = 0x40
_HW_POWER_BRAKE = 0x80
SLOWDOWN_MASK = _SW_POWER_CAP | _HW_SLOWDOWN | _SW_THERMAL | _HW_THERMAL | _HW_POWER_BRAKE

_PERCENT_SERIES = (
    "system_cpu_percent", "system_memory_percent", "disk_usage_percent",
    "gpu_utilization_percent", "gpu_memory_used_percent",
)


# -- data ------------------------------------------------------------------------------------------
class NVMLState(str, Enum):
    """NVML is tried once, lazily, on the sampling thread."""

    UNINITIALIZED = "uninitialized"
    AVAILABLE = "available"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class GPUSample:
    """One GPU at one sample; a field is None where NVML did not report it."""

    index: int
    utilization_percent: float | None = None
    memory_used_percent: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    throttle_reasons: int | None = None
    throttled: bool | None = None


@dataclass(frozen=True)
class SystemSnapshot:
    """Everything one sample saw (for RCA and health endpoints); None where unavailable."""

    timestamp: float
    system_cpu_percent: float | None = None
    system_memory_percent: float | None = None
    disk_usage_percent: float | None = None
    process_rss_bytes: float | None = None
    process_cpu_percent: float | None = None
    process_open_files: float | None = None
    gpus: tuple[GPUSample, ...] = ()
    gpu_utilization_percent: float | None = None
    gpu_memory_used_percent: float | None = None
    gpu_temperature_celsius: float | None = None
    gpu_power_watts: float | None = None
    gpu_throttled: bool | None = None
    gpu_throttle_reasons: int | None = None
    errors: int = 0


@dataclass(frozen=True)
class SamplerStats:
    """How the sampler itself is doing."""

    samples: int
    errors: int
    last_error: str | None
    last_duration_s: float
    nvml: NVMLState
    running: bool


# -- behaviour -------------------------------------------------------------------------------------
class SystemSampler:
    """Samples every ``interval_s`` on a daemon thread; ``sample_once()`` does one sample now."""

    def __init__(
        self,
        manager: Any = None,
        *,
        interval_s: float = 5.0,
        disk_path: str | None = None,
        clock: Callable[[], float] | None = None,
        per_gpu: bool = True,
        gpu_indices: Sequence[int | str] | None = None,
    ) -> None:
        if not (isinstance(interval_s, (int, float)) and math.isfinite(interval_s) and interval_s > 0):
            raise ValueError(f"SystemSampler.interval_s: must be a finite number > 0, got {interval_s!r}")
        self.manager = manager
        self.interval_s = float(interval_s)
        self.disk_path = disk_path if disk_path is not None else os.getcwd()
        self.clock: Callable[[], float] = clock or getattr(manager, "clock", None) or system_clock
        self.per_gpu = per_gpu
        self._gpu_selection = list(gpu_indices) if gpu_indices is not None else _visible_devices()
        self.latest: SystemSnapshot | None = None

        self._process = psutil.Process()
        self._last_cpu = _cpu_busy_total()  # system CPU % from our own deltas (psutil's is shared)
        _safe(self._process.cpu_percent)  # primes the per-Process delta
        self._nvml: Any = None
        self._nvml_state = NVMLState.UNINITIALIZED
        self._gpus: list[tuple[int, Any]] = []
        self._unsupported: set[tuple[int, str]] = set()
        self._registered: set[str] = set()
        self._lock = threading.Lock()  # one sample at a time (thread and test callers)
        reset_in_child(self)
        self._worker = PeriodicThread("aphrodite-sla-system-sampler", self._sample_safely, self.interval_s)
        self._samples = 0
        self._errors = 0
        self._last_error: str | None = None
        self._last_error_log = -math.inf
        self._last_duration = 0.0

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._worker.is_running

    def start(self) -> None:
        """Start sampling (idempotent); the first sample is taken at once."""
        self._worker.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop and wait up to ``timeout`` s (idempotent); True once the thread has ended."""
        if not self._worker.stop(timeout):
            return False
        self._shutdown_nvml()
        return True

    def _sample_safely(self) -> None:
        try:
            self.sample_once()
        except Exception as exc:  # sample_once catches per reading; this is the last net
            self._error("sample", exc)

    # -- sampling ----------------------------------------------------------------------------
    def sample_once(self) -> SystemSnapshot:
        """Take one sample, record it into the manager and return it (also kept as ``latest``)."""
        with self._lock:
            started = time.perf_counter()
            errors_before = self._errors
            now = self.clock()
            host = self._sample_host()
            gpus = self._sample_gpus()
            snap = _snapshot(now, host, gpus, self._errors - errors_before)
            self._record(snap)
            self.latest = snap
            self._samples += 1
            self._last_duration = time.perf_counter() - started
            return snap

    def _sample_host(self) -> dict[str, float | None]:
        proc = self._process
        out: dict[str, float | None] = {}
        out["system_cpu_percent"] = self._reading("system_cpu_percent", self._system_cpu_percent)
        out["system_memory_percent"] = self._reading("system_memory_percent", lambda: psutil.virtual_memory().percent)
        out["disk_usage_percent"] = self._reading("disk_usage_percent", lambda: psutil.disk_usage(self.disk_path).percent)
        out["process_rss_bytes"] = self._reading("process_rss_bytes", lambda: proc.memory_info().rss)
        out["process_cpu_percent"] = self._reading("process_cpu_percent", proc.cpu_percent)
        out["process_open_files"] = self._reading("process_open_files", lambda: _open_files(proc))
        return out

    def _system_cpu_percent(self) -> float:
        busy, total = _cpu_busy_total()
        last_busy, last_total = self._last_cpu
        self._last_cpu = (busy, total)
        d_total = total - last_total
        if d_total <= 0:
            return 0.0
        return min(100.0, max(0.0, 100.0 * (busy - last_busy) / d_total))

    def _reading(self, name: str, read: Callable[[], Any]) -> float | None:
        try:
            return float(read())
        except Exception as exc:
            self._error(name, exc)
            return None

    def _sample_gpus(self) -> list[GPUSample]:
        if self._nvml_state is NVMLState.UNINITIALIZED:
            self._init_nvml()
        if self._nvml_state is not NVMLState.AVAILABLE:
            return []
        nvml = self._nvml
        reasons_fn = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        temp_sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
        samples = []
        for index, handle in self._gpus:
            util = self._gpu_reading(index, handle, "utilization", lambda h: nvml.nvmlDeviceGetUtilizationRates(h).gpu)
            mem = self._gpu_reading(index, handle, "memory", lambda h: _memory_percent(nvml.nvmlDeviceGetMemoryInfo(h)))
            temp = self._gpu_reading(index, handle, "temperature", lambda h: nvml.nvmlDeviceGetTemperature(h, temp_sensor))
            power = self._gpu_reading(index, handle, "power", lambda h: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0)
            reasons = None
            if reasons_fn is not None:
                raw = self._gpu_reading(index, handle, "throttle_reasons", reasons_fn)
                reasons = int(raw) if raw is not None else None
            throttled = None if reasons is None else bool(reasons & SLOWDOWN_MASK)
            samples.append(GPUSample(index, util, mem, temp, power, reasons, throttled))
        return samples

    def _gpu_reading(self, index: int, handle: Any, field: str, read: Callable[[Any], Any]) -> float | None:
        key = (index, field)
        if key in self._unsupported:
            return None
        try:
            value = float(read(handle))
        except Exception as exc:
            not_supported = getattr(self._nvml, "NVML_ERROR_NOT_SUPPORTED", 3)
            if getattr(exc, "value", None) == not_supported:
                self._unsupported.add(key)  # this GPU never reports it: stop asking, not an error
                logger.info("aphrodite-sla: GPU %d does not report %s", index, field)
            else:
                self._error(f"gpu{index}.{field}", exc)
            return None
        return value if math.isfinite(value) else None

    def _init_nvml(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            try:
                count = int(pynvml.nvmlDeviceGetCount())
                gpus = []
                for index in self._selected_indices(pynvml, count):
                    gpus.append((index, pynvml.nvmlDeviceGetHandleByIndex(index)))
            except Exception:
                _safe(pynvml.nvmlShutdown)
                raise
        except Exception as exc:
            self._nvml_state = NVMLState.UNAVAILABLE
            logger.info("NVML unavailable: %s; GPU metrics disabled", _describe(exc))
            return
        self._nvml = pynvml
        self._gpus = gpus
        self._nvml_state = NVMLState.AVAILABLE
        logger.info("aphrodite-sla: NVML available, sampling GPUs %s", [i for i, _ in gpus])

    def _selected_indices(self, nvml: Any, count: int) -> list[int]:
        selection = self._gpu_selection
        if not selection:
            return list(range(count))
        indices: list[int] = []
        uuids: dict[str, int] | None = None
        for item in selection:
            if isinstance(item, int) or (isinstance(item, str) and item.isdigit()):
                i = int(item)
                if 0 <= i < count:
                    indices.append(i)
                continue
            if uuids is None:
                uuids = {}
                for i in range(count):
                    uuid = _safe(functools.partial(_gpu_uuid, nvml, i))
                    if uuid is not None:
                        uuids[uuid.decode() if isinstance(uuid, bytes) else str(uuid)] = i
            match = [i for u, i in uuids.items() if u.startswith(str(item))]
            if len(match) == 1:
                indices.append(match[0])
        return indices if indices else list(range(count))

    def _shutdown_nvml(self) -> None:
        with self._lock:
            if self._nvml_state is NVMLState.AVAILABLE:
                _safe(self._nvml.nvmlShutdown)
                self._nvml = None
                self._gpus = []
                self._nvml_state = NVMLState.UNINITIALIZED  # a later start() initialises it again

    # -- recording ---------------------------------------------------------------------------
    def _record(self, snap: SystemSnapshot) -> None:
        manager = self.manager
        if manager is None:
            return
        for name, value in snapshot_series(snap, self.per_gpu).items():
            if name not in self._registered:
                try:
                    manager.register_metric(
                        name, WINDOW_S, 1.0 / self.interval_s,
                        max_value=100.0 if name in _PERCENT_SERIES else math.inf, unit=_unit(name),
                    )
                except Exception as exc:
                    self._error(f"register {name}", exc)
                    continue
                self._registered.add(name)
            try:
                manager.record_measurement(name, value, snap.timestamp)
            except Exception as exc:
                self._error(f"record {name}", exc)

    def _error(self, where: str, exc: BaseException) -> None:
        """Count every failure (here and in the monitor's own error counters); log at most once
        per ``ERROR_LOG_INTERVAL_S``."""
        self._errors += 1
        self._last_error = f"{where}: {_describe(exc)}"
        self_metrics = getattr(self.manager, "self_metrics", None)
        if self_metrics is not None:
            self_metrics.error(Component.SAMPLER, self._last_error)  # rate-limits its own log
            return
        now = self.clock()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL_S:
            self._last_error_log = now
            logger.warning("aphrodite-sla system sampler: %s (%d errors so far)", self._last_error, self._errors)

    @property
    def stats(self) -> SamplerStats:
        return SamplerStats(
            self._samples, self._errors, self._last_error, self._last_duration, self._nvml_state, self.is_running
        )

    @property
    def nvml_state(self) -> NVMLState:
        return self._nvml_state


def snapshot_series(snap: SystemSnapshot, per_gpu: bool = True) -> dict[str, float]:
    """The series name → value pairs a snapshot records (absent readings are left out)."""
    out: dict[str, float] = {}
    for name in (
        "system_cpu_percent", "system_memory_percent", "disk_usage_percent", "process_rss_bytes",
        "process_cpu_percent", "process_open_files", "gpu_utilization_percent", "gpu_memory_used_percent",
        "gpu_temperature_celsius", "gpu_power_watts",
    ):
        value = getattr(snap, name)
        if value is not None:
            out[name] = float(value)
    if snap.gpu_throttled is not None:
        out["gpu_throttled"] = 1.0 if snap.gpu_throttled else 0.0
    if snap.gpu_throttle_reasons is not None:
        out["gpu_throttle_reasons"] = float(snap.gpu_throttle_reasons)
    if per_gpu:
        for g in snap.gpus:
            for suffix, value in (
                ("utilization_percent", g.utilization_percent),
                ("memory_used_percent", g.memory_used_percent),
                ("temperature_celsius", g.temperature_c),
                ("power_watts", g.power_w),
                ("throttle_reasons", g.throttle_reasons),
                ("throttled", None if g.throttled is None else float(g.throttled)),
            ):
                if value is not None:
                    out[f"gpu{g.index}_{suffix}"] = float(value)
    return out


def _snapshot(now: float, host: dict[str, float | None], gpus: list[GPUSample], errors: int) -> SystemSnapshot:
    def values(attr: str) -> list[float]:
        return [v for v in (getattr(g, attr) for g in gpus) if v is not None]

    util, mem, temp, power = values("utilization_percent"), values("memory_used_percent"), values("temperature_c"), values("power_w")
    reasons = [g.throttle_reasons for g in gpus if g.throttle_reasons is not None]
    combined = 0
    for r in reasons:
        combined |= r
    return SystemSnapshot(
        timestamp=now,
        gpus=tuple(gpus),
        gpu_utilization_percent=sum(util) / len(util) if util else None,
        gpu_memory_used_percent=max(mem) if mem else None,
        gpu_temperature_celsius=max(temp) if temp else None,
        gpu_power_watts=sum(power) if power else None,
        gpu_throttled=bool(combined & SLOWDOWN_MASK) if reasons else None,
        gpu_throttle_reasons=combined if reasons else None,
        errors=errors,
        **host,
    )


def _cpu_busy_total() -> tuple[float, float]:
    """(busy, total) CPU seconds since boot, as psutil counts them (guest time is inside user)."""
    t = psutil.cpu_times()
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return total - idle, total


def _open_files(proc: psutil.Process) -> int:
    if hasattr(proc, "num_fds"):
        return proc.num_fds()
    return proc.num_handles()  # Windows


def _memory_percent(info: Any) -> float:
    return 100.0 * float(info.used) / float(info.total) if info.total else math.nan


def _visible_devices() -> list[int | str]:
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not raw or not raw.strip():
        return []
    return [p.strip() for p in raw.split(",") if p.strip()]


def _unit(name: str) -> str:
    if name.endswith("_percent"):
        return "%"
    if name.endswith("_bytes"):
        return "bytes"
    if name.endswith("_celsius"):
        return "celsius"
    if name.endswith("_watts"):
        return "W"
    return ""


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:
        return None


def _gpu_uuid(nvml: Any, index: int) -> Any:
    return nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(index))
