"""The main job: the SLA runtime watching a simulated engine through the StatLogger code path, with
the exporter on 127.0.0.1, a live terminal view and a final summary (compliance, every injected
fault with its injection time, detection time and what was done).

Engine time runs on a ``ManualClock`` advanced by the simulator, so the evaluator and the stall
detector are driven synchronously every ``evaluation_interval_s`` of engine time (exactly what
their background threads do on a real clock); ``--speed`` paces engine time against wall time.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aphrodite_sla.clock import ManualClock
from aphrodite_sla.config import RECOVERY_MODES, SLAConfig
from aphrodite_sla.events import MonitorEvent, RootCauseFound
from aphrodite_sla.export.rca_collector import RCACollector
from aphrodite_sla.export.recovery_collector import RecoveryCollector
from aphrodite_sla.rca.fault_truth import RootCauseSignal, rca_lines
from aphrodite_sla.recovery.model import ExecutionStatus, RecoveryExecution
from aphrodite_sla.runtime import SLARuntime
from aphrodite_sla.sim import EngineSimulator, FaultKind, Scenario, get_scenario
from aphrodite_sla.sim.attribution import (
    PAGE,
    REGRESSION,
    RESOLVED,
    VIOLATION,
    FaultReport,
    InjectedFault,
    Signal,
    attribute,
    signal_of,
    time_to_recover,
)
from aphrodite_sla.sim.host_signals import SERIES as HOST_SERIES
from aphrodite_sla.sim.host_signals import HostSignals
from aphrodite_sla.sim.recovery_driver import SimulatedFrontDoor, SimulationRecoveryDriver
from aphrodite_sla.sla.threshold import Direction, SLAThreshold, Statistic

_log = logging.getLogger(__name__)

# SLAs for the simulated model (the seed's defaults are for the operator to set: a 200 ms p95 of
# end-to-end latency fits no 128-token generation). Set from the steady scenario's behaviour:
# p95 e2e ~3.3 s, TTFT p95 ~25 ms, ~6,100 tokens/s, KV cache ~36%. Throughput is judged relative
# to demand (goodput: the share of finished requests that met the per-request objectives below),
# not as the steady state's tokens/s (a 6,000 minimum used to stand here): a quiet hour, a
# replayed trace's lulls or recovery shedding load lower tokens/s without anything being wrong.
# The seed set's own tokens/s floor (100, bound 80) stays: one running request alone clears it.
SIMULATED_MODEL_SLAS: tuple[SLAThreshold, ...] = (
    SLAThreshold("request_latency_p95", 3500.0, 25.0, 5, statistic=Statistic.P95, source_metric="request_latency_ms", unit="ms"),
    SLAThreshold("request_latency_p99", 5500.0, 50.0, 5, statistic=Statistic.P99, source_metric="request_latency_ms", unit="ms"),
    # 3-minute window, resolved once back above 96% for a minute (a 5% margin would ask for 99.75%)
    SLAThreshold("goodput_percent", 95.0, 0.0, 3, direction=Direction.LOWER, source_metric="goodput_percent", unit="%",
                 sample_rate_hz=100.0, resolve_margin_percent=1.0,
                 description="finished requests that met the TTFT and TPOT objectives, in percent"),
    SLAThreshold("ttft_p95", 30.0, 100.0, 5, statistic=Statistic.P95, source_metric="ttft_ms", unit="ms", sample_rate_hz=100.0),
    SLAThreshold("itl_p99", 20.0, 50.0, 5, statistic=Statistic.P99, source_metric="itl_ms", unit="ms", sample_rate_hz=400.0),
    SLAThreshold("process_memory_mb", 8192.0, 10.0, 5, source_metric="process_memory_mb", unit="MB", sample_rate_hz=1.0, min_samples=3),
)

# The per-request objectives behind goodput for the simulated model (the engine defaults, 2 s and
# 100 ms, are for real models): ~10x its steady TTFT p95 and ~2x its steady time per output token.
SIMULATED_TTFT_OBJECTIVE_MS = 250.0
SIMULATED_TPOT_OBJECTIVE_MS = 40.0

# Series recorded from the simulator's arrivals after every evaluation, for root-cause analysis
# (was it the traffic?): (name, unit).
ARRIVAL_SERIES: tuple[tuple[str, str], ...] = (
    ("arrival_rate_rps", "requests/s"),
    ("arrival_prompt_tokens_mean", "tokens"),
    ("arrival_output_tokens_mean", "tokens"),
    ("arrival_rejected_too_long", "requests"),
    ("arrival_shed", "requests"),
)

# Which SLAs a fault of each kind should trip (a signal on any counts as its detection).
FAULT_SIGNALS: dict[FaultKind, tuple[str, ...]] = {
    FaultKind.LATENCY_SPIKE: ("request_latency_p95", "request_latency_p99", "ttft_p95", "itl_p99", "kv_cache_usage_percent", "goodput_percent"),
    FaultKind.THROUGHPUT_COLLAPSE: ("goodput_percent", "itl_p99", "request_latency_p95", "request_latency_p99", "ttft_p95"),
    FaultKind.ERROR_BURST: ("error_rate_percent", "goodput_percent"),  # a failed request is not a good one
    FaultKind.KV_EXHAUSTION: (
        "kv_cache_usage_percent", "request_latency_p95", "request_latency_p99", "ttft_p95", "itl_p99", "goodput_percent",
    ),
    FaultKind.MEMORY_LEAK: ("process_memory_mb",),
    # requests caught in a stall finish late: the latency SLAs see it for a window afterwards
    FaultKind.STALL: ("engine_stalled", "request_latency_p95", "request_latency_p99", "ttft_p95", "itl_p99", "goodput_percent"),
    FaultKind.GPU_THROTTLING: ("request_latency_p95", "request_latency_p99", "itl_p99", "goodput_percent", "ttft_p95"),
    FaultKind.TRAFFIC_SURGE: ("request_latency_p95", "request_latency_p99", "kv_cache_usage_percent", "ttft_p95", "goodput_percent", "itl_p99"),
    FaultKind.PROMPT_LENGTH_SHIFT: ("ttft_p95", "request_latency_p95", "request_latency_p99", "kv_cache_usage_percent", "goodput_percent"),
    FaultKind.BAD_DEPLOYMENT: ("request_latency_p95", "request_latency_p99", "error_rate_percent", "itl_p99", "goodput_percent", "ttft_p95"),
}


@dataclass
class SimulationResult:
    scenario: str
    engine_s: float
    wall_s: float
    steps: int
    faults: list[FaultReport]
    signals: list[Signal]
    compliance: dict[str, float | None]
    unexplained: list[Signal] = field(default_factory=list)
    exporter_port: int | None = None
    real_stats: bool = False  # the steps were real vLLM stats objects (vLLM importable)
    recovery: str = "off"  # off | advisory | act
    executions: list[RecoveryExecution] = field(default_factory=list)  # oldest first (skipped ones included)
    remedies: list[Any] = field(default_factory=list)  # the simulator's RemedyEvents: which action ended which fault
    shed_requests: int = 0  # turned away before the engine (admission, circuit breaker)
    arrived: int = 0
    recovery_busy_timeouts: int = 0  # evaluations after which recovery did not settle in time (0 expected)
    remedied: dict[str, str] = field(default_factory=dict)  # "kind@start" -> the remedy that ended the fault early
    root_causes: list[RootCauseSignal] = field(default_factory=list)  # RCA's result for each violation

    def mttr_s(self, report: FaultReport) -> float | None:
        return time_to_recover(report, self.signals)

    def executions_for(self, report: FaultReport) -> list[RecoveryExecution]:
        """The recovery runs this fault's violations started (not the skipped ones)."""
        start = report.fault.start_s
        end = (report.fault.end_s if report.fault.end_s is not None else self.engine_s) + 600.0
        return [e for e in self.executions
                if e.status is not ExecutionStatus.SKIPPED and e.sla in report.fault.slas + ("engine_stalled", "")
                and start <= e.triggered_at <= end]


def simulation_config(config: SLAConfig | None = None, *, recovery: str = "act") -> SLAConfig:
    """The configuration a simulation runs with. ``config`` (default: ``SLAConfig()``) is honoured
    like the engine plugin honours it, except where the simulation must differ: no system sampler
    (the host is not the simulated engine), a 20 s stall threshold, ``recovery`` as asked and no
    self-healing tasks. When ``config`` gives no thresholds, the SLAs are the simulated model's
    (:data:`SIMULATED_MODEL_SLAS` over the seed set) with its goodput objectives
    (unless ``config`` moved them off the engine defaults); when it gives thresholds, those SLAs,
    its ``sla_set``, ``disabled_slas`` and objectives are used as they are."""
    if recovery not in RECOVERY_MODES:
        raise ValueError(f"recovery must be one of {', '.join(RECOVERY_MODES)}, got {recovery!r}")
    base = SLAConfig() if config is None else config
    own: dict[str, Any] = {}
    if not base.thresholds:
        default = SLAConfig()
        own = {
            "sla_set": "seed", "thresholds": SIMULATED_MODEL_SLAS,
            "ttft_objective_ms": SIMULATED_TTFT_OBJECTIVE_MS if base.ttft_objective_ms == default.ttft_objective_ms else base.ttft_objective_ms,
            "tpot_objective_ms": SIMULATED_TPOT_OBJECTIVE_MS if base.tpot_objective_ms == default.tpot_objective_ms else base.tpot_objective_ms,
        }
    return replace(base, **own, system_sampler=False, stall_after_s=20.0, recovery=recovery, self_healing=False)


def run_simulation(
    scenario: str | Scenario,
    *,
    duration_s: float | None = None,
    speed: float = 0.0,
    port: int | None = None,
    seed: int = 0,
    live: bool = False,
    out: Callable[[str], None] = print,
    step_logger: Callable[[SLARuntime], Callable[[Any, Any], None]] | None = None,
    on_evaluation: Callable[[float], None] | None = None,
    recovery: str = "act",
    approve_after_s: float | None = 30.0,
    print_summary: bool = True,
    config: SLAConfig | None = None,
    thresholds: Sequence[SLAThreshold] | None = None,
    incidents_db: str | None = None,
) -> SimulationResult:
    """Run ``scenario`` (a catalogue name, or a :class:`Scenario` such as
    :func:`~aphrodite_sla.sim.scenarios.trace_scenario` builds) for ``duration_s`` engine seconds
    (default: the scenario's; a trace scenario's is one pass of the trace). ``speed``:
    engine seconds per wall second (0 = as fast as possible). ``port``: serve /metrics on
    127.0.0.1 (0 picks a free port; None: no exporter). ``step_logger(runtime)`` returns what each
    engine step is handed to (default: our StatLogger, the real vLLM class when importable; the
    contract tests pass vLLM's own ``StatLoggerManager``). ``on_evaluation(engine_s)`` runs after
    each evaluation, while the simulation waits (tests scrape the exporter there). ``recovery``:
    what recovery does — ``act`` on the simulated engine (its actions, shedding, the breaker),
    ``advisory`` (record what it would do) or ``off``; risky actions are approved by a simulated
    on-call ``approve_after_s`` engine seconds after they are requested (None: denied at timeout).
    ``config``: the SLA configuration (see :func:`simulation_config`); ``thresholds``: SLAs that
    replace the simulated model's (shorthand for a ``config`` with those thresholds). ``incidents_db``:
    run the incident system on this SQLite file and end with a post-mortem per incident."""
    if not isinstance(scenario, Scenario):
        scenario = get_scenario(scenario)
    if duration_s is not None:
        if not (duration_s > 0 and math.isfinite(duration_s)):
            raise ValueError(f"duration must be a finite number of seconds > 0, got {duration_s!r}")
        scenario = scenario.with_(duration_s=float(duration_s))
    from aphrodite_sla.sim import StatsFactory

    if thresholds is not None:
        if not thresholds:
            raise ValueError("thresholds: give at least one SLA (None keeps the simulated model's)")
        config = replace(SLAConfig() if config is None else config, thresholds=tuple(thresholds))
    config = simulation_config(config, recovery=recovery)
    clock = ManualClock()
    runtime = SLARuntime(config, clock=clock)
    manager = runtime.manager
    system = runtime.context.recovery
    assert system is not None
    runtime.context.server.admission.seed(seed)  # the same requests shed on every run of one seed
    front_door = SimulatedFrontDoor(system)
    # The real vLLM stats classes when vLLM is importable (our same-named dataclasses otherwise).
    sim = EngineSimulator(scenario, clock=clock, seed=seed, stats_factory=StatsFactory(prefer_real=True), admission=front_door)
    front_door.sim = sim
    driver = SimulationRecoveryDriver(system, sim, approve_after_s=approve_after_s) if recovery != "off" else None
    start = clock()
    signals: list[Signal] = []

    root_causes: list[RootCauseSignal] = []

    def on_event(event: MonitorEvent) -> None:
        if isinstance(event, RootCauseFound):
            detected = getattr(event.analysis, "detected_at", None)  # the violation's detection, not the analysis
            at = detected if isinstance(detected, float) and math.isfinite(detected) else event.occurred_at
            root_causes.append(RootCauseSignal(at - start, event.sla, event.cause, event.confidence))
        sig = signal_of(event, start)
        if sig is not None:
            signals.append(sig)

    manager.subscribe(on_event, name="simulate")  # every violation (stalls too), warning, regression
    incidents = None
    if incidents_db:
        from aphrodite_sla.incidents import simulation as sim_incidents

        incidents = sim_incidents.attach(runtime.context, incidents_db)
    logger = (step_logger or _stat_logger)(runtime)

    exporter_port = None
    server = None
    if port is not None:
        from prometheus_client import CollectorRegistry

        from aphrodite_sla.export.server import start_exporter
        from aphrodite_sla.sim.engine_metrics import SimulatedEngineMetrics

        model_name = f"sim-{scenario.name}"
        registry = CollectorRegistry(auto_describe=False)
        engine_metrics = SimulatedEngineMetrics(registry, model_name)
        our_logger = logger

        def logger(sched: Any, it: Any) -> None:
            our_logger(sched, it)
            engine_metrics.record(sched, it)

        registry.register(RecoveryCollector(system.metrics_view, model_name=model_name))
        from aphrodite_sla.incidents.api import combined_handler
        from aphrodite_sla.rca.api import with_rca_routes

        if incidents is not None:
            for incident_collector in incidents.collectors(model_name):
                registry.register(incident_collector)
        if runtime.context.rca is not None:
            registry.register(RCACollector(runtime.context.rca.metrics_view, model_name=model_name))
        runtime.context.set_model_name(model_name)
        server, exporter_port, _ = start_exporter(manager, port, model_name=model_name, registry=registry, endpoints=runtime.context.endpoints,
                                                  api=with_rca_routes(runtime.context.rca,
                                                                      combined_handler(incidents.api if incidents else None, system.api.handle)),
                                                  console=_console_handler(runtime))
        out(f"exporter: http://127.0.0.1:{exporter_port}/metrics")
        if _console_handler(runtime) is not None:
            out(f"incident console: http://127.0.0.1:{exporter_port}/console/")

    interval = config.evaluation_interval_s
    next_eval = start + interval
    last_arrivals = start
    wall0 = time.perf_counter()
    view = _LiveView(manager, sim, signals) if live else None

    next_stall_check = start

    def on_tick(s: EngineSimulator) -> None:
        nonlocal next_eval, last_arrivals, next_stall_check
        t = clock()
        if t >= next_stall_check:  # as often as its timer thread checks (interval_s), not at every engine step
            next_stall_check = t + runtime.stall.interval_s
            runtime.stall.check(t)
        if t >= next_eval:
            next_eval += interval
            manager.record_measurement("process_memory_mb", s.memory_bytes / 2**20)
            _record_arrivals(manager, s, t, t - last_arrivals)  # before the evaluation, so its RCA sees this interval
            for name, value in host.sample(s).items():  # what the host/GPU samplers would read (for RCA)
                if name != "engine_stalled":  # the stall detector records its own
                    manager.record_measurement(name, value, t)
            last_arrivals = t
            manager.evaluate(t)  # returns once subscribers have the events: signals are in order
            if driver is not None:
                driver.settle(t)  # recovery reacts on engine time, before the engine steps on
            if on_evaluation is not None:
                on_evaluation(t - start)
            if view is not None:
                view.update()
            if speed > 0:
                ahead = (t - start) / speed - (time.perf_counter() - wall0)
                if ahead > 0:
                    time.sleep(ahead)

    manager.register_metric("process_memory_mb", 600.0, 1.0, unit="MB")
    host = HostSignals(seed)
    for name, unit in HOST_SERIES:
        manager.register_metric(name, 600.0, 1.0, unit=unit)
    for name, unit in ARRIVAL_SERIES:
        manager.register_metric(name, 600.0, 1.0 / interval, unit=unit)
    try:
        if view is not None:
            with view:
                summary = sim.run(on_step=logger, on_tick=on_tick)
        else:
            summary = sim.run(on_step=logger, on_tick=on_tick)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        if driver is not None:
            driver.close()
    wall = time.perf_counter() - wall0

    faults = [
        InjectedFault(
            event.fault.kind.value, event.fault.describe(), event.start_time - start,
            None if event.end_time is None else event.end_time - start, FAULT_SIGNALS.get(event.fault.kind, ()),
        )
        for event in sim.fault_log
    ]
    active = manager.thresholds
    attribution = attribute(signals, faults, lambda sla: active[sla].window_seconds if sla in active else 60.0)
    result = SimulationResult(
        scenario.name, summary.engine_s, wall, summary.steps, attribution.reports, signals,
        {name: st.compliance_percent for name, st in manager.get_status().items()}, attribution.unexplained, exporter_port,
        sim.stats_factory.using_real, recovery,
        [_relative(e, start) for e in reversed(system.engine.history())], list(sim.remedies_applied),
        sim.rejected_by_admission, summary.arrived + sim.rejected_by_admission, driver.busy_timeouts if driver is not None else 0,
        {_key(e.fault.kind.value, e.start_time - start): e.remedy.value for e in sim.fault_log if e.remedy is not None},
        root_causes,
    )
    if print_summary:
        _print_summary(result, out)
    if incidents is not None:
        from aphrodite_sla.incidents.simulation import finish

        finish(incidents, out)
    return result


def _console_handler(runtime: SLARuntime) -> Any:
    from aphrodite_sla.console.mount import console_of

    console = console_of(runtime.context)
    return console.handle if console is not None else None


def _record_arrivals(manager: Any, sim: EngineSimulator, now: float, elapsed_s: float) -> None:
    """What arrived since the last evaluation (the offered load and its mix), as monitor series:
    a latency SLA breached while the arrival rate or the prompt lengths jumped points at the
    traffic, not the engine. Means are not recorded for an interval without arrivals."""
    stats = sim.take_arrival_stats()
    if elapsed_s > 0:
        manager.record_measurement("arrival_rate_rps", stats.count / elapsed_s, now)
    if stats.count:
        manager.record_measurement("arrival_prompt_tokens_mean", stats.prompt_tokens / stats.count, now)
        manager.record_measurement("arrival_output_tokens_mean", stats.output_tokens / stats.count, now)
    manager.record_measurement("arrival_rejected_too_long", float(stats.rejected), now)
    manager.record_measurement("arrival_shed", float(stats.shed), now)


def _relative(execution: RecoveryExecution, start: float) -> RecoveryExecution:
    """An execution with its times as seconds of engine time since the run's start."""
    return replace(execution, started_at=execution.started_at - start, triggered_at=execution.triggered_at - start,
                   finished_at=None if execution.finished_at is None else execution.finished_at - start)


def _stat_logger(runtime: SLARuntime) -> Callable[[Any, Any], None]:
    """The engine's view of us: vLLM's real StatLogger class when vLLM is importable, else the
    recorder its ``record()`` forwards to (the same code path, minus the vLLM base class)."""
    try:
        from aphrodite_sla.integrations.vllm import SLAStatLogger  # imports vllm

        logger = SLAStatLogger(None, 0, production_monitor=runtime)
        return logger.record
    except Exception as exc:  # vLLM not installed (or not importable here)
        _log.info("aphrodite-sla simulate: vLLM not importable (%s); steps go to the recorder directly", exc)
        return runtime.recorder.record


class _LiveView:
    """A rich live table: each SLA's value, bound, compliance, anomaly score and state."""

    def __init__(self, manager: Any, sim: EngineSimulator, signals: list[Signal]) -> None:
        from rich.console import Console
        from rich.live import Live

        self.manager, self.sim, self.signals = manager, sim, signals
        self.live = Live(self._render(), console=Console(), refresh_per_second=4, transient=False)
        self._last = 0.0

    def __enter__(self) -> _LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.update(self._render())
        self.live.__exit__(*exc)

    def update(self) -> None:
        now = time.perf_counter()
        if now - self._last >= 0.2:
            self._last = now
            self.live.update(self._render())

    def _render(self) -> Any:
        from rich.table import Table

        t = Table(title=f"aphrodite-sla — {self.sim.scenario.name} at {self.sim.elapsed_s:,.0f} s engine time "
                        f"(running {self.sim.num_running}, waiting {self.sim.num_waiting}, "
                        f"faults: {', '.join(f.kind.value for f in self.sim.active_faults) or 'none'})")
        for col in ("SLA", "value", "bound", "compliance", "anomaly", "state"):
            t.add_column(col, justify="right" if col not in ("SLA", "state") else "left")
        for name, st in self.manager.get_status().items():
            if st.violated and st.severity is not None:
                state = f"[red]{st.severity.value.upper()}[/red]"
            else:
                state = "[yellow]breached[/yellow]" if st.breached else "[green]ok[/green]"
            t.add_row(
                name, "-" if st.value is None else f"{st.value:,.4g}", f"{st.bound:,.4g}",
                "-" if st.compliance_percent is None else f"{st.compliance_percent:.1f}%",
                "-" if st.anomaly_score is None else f"{st.anomaly_score:.2f}", state,
            )
        for sig in self.signals[-5:]:
            t.caption = (t.caption or "") + f"\n[{sig.at_s:6.0f}s] {sig.kind}: {sig.sla} — {sig.detail[:90]}"
        return t


def _recovery_cell(result: SimulationResult, report: FaultReport) -> str:
    """What recovery did about a fault: the procedure, its outcome and the action that worked."""
    runs = result.executions_for(report)
    if not runs:
        signal = report.first_signal
        if report.first_violation is not None:
            return "violation raised; no recovery" if result.recovery == "off" else "violation raised; no procedure ran"
        return f"{signal.kind} raised (a warning: no recovery)" if signal is not None else "none"
    run = runs[0]
    verified = next((a for a in run.actions if a.verified), None)
    what = f"{run.procedure_id} {run.status.value}"
    if verified is not None:
        what += f" by {verified.action.value}"
    elif run.status is ExecutionStatus.ADVISORY:
        would = [a.action.value for a in run.actions if a.detail.startswith("would apply")]
        what += f" (would: {', '.join(would) or 'nothing'})"
    if len(runs) > 1:
        what += f" (+{len(runs) - 1} more)"
    return what


def _print_summary(result: SimulationResult, out: Callable[[str], None], baseline: SimulationResult | None = None) -> None:
    out("")
    out(f"scenario {result.scenario}: {result.engine_s:,.0f} s of engine time in {result.wall_s:.1f} s wall "
        f"({result.steps:,} engine steps, {result.engine_s / max(result.wall_s, 1e-9):,.0f}x real time); recovery: {result.recovery}")
    out("")
    mttr_head = f"{'MTTR':>6} {'no-rec.':>7}" if baseline is not None else f"{'MTTR':>6}"
    out(f"{'fault':<20} {'injected':>8} {'ended':>7} {'MTTD':>5} {'by':<30} {'violation':>9} {mttr_head}  recovery")
    base = {_key(r.fault.name, r.fault.start_s): r for r in baseline.faults} if baseline is not None else {}
    for r in result.faults:
        f, first, violation = r.fault, r.first_signal, r.first_violation
        mttr = result.mttr_s(r)
        cells = f"{_seconds(mttr):>6}"
        if baseline is not None:
            other = base.get(_key(f.name, f.start_s))
            cells += f" {_seconds(baseline.mttr_s(other) if other is not None else None):>7}"
        ended = "-" if f.end_s is None else f"{f.end_s:.0f}s" + ("*" if _key(f.name, f.start_s) in result.remedied else "")
        out(
            f"{f.name:<20} {f.start_s:7.0f}s {ended:>7} {_seconds(r.mttd_s):>5} "
            f"{('NOT DETECTED' if first is None else f'{first.kind} {first.sla}')[:30]:<30} "
            f"{('-' if violation is None else f'{violation.at_s:.0f}s'):>9} {cells}  {_recovery_cell(result, r)}"
        )
    if not result.faults:
        out("(no faults injected)")
    else:
        out("MTTD: injection to first signal; MTTR: injection to the resolution of the last violation it raised "
            "('open': still violated at the end); * fault ended by a recovery action")
        _print_pages(result, out)
    if result.recovery != "off":
        runs = [e for e in result.executions if e.status is not ExecutionStatus.SKIPPED]
        skipped = len(result.executions) - len(runs)
        out(f"recovery: {len(runs)} executions ({', '.join(f'{k} {v}' for k, v in _count(e.status.value for e in runs).items()) or 'none'}), "
            f"{skipped} skipped (cooldown, concurrency); {result.shed_requests:,} of {result.arrived:,} requests turned away "
            f"(503 + Retry-After) while shedding or failing fast")
    if result.root_causes:
        out("root cause (RCA of each violation; the cause named most often for the violations of each fault):")
        for line in rca_lines(result.root_causes, [(r.fault.name, r.fault.start_s, r.fault.end_s) for r in result.faults]):
            out(line)
    out("")
    out("SLA compliance (evaluation points within bounds, last window):")
    for name, c in result.compliance.items():
        out(f"  {name:<28} {'-' if c is None else f'{c:6.1f}%'}")
    raised = [s for s in result.signals if s.kind != RESOLVED]
    regressions = [s for s in raised if s.kind == REGRESSION]
    violations = sum(s.kind == VIOLATION for s in raised)
    out(f"\nsignals: {len(raised)} ({violations} violations, {len(regressions)} regression episodes); "
        f"not explained by an injected fault: {len(result.unexplained)}")
    for sig in result.unexplained[:10]:
        out(f"  [{sig.at_s:6.0f}s] {sig.kind} {sig.sla}: {sig.detail[:100]}")
    if regressions:
        out(f"regression episodes ({len(regressions)}):")
        for sig in regressions:
            detail = sig.detail if sig.detail.startswith(sig.sla) else f"{sig.sla}: {sig.detail}"  # names the SLA and the change
            out(f"  [{sig.at_s:6.0f}s] {detail[:120]}")


def _print_pages(result: SimulationResult, out: Callable[[str], None]) -> None:
    """When each fault paged someone (a fast page rule or the stall detector), against the seed's
    sustained rule: the pages table of the summary."""
    out("")
    out(f"{'fault':<20} {'onset':>7} {'paged at':>9} {'after':>6}  {'rule':<16} {'sla':<24} {'sustained rule':>14}")
    for r in result.faults:
        page, violation = r.first_page, r.first_violation
        paged = "-" if page is None else f"{page.at_s:.0f}s"
        after = "-" if page is None else f"{page.at_s - r.fault.start_s:.0f}s"
        sustained = "-" if violation is None else f"{violation.at_s - r.fault.start_s:+.0f}s"
        out(f"{r.fault.name:<20} {r.fault.start_s:6.0f}s {paged:>9} {after:>6}  {page.rule if page else 'no page':<16} "
            f"{page.sla if page else '':<24} {sustained:>14}")
    pages = [s for s in result.signals if s.kind == PAGE]
    false = [s for s in result.unexplained if s.kind == PAGE]
    out(f"pages: {sum(s.severity == 'critical' for s in pages)} (+{sum(s.severity != 'critical' for s in pages)} tickets), "
        f"{len(false)} not explained by a fault; sustained rule: onset to the seed's violation")


def _key(name: str, start_s: float) -> str:
    return f"{name}@{start_s:.0f}"


def _seconds(value: float | None) -> str:
    return "open" if value is None else f"{value:.0f}s"


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def compare_recovery(
    scenario: str | Scenario, *, out: Callable[[str], None] = print, **kwargs: Any,
) -> tuple[SimulationResult, SimulationResult]:
    """Run ``scenario`` (a name or a :class:`Scenario`) twice with one seed — recovery acting, then recovery off — and print
    each fault's MTTD and MTTR side by side: recovery must shorten the impact, not just run."""
    kwargs.pop("recovery", None)
    incidents_db = kwargs.pop("incidents_db", None)  # the acting run's incidents only
    port = kwargs.pop("port", None)
    live = kwargs.pop("live", False)
    name = scenario.name if isinstance(scenario, Scenario) else scenario
    out(f"run 1 of 2: {name} with recovery acting on the simulated engine")
    acted = run_simulation(scenario, recovery="act", port=port, live=live, out=out, print_summary=False, incidents_db=incidents_db, **kwargs)
    out(f"run 2 of 2: {name}, same seed, recovery off (the baseline)")
    baseline = run_simulation(scenario, recovery="off", port=None, live=False, out=out, print_summary=False, **kwargs)
    _print_summary(acted, out, baseline)
    return acted, baseline
