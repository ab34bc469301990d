"""Labelled incidents for RCA: a fault injected into the simulated engine, the series a monitor
would have recorded, and the ground truth (cause, root metric, category).

Why through the simulator: the effects reach the symptoms through the engine's mechanics (queue,
batch, KV blocks, preemption, step time), so a cause is only found if its propagation is
understood. Per step the same numbers the engine-stats recorder extracts are kept under its series
names (one value per step or per finished request; ``itl_ms`` as the step's mean); host and GPU
samplers are played once a second by :class:`~aphrodite_sla.sim.host_signals.HostSignals`.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, replace

import numpy as np

from aphrodite_sla.sim.config import Scenario
from aphrodite_sla.sim.engine import EngineSimulator
from aphrodite_sla.sim.faults import Fault, FaultKind
from aphrodite_sla.sim.host_signals import HostSignals
from aphrodite_sla.sim.stats import FinishReason
from aphrodite_sla.sim.workload import BurstyArrivals, DiurnalArrivals, LengthDist, PoissonArrivals, Workload

# cause -> (fault kind, root graph node, category, violated SLI series, magnitudes (low..high))
CAUSE_FAULTS: dict[str, tuple[FaultKind, str, str, str, tuple[float, ...]]] = {
    "traffic_surge": (FaultKind.TRAFFIC_SURGE, "arrival_rate", "application", "ttft_ms", (5.0, 6.0, 7.0)),
    "long_prompt_flood": (FaultKind.PROMPT_LENGTH_SHIFT, "prompt_tokens_per_request", "application", "ttft_ms", (5.0, 6.0, 8.0)),
    "long_output_flood": (FaultKind.OUTPUT_LENGTH_SHIFT, "output_tokens_per_request", "application", "request_latency_ms", (2.5, 3.5, 5.0)),
    "kv_cache_exhaustion": (FaultKind.KV_EXHAUSTION, "kv_cache_usage_percent", "infrastructure", "ttft_ms", (6.0, 9.0, 12.0)),
    "slow_decode_after_deployment": (FaultKind.BAD_DEPLOYMENT, "deployments", "application", "itl_ms", (1.6, 2.0, 2.6)),
    "gpu_throttling": (FaultKind.GPU_THROTTLING, "gpu_throttled", "infrastructure", "itl_ms", (1.6, 2.0, 2.6)),
    "engine_stall": (FaultKind.STALL, "engine_stalled", "application", "ttft_ms", (1.0,)),
    "engine_error_burst": (FaultKind.ERROR_BURST, "engine_error_percent", "application", "request_error_percent", (0.1, 0.2, 0.35)),
    "client_error_burst": (FaultKind.CLIENT_ERROR_BURST, "client_error_percent", "network", "request_abort_percent", (0.1, 0.2, 0.35)),
    "memory_leak": (FaultKind.MEMORY_LEAK, "process_memory_bytes", "infrastructure", "process_rss_bytes", (4.0, 8.0, 16.0)),
    "prefix_cache_thrash": (FaultKind.PREFIX_CACHE_THRASH, "prefix_cache_hit_percent", "resource_contention", "ttft_ms", (0.7, 0.85, 1.0)),
    "cpu_noisy_neighbour": (FaultKind.CPU_NOISY_NEIGHBOUR, "host_cpu_other_percent", "resource_contention", "itl_ms", (1.6, 2.0, 2.6)),
    "gpu_memory_neighbour": (FaultKind.GPU_MEMORY_NEIGHBOUR, "gpu_memory_other_percent", "resource_contention", "ttft_ms", (6.0, 9.0, 12.0)),
    "bad_configuration": (FaultKind.BAD_CONFIGURATION, "config_changes", "configuration", "ttft_ms", (8.0, 16.0, 32.0)),
}
HEALTHY = "healthy"
# harmless changes put into healthy windows (and beside faults): a deployment that changes nothing
DISTRACTORS = ("none", "harmless_deployment", "mild_rate_wobble")


@dataclass(frozen=True)
class IncidentCase:
    cause: str  # a key of CAUSE_FAULTS, or "healthy"
    seed: int
    magnitude: float = 1.0
    ramp_s: float = 0.0
    load: str = "poisson"  # poisson | bursty | diurnal
    rate: float = 20.0
    distractor: str = "none"
    baseline_s: float = 300.0
    incident_s: float = 90.0
    warmup_s: float = 60.0  # the simulator starts empty: its first minute is not a baseline

    @property
    def fault_at(self) -> float:
        return self.baseline_s


@dataclass
class CaseData:
    case: IncidentCase
    series: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    sli: str = ""
    root_node: str = ""
    category: str = ""
    start_time: float = 0.0

    @property
    def window_start(self) -> float:
        """Where an analysis window may start (after the simulator's warm-up)."""
        return self.start_time + self.case.warmup_s

    @property
    def onset_time(self) -> float:
        return self.start_time + self.case.fault_at

    @property
    def end_time(self) -> float:
        return self.start_time + self.case.baseline_s + self.case.incident_s


def _workload(case: IncidentCase) -> Workload:
    if case.load == "bursty":
        arrivals: object = BurstyArrivals(rate_on=case.rate * 1.6, rate_off=case.rate * 0.6, mean_on_s=20.0, mean_off_s=30.0)
    elif case.load == "diurnal":
        arrivals = DiurnalArrivals(mean_rate=case.rate, amplitude=0.3, period_s=1200.0)
    else:
        arrivals = PoissonArrivals(case.rate)
    if case.cause == "prefix_cache_thrash":
        # a thrash matters where prompts share a long prefix (a long system prompt): losing it
        # multiplies the prefill work
        return Workload(arrivals=arrivals, prompt=LengthDist(3072.0, 0.15), prefix_hit_fraction=0.9,  # type: ignore[arg-type]
                        shared_prefix_tokens=2900)
    return Workload(arrivals=arrivals, prefix_hit_fraction=0.7, shared_prefix_tokens=384)  # type: ignore[arg-type]


def _faults(case: IncidentCase) -> tuple[Fault, ...]:
    out: list[Fault] = []
    dur = case.incident_s + 60.0
    if case.cause != HEALTHY:
        kind = CAUSE_FAULTS[case.cause][0]
        kw: dict[str, object] = {}
        if kind is FaultKind.BAD_DEPLOYMENT:
            kw["error_fraction"] = 0.0
        ramp = case.ramp_s if kind not in (FaultKind.STALL,) else 0.0
        duration = 30.0 if kind is FaultKind.STALL else dur
        out.append(Fault(kind, case.fault_at, duration, case.magnitude, ramp_s=ramp, **kw))  # type: ignore[arg-type]
    if case.distractor == "harmless_deployment":
        out.append(Fault(FaultKind.BAD_DEPLOYMENT, max(30.0, case.fault_at - 100.0), dur, 1.0, error_fraction=0.0))
    elif case.distractor == "mild_rate_wobble":
        out.append(Fault(FaultKind.TRAFFIC_SURGE, case.fault_at, dur, 1.15))
    return tuple(out)


def simulate_case(case: IncidentCase) -> CaseData:
    """Run the case and collect the series (store names, as the recorder and samplers name them)."""
    scenario = Scenario(f"rca-{case.cause}", "RCA case", case.baseline_s + case.incident_s,
                        workload=_workload(case), faults=_faults(case))
    sim = EngineSimulator(scenario, seed=case.seed)
    cols: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))

    def add(name: str, t: float, v: float) -> None:
        c = cols[name]
        c[0].append(t)
        c[1].append(v)

    next_sample = [sim.clock() + 1.0]
    tp = [sim.clock(), 0.0]

    def on_step(sched: object, it: object) -> None:
        now = float(it.iteration_timestamp)  # type: ignore[attr-defined]
        add("kv_cache_usage_percent", now, 100.0 * sched.kv_cache_usage)  # type: ignore[attr-defined]
        add("num_running_reqs", now, sched.num_running_reqs)  # type: ignore[attr-defined]
        add("num_waiting_reqs", now, sched.num_waiting_reqs)  # type: ignore[attr-defined]
        pc = sched.prefix_cache_stats  # type: ignore[attr-defined]
        add("prefix_cache_queries", now, pc.queries)
        add("prefix_cache_hits", now, pc.hits)
        add("preemptions", now, it.num_preempted_reqs)  # type: ignore[attr-defined]
        ttfts = it.time_to_first_tokens_iter  # type: ignore[attr-defined]
        add("requests_started", now, len(ttfts))
        for v in ttfts:
            add("ttft_ms", now, 1000.0 * v)
        itl = it.inter_token_latencies_iter  # type: ignore[attr-defined]
        if itl:
            add("itl_ms", now, 1000.0 * float(np.mean(itl)))
        tp[1] += it.num_generation_tokens  # type: ignore[attr-defined]
        for r in it.finished_requests:  # type: ignore[attr-defined]
            add("request_latency_ms", now, 1000.0 * r.e2e_latency)
            add("queue_time_ms", now, 1000.0 * r.queued_time)
            add("request_prompt_tokens", now, r.num_prompt_tokens)
            add("request_output_tokens", now, r.num_generation_tokens)
            add("request_error_percent", now, 100.0 if r.finish_reason is FinishReason.ERROR else 0.0)
            add("request_abort_percent", now, 100.0 if r.finish_reason is FinishReason.ABORT else 0.0)
            if r.num_generation_tokens > 1:
                add("tpot_ms", now, 1000.0 * r.mean_time_per_output_token)

    host = HostSignals(case.seed)

    def on_tick(s: EngineSimulator) -> None:
        now = s.clock()
        while now >= next_sample[0]:
            t = next_sample[0]
            next_sample[0] += 1.0
            arrived = s.take_arrival_stats()  # the offered load, as the front door sees it
            add("arrival_rate_rps", t, float(arrived.count))
            if arrived.count:
                add("arrival_prompt_tokens_mean", t, arrived.prompt_tokens / arrived.count)
                add("arrival_output_tokens_mean", t, arrived.output_tokens / arrived.count)
            for name, value in host.sample(s).items():
                if value or not name.endswith("_events"):
                    add(name, t, value)
            if now - tp[0] >= 1.0:
                add("tokens_per_second", t, tp[1] / (now - tp[0]))
                tp[0], tp[1] = now, 0.0

    start = sim.clock()
    sim.run(on_step=on_step, on_tick=on_tick)
    data = CaseData(case, start_time=start)
    # events that never happened are still series (a tracker that saw no deployment says 0)
    for name in ("deployment_events", "config_change_events"):
        cols[name][0].insert(0, start + 0.5)
        cols[name][1].insert(0, 0.0)
    data.series = {k: (np.asarray(t), np.asarray(v)) for k, (t, v) in cols.items()}
    if case.cause == HEALTHY:
        data.sli, data.root_node, data.category = "ttft_ms", "", ""
    else:
        _, data.root_node, data.category, data.sli, _ = CAUSE_FAULTS[case.cause]
    if not math.isfinite(data.end_time):
        raise ValueError("case end must be finite")
    return data


DETECTION_WINDOW_S = 60.0
MAX_ESCALATIONS = 3


def violated(data: CaseData, window_s: float = DETECTION_WINDOW_S) -> bool:
    """Did the case's SLI break, as an SLA on it would see it (independent of any RCA method)?
    Latency: p95 over the first ``window_s`` after the fault at least 1.3x the baseline's p95;
    percentages: the mean up by 2 points; bytes: the median up by 128 MiB."""
    got = data.series.get(data.sli)
    if got is None:
        return False
    t, v = got
    base = v[(t > data.window_start) & (t <= data.onset_time)]
    inc = v[(t > data.onset_time) & (t <= data.onset_time + window_s)]
    if len(base) < 5 or len(inc) < 3:
        return len(base) >= 5 and data.sli == "ttft_ms"  # a stalled engine reports nothing: that is a breach
    if data.sli.endswith("_percent"):
        return float(np.mean(inc) - np.mean(base)) >= 2.0
    if data.sli.endswith("_bytes"):
        return float(np.median(inc) - np.median(base)) >= 128 * 2**20
    return float(np.percentile(inc, 95)) >= 1.3 * float(np.percentile(base, 95))


BASELINE_MAX_WAITING = 16.0
BASELINE_RATE_STEP = 0.7
MAX_RATE_REDUCTIONS = 3


def keeps_up(data: CaseData) -> bool:
    """Was the baseline healthy: did the engine keep up with its load before the fault (the 95th
    percentile of the waiting queue at most :data:`BASELINE_MAX_WAITING` requests)? A window whose
    queue already grows without bound is an incident before the fault: no RCA case can start there."""
    got = data.series.get("num_waiting_reqs")
    if got is None:
        return True
    t, v = got
    base = v[(t > data.window_start) & (t <= data.onset_time)]
    return len(base) == 0 or float(np.percentile(base, 95)) <= BASELINE_MAX_WAITING


def simulate_incident(case: IncidentCase) -> CaseData:
    """Like :func:`simulate_case`, with two guards that make the case a labelled incident:

    * a baseline the engine did not keep up with (its load beyond capacity: a shared-prefix
      workload's long prompts at a bursty peak) is re-run at ``BASELINE_RATE_STEP`` x the rate, up
      to :data:`MAX_RATE_REDUCTIONS` times: RCA explains a change from a healthy state;
    * a fault that did not break its SLI (the engine had the headroom to absorb it) is made
      stronger, up to :data:`MAX_ESCALATIONS` times: RCA runs on violations, so its cases must be
      ones.

    Healthy windows are returned as they are."""
    data = simulate_case(case)
    reductions = 0
    while not keeps_up(data) and reductions < MAX_RATE_REDUCTIONS:
        reductions += 1
        case = replace(case, rate=case.rate * BASELINE_RATE_STEP)
        data = simulate_case(case)
    tries = 0
    while case.cause != HEALTHY and not violated(data) and tries < MAX_ESCALATIONS:
        tries += 1
        case = replace(case, magnitude=_stronger(case.cause, case.magnitude))
        data = simulate_case(case)
    return data


def _stronger(cause: str, magnitude: float) -> float:
    kind = CAUSE_FAULTS[cause][0]
    if kind in (FaultKind.ERROR_BURST, FaultKind.CLIENT_ERROR_BURST, FaultKind.PREFIX_CACHE_THRASH):
        return min(1.0, magnitude * 1.5)
    return magnitude * 1.5


def case_grid(per_cause: int, healthy: int, seed0: int = 0) -> list[IncidentCase]:
    """``per_cause`` cases per cause across intensities, step/ramp shapes, load profiles and
    distractors, plus ``healthy`` windows (with harmless changes in some)."""
    loads = ("poisson", "bursty", "diurnal")
    out: list[IncidentCase] = []
    s = seed0
    for cause, (_, _, _, _, mags) in CAUSE_FAULTS.items():
        for i in range(per_cause):
            s += 1
            out.append(IncidentCase(cause, s, magnitude=mags[i % len(mags)], ramp_s=(0.0 if i % 2 == 0 else 45.0),
                                    load=loads[(i // 2) % 3], rate=(20.0, 28.0)[(i // 6) % 2],
                                    distractor=DISTRACTORS[(i // 3) % 3] if cause not in ("slow_decode_after_deployment",) else "none"))
    for i in range(healthy):
        s += 1
        out.append(IncidentCase(HEALTHY, s, load=loads[i % 3], distractor=DISTRACTORS[i % 3]))
    return out
