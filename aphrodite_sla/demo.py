"""The foundation demo: a synthetic engine stream with injected faults, watched by the production
SLA manager on an accelerated clock. Prints when each fault was injected and when it was detected
(early anomaly warning and sustained SLA violation), then each SLA's compliance."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from aphrodite_sla.clock import ManualClock
from aphrodite_sla.sla.defaults import REQUEST_LATENCY_MS, REQUEST_OUTCOME
from aphrodite_sla.sla.manager import create_production_sla_manager
from aphrodite_sla.sla.threshold import SLAStatus, SLAViolation

START = 1_700_000_000.0


@dataclass(frozen=True)
class Fault:
    """An injected fault: which SLA it should trip, and when (seconds from the start)."""

    name: str
    sla: str
    start_s: float
    end_s: float
    also_affects: tuple[str, ...] = ()

    def explains(self, sla: str, at_s: float, window_s: float) -> bool:
        """Whether a signal on ``sla`` at ``at_s`` belongs to this fault: during it, or while its
        end (the recovery edge) is still inside the SLA's window."""
        return (sla == self.sla or sla in self.also_affects) and self.start_s <= at_s <= self.end_s + window_s


@dataclass
class FaultOutcome:
    fault: Fault
    warned_at_s: float | None = None
    detected_at_s: float | None = None
    severity: str | None = None
    resolved_at_s: float | None = None


@dataclass
class DemoResult:
    outcomes: list[FaultOutcome]
    false_alarms: list[str] = field(default_factory=list)
    false_warnings: list[str] = field(default_factory=list)
    compliance: dict[str, float | None] = field(default_factory=dict)
    evaluations: int = 0
    mean_evaluation_ms: float = 0.0


def default_faults() -> list[Fault]:
    return [
        Fault("latency spike (p95 ~2.3x)", "request_latency_p95", 600.0, 1200.0, ("request_latency_p99",)),
        Fault("throughput drop (to 45%)", "tokens_per_second", 1500.0, 2100.0),
    ]


def run_demo(
    duration_s: float = 2700.0,
    *,
    seed: int = 7,
    step_s: float = 0.5,
    faults: list[Fault] | None = None,
    out: Callable[[str], None] = print,
) -> DemoResult:
    """Run ``duration_s`` of simulated engine time: ~40 requests/s, per-step throughput, KV-cache
    and GPU gauges, with ``faults`` injected. Evaluates every 5 s like the background evaluator."""
    faults = default_faults() if faults is None else faults
    clock = ManualClock(START)
    mgr = create_production_sla_manager(clock=clock, evaluation_interval_s=5.0)
    rng = np.random.default_rng(seed)
    outcomes = {f.sla: FaultOutcome(f) for f in faults}
    result = DemoResult(list(outcomes.values()))

    def elapsed() -> float:
        return clock() - START

    def on_violation(v: SLAViolation) -> None:
        o = outcomes.get(v.metric_name)
        active = o is not None and o.fault.start_s <= elapsed() <= o.fault.end_s + v.window_seconds
        if o is not None and active:
            if o.detected_at_s is None:
                o.detected_at_s = elapsed()
            o.severity = v.severity.value
            out(f"[{elapsed():7.0f}s] VIOLATION  {v.message}")
        else:
            result.false_alarms.append(v.metric_name)
            out(f"[{elapsed():7.0f}s] FALSE ALARM {v.message}")

    def on_anomaly(s: SLAStatus) -> None:
        o = outcomes.get(s.metric_name)
        window_s = mgr.thresholds[s.metric_name].window_seconds
        during_fault = any(f.explains(s.metric_name, elapsed(), window_s) for f in faults)
        if not during_fault:
            result.false_warnings.append(s.metric_name)
        elif o is not None and o.warned_at_s is None and elapsed() <= o.fault.end_s:
            o.warned_at_s = elapsed()
        label = "ANOMALY" if during_fault else "ANOMALY (no fault)"
        out(f"[{elapsed():7.0f}s] {label} {s.metric_name}: anomaly score {s.anomaly_score:.2f} "
            f"({s.statistic.value} = {s.value:.4g}, bound {s.bound:.4g})")

    def on_resolved(name: str, at: float) -> None:
        o = outcomes.get(name)
        if o is not None and o.detected_at_s is not None and o.resolved_at_s is None:
            o.resolved_at_s = at - START
        out(f"[{at - START:7.0f}s] RESOLVED   {name}")

    mgr.register_violation_callback(on_violation)
    mgr.register_anomaly_callback(on_anomaly)
    mgr.register_resolution_callback(on_resolved)

    def active(sla: str) -> bool:
        return any(f.sla == sla and f.start_s <= elapsed() < f.end_s for f in faults)

    for f in faults:
        out(f"scheduled fault: {f.name:<28} -> {f.sla:<22} at {f.start_s:6.0f}s..{f.end_s:.0f}s")
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
    result.evaluations = stats.evaluations
    result.mean_evaluation_ms = 1000.0 * total_eval_s / max(1, stats.evaluations)
    result.compliance = {name: s.compliance_percent for name, s in mgr.get_status().items()}
    _print_summary(result, mgr.store.dropped_total(), mgr.store.nbytes, out)
    return result


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}s"


def _print_summary(result: DemoResult, dropped: int, nbytes: int, out: Callable[[str], None]) -> None:
    out("")
    out("fault                         injected  early warning  detected (MTTD)    severity  resolved")
    for o in result.outcomes:
        mttd = f"{o.detected_at_s:.0f}s ({o.detected_at_s - o.fault.start_s:.0f}s)" if o.detected_at_s is not None else "NOT DETECTED"
        warn = f"{_fmt(o.warned_at_s)} (+{o.warned_at_s - o.fault.start_s:.0f}s)" if o.warned_at_s is not None else "-"
        out(f"{o.fault.name:<29} {o.fault.start_s:7.0f}s  {warn:<13}  {mttd:<17}  {o.severity or '-':<8}  {_fmt(o.resolved_at_s)}")
    out("")
    out("SLA compliance over each SLA's last window (evaluation points within bounds):")
    for name, c in result.compliance.items():
        out(f"  {name:<28} {'-' if c is None else f'{c:6.1f}%'}")
    out(
        f"\nfalse alarms: {len(result.false_alarms)}   anomaly warnings outside faults: {len(result.false_warnings)}"
        f"   evaluations: {result.evaluations} "
        f"(mean {result.mean_evaluation_ms:.2f} ms)   dropped samples: {dropped}   ring buffers: {nbytes / 1e6:.2f} MB"
    )
