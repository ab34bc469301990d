"""SystemSampler: host/process series into a real SLAManager, NVML missing or failing, a fake NVML
for the GPU path (aggregates, per-GPU series, throttle reasons), rate-limited error logs, thread."""
from __future__ import annotations

import logging
import sys
import threading
import time
import types
from types import SimpleNamespace as NS

import pytest

from aphrodite_sla import ManualClock, SLAManager
from aphrodite_sla.integrations.system import (
    SLOWDOWN_MASK,
    NVMLState,
    SystemSampler,
    SystemSnapshot,
    snapshot_series,
)
from aphrodite_sla.self_metrics import Component

HOST_SERIES = (
    "system_cpu_percent", "system_memory_percent", "disk_usage_percent", "process_rss_bytes",
    "process_cpu_percent", "process_open_files",
)
GPU_IDLE, SW_POWER_CAP, SW_THERMAL = 0x1, 0x4, 0x20
GPU_IS_LOST, NOT_SUPPORTED = 15, 3


class FakeNVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


class FakeNVML:
    """Just the pynvml calls the sampler makes; ``fail[(gpu, call)]`` raises that NVML error."""

    def __init__(self, gpus: list[dict]) -> None:
        self.gpus = gpus
        self.fail: dict[tuple[int, str], int] = {}
        self.calls: dict[str, int] = {}
        self.init_error: int | None = None
        self.inits = 0
        self.shutdowns = 0

    def module(self) -> types.ModuleType:
        m = types.ModuleType("pynvml")
        m.NVMLError = FakeNVMLError
        m.NVML_ERROR_NOT_SUPPORTED = NOT_SUPPORTED
        m.NVML_TEMPERATURE_GPU = 0

        def call(name, fn):
            def wrapper(handle, *args):
                self.calls[name] = self.calls.get(name, 0) + 1
                err = self.fail.get((handle, name))
                if err is not None:
                    raise FakeNVMLError(err)
                return fn(self.gpus[handle], *args)
            return wrapper

        def init():
            if self.init_error is not None:
                raise FakeNVMLError(self.init_error)
            self.inits += 1

        def shutdown():
            self.shutdowns += 1

        m.nvmlInit = init
        m.nvmlShutdown = shutdown
        m.nvmlDeviceGetCount = lambda: len(self.gpus)
        m.nvmlDeviceGetHandleByIndex = lambda i: i
        m.nvmlDeviceGetUUID = lambda h: self.gpus[h]["uuid"]
        m.nvmlDeviceGetUtilizationRates = call("util", lambda g: NS(gpu=g["util"], memory=0))
        m.nvmlDeviceGetMemoryInfo = call("mem", lambda g: NS(used=g["used"], total=g["total"], free=g["total"] - g["used"]))
        m.nvmlDeviceGetTemperature = call("temp", lambda g, sensor: g["temp"])
        m.nvmlDeviceGetPowerUsage = call("power", lambda g: g["power_mw"])
        m.nvmlDeviceGetCurrentClocksEventReasons = call("reasons", lambda g: g["reasons"])
        return m


def two_gpus() -> FakeNVML:
    return FakeNVML([
        dict(uuid="GPU-aaaa-0", util=50, used=40, total=80, temp=60, power_mw=300_000, reasons=GPU_IDLE),
        dict(uuid="GPU-bbbb-1", util=70, used=60, total=80, temp=85, power_mw=350_000, reasons=SW_THERMAL),
    ])


def values(manager: SLAManager, name: str) -> list[float]:
    buf = manager.store.buffer(name)
    return [] if buf is None else buf.window(0.0, 1e12)[1].tolist()


@pytest.fixture
def manager() -> SLAManager:
    return SLAManager(clock=ManualClock())


@pytest.fixture
def no_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.fixture
def fake_nvml(monkeypatch):
    def install(fake: FakeNVML) -> FakeNVML:
        monkeypatch.setitem(sys.modules, "pynvml", fake.module())
        return fake
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return install


# -- host series, NVML missing --------------------------------------------------------------------
def test_sample_once_records_host_series_and_no_gpu_when_nvml_missing(manager, no_nvml, caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="aphrodite_sla.integrations.system")
    sampler = SystemSampler(manager, interval_s=5.0, disk_path=str(tmp_path))
    snap = sampler.sample_once()
    sampler.sample_once()
    assert isinstance(snap, SystemSnapshot) and sampler.latest is not None
    assert snap.timestamp == manager.clock()
    for name in HOST_SERIES:
        got = values(manager, name)
        assert len(got) == 2, name
        assert got[-1] == getattr(sampler.latest, name)
    assert 0.0 <= snap.system_cpu_percent <= 100.0
    assert 0.0 < snap.system_memory_percent <= 100.0
    assert snap.process_rss_bytes > 1_000_000 and snap.process_open_files >= 3
    assert snap.gpus == () and snap.gpu_utilization_percent is None
    assert not [n for n in manager.store.names() if n.startswith("gpu")]
    assert sampler.nvml_state is NVMLState.UNAVAILABLE and sampler.stats.errors == 0
    notes = [r for r in caplog.records if r.getMessage().startswith("NVML unavailable:")]
    assert len(notes) == 1 and notes[0].levelno == logging.INFO
    assert "GPU metrics disabled" in notes[0].getMessage()
    spec = manager.store.spec("system_cpu_percent")
    assert spec.window_seconds == 600.0 and spec.sample_rate_hz == pytest.approx(0.2)


def test_real_pynvml_never_raises(manager):
    """This machine has no GPU: NVML fails to load. On a GPU machine it samples. Never raises."""
    sampler = SystemSampler(manager)
    snap = sampler.sample_once()
    assert sampler.nvml_state in (NVMLState.AVAILABLE, NVMLState.UNAVAILABLE)
    assert (snap.gpu_utilization_percent is not None) == (sampler.nvml_state is NVMLState.AVAILABLE and bool(snap.gpus))
    sampler.stop()


def test_nvml_init_error_disables_gpu_metrics(manager, fake_nvml, caplog):
    caplog.set_level(logging.INFO, logger="aphrodite_sla.integrations.system")
    fake = two_gpus()
    fake.init_error = 9  # NVML_ERROR_DRIVER_NOT_LOADED
    fake_nvml(fake)
    sampler = SystemSampler(manager)
    snap = sampler.sample_once()
    sampler.sample_once()
    assert sampler.nvml_state is NVMLState.UNAVAILABLE and snap.gpus == ()
    assert len([r for r in caplog.records if "NVML unavailable: FakeNVMLError" in r.getMessage()]) == 1
    assert values(manager, "system_memory_percent")


# -- GPU path ------------------------------------------------------------------------------------
def test_gpu_series_aggregates_and_throttle_reasons(manager, fake_nvml):
    fake = fake_nvml(two_gpus())
    sampler = SystemSampler(manager)
    snap = sampler.sample_once()
    assert sampler.nvml_state is NVMLState.AVAILABLE
    g0, g1 = snap.gpus
    assert (g0.utilization_percent, g0.memory_used_percent, g0.temperature_c, g0.power_w) == (50, 50, 60, 300)
    assert g0.throttle_reasons == GPU_IDLE and g0.throttled is False  # idle is not a slowdown
    assert g1.throttle_reasons == SW_THERMAL and g1.throttled is True
    assert snap.gpu_utilization_percent == 60.0  # mean
    assert snap.gpu_memory_used_percent == 75.0  # max
    assert snap.gpu_temperature_celsius == 85.0  # max
    assert snap.gpu_power_watts == 650.0  # sum
    assert snap.gpu_throttled is True and snap.gpu_throttle_reasons == GPU_IDLE | SW_THERMAL
    expected = {
        "gpu_utilization_percent": 60.0, "gpu_memory_used_percent": 75.0, "gpu_temperature_celsius": 85.0,
        "gpu_power_watts": 650.0, "gpu_throttled": 1.0, "gpu_throttle_reasons": float(GPU_IDLE | SW_THERMAL),
        "gpu0_utilization_percent": 50.0, "gpu1_utilization_percent": 70.0, "gpu0_throttled": 0.0,
        "gpu1_throttled": 1.0, "gpu1_throttle_reasons": float(SW_THERMAL), "gpu1_power_watts": 350.0,
        "gpu0_memory_used_percent": 50.0, "gpu1_temperature_celsius": 85.0,
    }
    for name, value in expected.items():
        assert values(manager, name) == [value], name
    # The default SLA's series is the same one the sampler writes.
    assert "gpu_utilization_percent" in manager.store.names()
    sampler.stop()
    assert fake.shutdowns == 1


def test_power_cap_counts_as_throttled_and_aggregate_only(manager, fake_nvml):
    fake = two_gpus()
    fake.gpus[0]["reasons"] = SW_POWER_CAP
    fake.gpus[1]["reasons"] = 0
    fake_nvml(fake)
    sampler = SystemSampler(manager, per_gpu=False)
    snap = sampler.sample_once()
    assert snap.gpu_throttled is True and SW_POWER_CAP & SLOWDOWN_MASK
    assert values(manager, "gpu_throttled") == [1.0]
    assert not [n for n in manager.store.names() if n.startswith("gpu0") or n.startswith("gpu1")]


def test_nvml_error_midway_is_counted_and_logged_once_a_minute(manager, fake_nvml, caplog):
    caplog.set_level(logging.WARNING, logger="aphrodite_sla")
    manager.self_metrics.log_clock = manager.clock  # the log's pace on the test's clock
    fake = fake_nvml(two_gpus())
    sampler = SystemSampler(manager)
    sampler.sample_once()
    assert sampler.stats.errors == 0
    for call in ("util", "mem", "temp", "power", "reasons"):
        fake.fail[(1, call)] = GPU_IS_LOST  # GPU 1 falls off the bus
    manager.clock.advance(5)
    snap = sampler.sample_once()
    assert snap.errors == 5 and sampler.stats.errors == 5
    assert snap.gpus[1].utilization_percent is None and snap.gpus[0].utilization_percent == 50
    assert snap.gpu_utilization_percent == 50.0  # mean over the GPUs that answered
    assert values(manager, "gpu_utilization_percent") == [60.0, 50.0]
    assert values(manager, "gpu1_utilization_percent") == [70.0]
    assert values(manager, "system_memory_percent")[-1] == snap.system_memory_percent  # host still sampled
    assert "gpu1" in sampler.stats.last_error
    manager.clock.advance(30)
    sampler.sample_once()
    assert sampler.stats.errors == 10
    logs = [r for r in caplog.records if "system_sampler failed" in r.getMessage()]
    assert len(logs) == 1  # 10 errors within a minute: one log line
    assert manager.self_metrics.errors_of(Component.SAMPLER) == 10  # exported as sla_monitor_errors_total
    manager.clock.advance(31)
    sampler.sample_once()
    logs = [r for r in caplog.records if "system_sampler failed" in r.getMessage()]
    assert len(logs) == 2 and "(9 more since the last report)" in logs[1].getMessage()
    fake.fail.clear()  # GPU back: recovered without a restart
    snap = sampler.sample_once()
    assert snap.errors == 0 and snap.gpu_utilization_percent == 60.0


def test_not_supported_field_is_skipped_not_an_error(manager, fake_nvml):
    fake = fake_nvml(two_gpus())
    fake.fail[(0, "power")] = NOT_SUPPORTED
    sampler = SystemSampler(manager)
    snap = sampler.sample_once()
    sampler.sample_once()
    assert snap.gpus[0].power_w is None and snap.gpu_power_watts == 350.0
    assert sampler.stats.errors == 0
    assert fake.calls["power"] == 3  # GPU 0 asked once, GPU 1 twice
    assert values(manager, "gpu0_power_watts") == []


@pytest.mark.parametrize("visible", ["1", "GPU-bbbb"])
def test_cuda_visible_devices_selects_gpus(manager, fake_nvml, monkeypatch, visible):
    fake_nvml(two_gpus())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    snap = SystemSampler(manager).sample_once()
    assert [g.index for g in snap.gpus] == [1]
    assert snap.gpu_utilization_percent == 70.0
    assert values(manager, "gpu1_utilization_percent") == [70.0]
    assert values(manager, "gpu0_utilization_percent") == []


def test_host_reading_failure_is_counted(manager, no_nvml, monkeypatch):
    import psutil

    def broken():
        raise OSError("no /proc/meminfo")

    monkeypatch.setattr(psutil, "virtual_memory", broken)
    sampler = SystemSampler(manager)
    snap = sampler.sample_once()
    assert snap.system_memory_percent is None and snap.errors == 1
    assert values(manager, "system_memory_percent") == []
    assert values(manager, "process_rss_bytes")
    assert "system_memory_percent" in sampler.stats.last_error


def test_failing_manager_is_counted_not_raised(no_nvml):
    class Broken:
        clock = staticmethod(ManualClock())

        def register_metric(self, *a, **k):
            raise RuntimeError("refused")

        def record_measurement(self, *a, **k):
            raise AssertionError("never reached: registration failed")

    sampler = SystemSampler(Broken())
    sampler.sample_once()
    assert sampler.stats.errors == len(HOST_SERIES)


def test_snapshot_series_leaves_out_missing_readings():
    snap = SystemSnapshot(timestamp=1.0, system_cpu_percent=12.5)
    assert snapshot_series(snap) == {"system_cpu_percent": 12.5}


def test_interval_validated():
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            SystemSampler(interval_s=bad)


# -- thread ----------------------------------------------------------------------------------------
def test_start_stop_clean(manager, fake_nvml):
    fake = fake_nvml(two_gpus())
    sampler = SystemSampler(manager, interval_s=60.0)
    sampler.start()
    sampler.start()  # idempotent
    assert [t.name for t in threading.enumerate()].count("aphrodite-sla-system-sampler") == 1 and sampler.is_running
    deadline = time.monotonic() + 10.0
    while sampler.stats.samples < 1:  # the first sample is taken at once; bounded wait
        assert time.monotonic() < deadline
        time.sleep(0.005)
    started = time.monotonic()
    assert sampler.stop(timeout=5.0) is True
    assert time.monotonic() - started < 2.0  # stop wakes the 60 s wait at once
    assert not sampler.is_running and sampler.stop() is True
    assert not [t for t in threading.enumerate() if t.name == "aphrodite-sla-system-sampler"]
    assert fake.inits == 1 and fake.shutdowns == 1
    assert values(manager, "gpu_utilization_percent") == [60.0]
