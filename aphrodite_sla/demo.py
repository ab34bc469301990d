"""The foundation demo: a synthetic engine stream with injected faults, watched by the production
SLA manager on an accelerated clock. Prints when each fault was injected and when it was detected
(early anomaly warning and sustained SLA violation), then each SLA's compliance."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from aphrodite_sla.clock import ManualClock
from aphrodite_sla.events import MonitorEvent
from aphrodite_sla.sim.attribution import (
    ANOMALY,
    RESOLVED,
    VIOLATION,
    Attribution,
    FaultReport,
    InjectedFault,
    Signal,
    attribute,
    signal_of,
)
from aphrodite_sla.sla.defaults import REQUEST_LATENCY_MS, REQUEST_OUTCOME
from aphrodite_sla.sla.manager import create_production_sla_manager

START = 1_700_000_000.0


def synthetic_fault(name: str, sla: str, start_s: float, end_s: float, also_affects: tuple[str, ...] = ()) -> InjectedFault:
    """A fault of the synthetic stream: ``sla``'s series degrades from ``start_s`` to ``end_s``."""
    return InjectedFault(name, name, start_s, end_s, (sla, *also_affects))


@dataclass
class DemoResult:
    faults: list[FaultReport]
    false_alarms: list[Signal] = field(default_factory=list)  # violations no fault explains
    false_warnings: list[Signal] = field(default_factory=list)  # anomaly warnings no fault explains
    compliance: dict[str, float | None] = field(default_factory=dict)
    evaluations: int = 0
    mean_evaluation_ms: float = 0.0


def default_faults() -> list[InjectedFault]:
    return [
        synthetic_fault("latency spike (p95 ~2.3x)", "request_latency_p95", 600.0, 1200.0, ("request_latency_p99",)),
        synthetic_fault("throughput drop (to 45%)", "tokens_per_second", 1500.0, 2100.0),
    ]


def run_demo(
    duration_s: float = 2700.0,
    *,
    seed: int = 7,
    step_s: float = 0.5,
    faults: list[InjectedFault] | None = None,
    out: Callable[[str], None] = print,
) -> DemoResult:
    """Run ``duration_s`` of simulated engine time: ~40 requests/s, per-step throughput, KV-cache
    and GPU gauges, with ``faults`` injected. Evaluates every 5 s like the background evaluator."""
    faults = default_faults() if faults is None else faults
    clock = ManualClock(START)
    mgr = create_production_sla_manager(clock=clock, evaluation_interval_s=5.0)
    rng = np.random.default_rng(seed)
    signals: list[Signal] = []

    def elapsed() -> float:
        return clock() - START

    def on_event(event: MonitorEvent) -> None:
        sig = signal_of(event, START)
        if sig is None:
            return
        signals.append(sig)
        window_s = mgr.thresholds[sig.sla].window_seconds if sig.sla in mgr.thresholds else 60.0
        expected = any(f.explains(sig, window_s) for f in faults)
        label = {VIOLATION: "VIOLATION", ANOMALY: "ANOMALY", RESOLVED: "RESOLVED"}.get(sig.kind, sig.kind.upper())
        if not expected and sig.kind in (VIOLATION, ANOMALY):
            label += " (no fault)"
        out(f"[{sig.at_s:7.0f}s] {label:<10} {sig.sla}: {sig.detail}")

    mgr.subscribe(on_event, name="demo")

    def active(sla: str) -> bool:
        return any(f.slas[0] == sla and f.start_s <= elapsed() < (f.end_s or math.inf) for f in faults)

    for f in faults:
        out(f"scheduled fault: {f.name:<28} -> {f.slas[0]:<22} at {f.start_s:6.0f}s..{f.end_s:.0f}s")
    requests_per_step = 40.0 * step_s
    next_eval = 5.0
    total_eval_s = 0.0
    announced: set[str] = set()
    while elapsed() < duration_s:
        clock.advance(step_s)
        now_s = elapsed()
        for f in faults:
            if f.name not in announced and now_s >= f.start_s:
                announced.add(f.name)
                out(f"[{now_s:7.0f}s] INJECTED   {f.name}")
        n = int(rng.poisson(requests_per_step))
        median_ms = 95.0 * (2.3 if active("request_latency_p95") else 1.0)
        mgr.record_batch(REQUEST_LATENCY_MS, rng.lognormal(math.log(median_ms), 0.35, n))
        mgr.record_batch(REQUEST_OUTCOME, np.where(rng.random(n) < 0.0005, 100.0, 0.0))
        tps = 140.0 * (0.45 if active("tokens_per_second") else 1.0) * rng.normal(1.0, 0.04)
        mgr.record_measurement("tokens_per_second", tps)
        mgr.record_measurement("kv_cache_usage_percent", float(np.clip(rng.normal(62, 4), 0, 100)))
        mgr.record_measurement("gpu_utilization_percent", float(np.clip(rng.normal(78, 3), 0, 100)))
        mgr.record_measurement("echo_evolution_convergence", float(np.clip(rng.normal(91, 1.5), 0, 100)))
        if now_s >= next_eval:
            next_eval += 5.0
            mgr.evaluate()
            total_eval_s += mgr.evaluator_stats.last_duration_s
    stats = mgr.evaluator_stats
    attribution = attribute(signals, faults, lambda sla: mgr.thresholds[sla].window_seconds if sla in mgr.thresholds else 60.0)
    result = DemoResult(
        attribution.reports,
        [sig for sig in attribution.unexplained if sig.kind == VIOLATION],
        [sig for sig in attribution.unexplained if sig.kind == ANOMALY],
        {name: s.compliance_percent for name, s in mgr.get_status().items()},
        stats.evaluations, 1000.0 * total_eval_s / max(1, stats.evaluations),
    )
    _print_summary(result, attribution, mgr.store.dropped_total(), mgr.store.nbytes, out)
    return result


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}s"


def _print_summary(result: DemoResult, attribution: Attribution, dropped: int, nbytes: int, out: Callable[[str], None]) -> None:
    out("")
    out("fault                         injected  early warning  detected (MTTD)    severity  resolved")
    for r in attribution.reports:
        f = r.fault
        warned, detected, resolved = r.first(ANOMALY), r.first_violation, r.first(RESOLVED)
        mttd = f"{detected.at_s:.0f}s ({detected.at_s - f.start_s:.0f}s)" if detected is not None else "NOT DETECTED"
        warn = f"{warned.at_s:.0f}s (+{warned.at_s - f.start_s:.0f}s)" if warned is not None else "-"
        severity = detected.severity if detected is not None else None
        out(f"{f.name:<29} {f.start_s:7.0f}s  {warn:<13}  {mttd:<17}  {severity or '-':<8}  {_fmt(resolved.at_s if resolved else None)}")
    out("")
    out("SLA compliance over each SLA's last window (evaluation points within bounds):")
    for name, c in result.compliance.items():
        out(f"  {name:<28} {'-' if c is None else f'{c:6.1f}%'}")
    out(
        f"\nfalse alarms: {len(result.false_alarms)}   anomaly warnings outside faults: {len(result.false_warnings)}"
        f"   evaluations: {result.evaluations} "
        f"(mean {result.mean_evaluation_ms:.2f} ms)   dropped samples: {dropped}   ring buffers: {nbytes / 1e6:.2f} MB"
    )
