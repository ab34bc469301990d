"""From an engine's per-step stats (vLLM / Aphrodite V1 ``SchedulerStats`` + ``IterationStats``) to
raw samples in the SLA manager's store.

Why staging: the engine's event loop calls ``record()`` once per output batch, and the cheapest
safe thing to do there is to keep a reference to the step's stats objects (the engine builds new
ones every step and never touches them again). ``flush()`` extracts the numbers later, off the
event loop, before every evaluation (the manager's pre-evaluation hook). Nothing heavy ever runs on
the engine's thread: if nothing evaluates, the oldest staged steps beyond ``max_staged_steps`` are
dropped and counted (``RecorderCounters.dropped_steps``), so memory stays bounded.
Fields are read with ``getattr`` defaults, so vLLM 0.32–0.33 and Aphrodite 0.10–0.24 all work; a
step whose stats cannot be read is counted and skipped, never raised into the engine.
"""
from __future__ import annotations

import itertools
import logging
import math
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.self_metrics import Component
from aphrodite_sla.sla.manager import SLAManager

logger = logging.getLogger(__name__)

# Series recorded from engine stats: (name, window seconds, sample rate Hz, unit). The rate sizes
# the ring (window × rate samples). Latency distributions (THINNED_SERIES) arriving faster keep a
# uniform random share, so their windows keep their full length (``store.thinning``); counts read
# as rates are never thinned. Series that SLAs read get the SLA's window (and its regression
# baseline) from the threshold; these windows cover the exporter's 5-minute quantiles and rates.
# Together with the default SLAs and the HTTP series this stays under 16 MB (bench_memory.py).
ENGINE_SERIES: tuple[tuple[str, float, float, str], ...] = (
    ("ttft_ms", 300.0, 100.0, "ms"),
    ("itl_ms", 300.0, 1000.0, "ms"),  # thousands a second under load: a 300k-sample uniform share
    ("tpot_ms", 300.0, 100.0, "ms"),
    ("request_latency_ms", 300.0, 100.0, "ms"),
    ("queue_time_ms", 300.0, 100.0, "ms"),
    ("prefill_time_ms", 300.0, 100.0, "ms"),
    ("decode_time_ms", 300.0, 100.0, "ms"),
    ("request_error_percent", 300.0, 100.0, "%"),
    ("finished_requests", 300.0, 100.0, "requests"),
    ("goodput_requests", 300.0, 100.0, "requests"),
    ("goodput_percent", 300.0, 100.0, "%"),  # per finished request: 100 if it met both objectives, else 0
    ("generation_tokens", 300.0, 20.0, "tokens"),
    ("prompt_tokens", 300.0, 20.0, "tokens"),
    ("preemptions", 300.0, 20.0, "requests"),
    ("prefix_cache_queries", 300.0, 20.0, "tokens"),
    ("prefix_cache_hits", 300.0, 20.0, "tokens"),
    ("kv_cache_usage_percent", 300.0, 20.0, "%"),
    ("num_running_reqs", 300.0, 20.0, "requests"),
    ("num_waiting_reqs", 300.0, 20.0, "requests"),
    ("tokens_per_second", 300.0, 1.0, "tokens/s"),
    # for root-cause analysis (aphrodite_sla.rca.graph): the load and its mix, and client aborts
    ("requests_started", 300.0, 20.0, "requests"),  # first tokens per step: the admitted arrival rate
    ("request_prompt_tokens", 300.0, 20.0, "tokens"),
    ("request_output_tokens", 300.0, 20.0, "tokens"),
    ("request_abort_percent", 300.0, 20.0, "%"),  # per finished request: 100 if its client aborted it
)
THINNED_SERIES = frozenset(
    {"ttft_ms", "itl_ms", "tpot_ms", "request_latency_ms", "queue_time_ms", "prefill_time_ms", "decode_time_ms",
     "request_error_percent", "goodput_percent", "request_prompt_tokens", "request_output_tokens", "request_abort_percent"}
)

# Distinct engine indices counted by index; past this they share OTHER_ENGINES.
MAX_ENGINE_INDICES = 64
OTHER_ENGINES = -1

# Goodput (DistServe): requests per second over the last minute that met both objectives.
GOODPUT_SERIES = "goodput_requests"
GOODPUT_WINDOW_S = 60.0
# Goodput as a share of demand: its mean is the percent of finished requests that met both
# objectives. Why beside the rate: a minimum on a rate breaches in a quiet hour or when recovery
# sheds load; a minimum on this ratio breaches only when the requests served are served badly.
GOODPUT_PERCENT_SERIES = "goodput_percent"

_ERROR_REASONS = frozenset({"ERROR"})
_ABORT_REASONS = frozenset({"ABORT"})


@dataclass(frozen=True)
class ServiceObjectives:
    """Per-request objectives for goodput (DistServe: a request counts when it met both) and what
    counts as an error. TTFT of a finished request is its queue time plus prefill time."""

    ttft_ms: float = 2000.0
    tpot_ms: float = 100.0
    abort_is_error: bool = False

    def __post_init__(self) -> None:
        for name in ("ttft_ms", "tpot_ms"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"ServiceObjectives.{name}: must be a finite number > 0, got {value!r}")


@dataclass
class _Column:
    """One series' values gathered during a flush: raw values, the step times and how many values
    each step contributed, converted to arrays once."""

    scale: float
    times: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    def array(self) -> np.ndarray:
        """The values as float64 (scaled). Numbers convert in one call; anything else (a string, an
        object whose ``__float__`` raises) is converted one by one and becomes NaN, which the store
        drops and counts per value: one bad value never costs the others."""
        try:
            arr = np.asarray(self.values)
            if arr.ndim != 1 or arr.dtype.kind not in "fiub":
                raise TypeError("not a flat array of numbers")
            arr = arr.astype(np.float64, copy=False)
        except Exception:
            arr = np.array([_to_float(v) for v in self.values], dtype=np.float64)
        if self.scale == 1.0:
            return arr
        with np.errstate(over="ignore", invalid="ignore"):
            return arr * self.scale


def _to_float(value: Any) -> float:
    if isinstance(value, (str, bytes)):
        return math.nan  # stats fields are numbers: a string is malformed, not parsed
    try:
        return float(value)
    except Exception:
        return math.nan  # counted as a drop by the store


@dataclass
class RecorderCounters:
    """How the recorder is doing (exported later): steps seen and steps that could not be read."""

    steps_recorded: int = 0
    steps_flushed: int = 0
    bad_steps: int = 0
    dropped_steps: int = 0  # staged steps dropped because nothing flushed them in time
    record_errors: int = 0
    per_engine_steps: dict[int, int] = field(default_factory=dict)


def _reason_name(reason: Any) -> str:
    name = getattr(reason, "name", None)
    if isinstance(name, str):
        return name.upper()
    return str(reason).rsplit(".", 1)[-1].upper()


def _num(obj: Any, name: str, default: float = math.nan) -> float:
    """A numeric field, or ``default`` if absent or not a number (the store drops NaN, counted)."""
    value = getattr(obj, name, default)
    if value is None:
        return default
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _seq(obj: Any, name: str) -> list[Any]:
    value = getattr(obj, name, None)
    if value is None:
        return []
    try:
        return list(value)
    except TypeError:
        return []


class EngineStatsRecorder:
    """Turns engine stats into samples. ``record`` is the StatLogger's hot path; ``flush`` does the
    work. Thread-safe: ``record`` may run on the engine's loop while ``flush`` runs on the evaluator.
    Feeds the manager through its public recording API only.
    """

    def __init__(
        self,
        manager: SLAManager,
        *,
        objectives: ServiceObjectives | None = None,
        max_staged_steps: int = 4096,
        throughput_interval_s: float = 1.0,
        stall_detector: Any | None = None,
    ) -> None:
        self.manager = manager
        self.objectives = objectives or ServiceObjectives()
        self.max_staged_steps = int(max_staged_steps)
        self.throughput_interval_s = float(throughput_interval_s)
        self.stall_detector = stall_detector
        # called off the hot path (at flush) with "request_error" / "request_aborted" /
        # "quality_check_failure" / "slow_request" per finished request: the incident rules' feed
        self.outcome_listener: Callable[[str], Any] | None = None
        self._counters = RecorderCounters()
        self._clock = manager.clock
        # Steps as (time, sequence number, scheduler stats, iteration stats, engine index). The
        # sequence numbers make every count exact off the hot path: steps recorded, and steps the
        # bounded deque evicted because nothing flushed them (a gap in the numbers).
        self._sequence = itertools.count()
        self._staged: deque[tuple[float, int, Any, Any, int]] = deque(maxlen=self.max_staged_steps)
        self._newest_taken: tuple[float, int, Any, Any, int] | None = None  # the newest step flushed
        self._fed_sequence = -1  # the newest step the stall detector has seen
        self._dropped = 0  # steps evicted from the bounded deque, counted when taken
        self._flush_lock = threading.Lock()
        self._feed_lock = threading.Lock()
        # throughput gauge state (flush thread only)
        self._tp_start: float | None = None
        self._tp_tokens = 0.0
        self._tp_busy = False
        for name, window, rate, unit in ENGINE_SERIES:
            manager.register_metric(name, window, rate, unit=unit, thin=name in THINNED_SERIES)
        manager.register_pre_evaluation_hook(self.flush)
        if stall_detector is not None:
            stall_detector.step_source = self.feed_stall_detector  # it pulls the steps on its timer
        _recorders[manager] = weakref.ref(self)  # the manager's hook keeps it alive
        reset_in_child(self)

    @classmethod
    def for_manager(cls, manager: SLAManager) -> EngineStatsRecorder:
        """The recorder feeding ``manager`` (created on first use): every StatLogger pointed at the
        same manager shares it, so steps are flushed by one hook, once."""
        ref = _recorders.get(manager)
        recorder = ref() if ref is not None else None
        return recorder if recorder is not None else cls(manager)

    def _reset_after_fork(self) -> None:
        self._flush_lock = threading.Lock()
        self._feed_lock = threading.Lock()

    # -- hot path --------------------------------------------------------------------------
    def record(
        self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None, engine_idx: int = 0, **_: Any
    ) -> None:
        """Keep a reference to this step's stats; never raises. The engines' ``StatLoggerBase.record``
        signature, so a StatLogger binds this method as its own ``record`` (one call frame fewer on
        the engine's thread). One clock read and one append:
        right after the engine's step the caches are cold, and every attribute touched here costs
        microseconds (``bench_statlogger.py``); counting, the stall detector's inputs and the
        bound's accounting are all derived later from the staged steps."""
        try:
            self._staged.append((self._clock(), next(self._sequence), scheduler_stats, iteration_stats, engine_idx))
        except Exception:  # the engine must never see our errors
            self._counters.record_errors += 1

    # -- off the hot path ------------------------------------------------------------------
    @property
    def counters(self) -> RecorderCounters:
        """How the recorder is doing: the counts kept by the flush, with what the staged steps say
        (steps recorded, evicted), as a copy taken now."""
        taken = self._newest_taken
        oldest: tuple[float, int, Any, Any, int] | None
        newest: tuple[float, int, Any, Any, int] | None
        try:
            oldest, newest = self._staged[0], self._staged[-1]
        except IndexError:
            oldest, newest = None, taken
        # evicted while staged: the gap between the newest step taken and the oldest one still held
        pending = oldest[1] - (taken[1] if taken is not None else -1) - 1 if oldest is not None else 0
        return replace(
            self._counters, steps_recorded=newest[1] + 1 if newest is not None else 0,
            dropped_steps=self._dropped + max(pending, 0),
        )

    def _take(self) -> list[tuple[float, int, Any, Any, int]]:
        """Pop the staged steps (popleft is atomic: a step appended meanwhile stays for the next
        flush, never lost) and count the ones the bounded deque evicted before we came."""
        staged = self._staged
        steps = []
        for _ in range(len(staged)):
            try:
                steps.append(staged.popleft())
            except IndexError:
                break
        if steps:
            previous = self._newest_taken[1] if self._newest_taken is not None else -1
            evicted = steps[0][1] - previous - 1
            if evicted > 0:
                self._dropped += evicted
            self._newest_taken = steps[-1]
        return steps

    def feed_stall_detector(self) -> None:
        """Give the stall detector the steps it has not seen, in order (its timer calls this before
        every check; a flush also does, before it takes the steps away)."""
        with self._feed_lock:
            self._feed(list(self._staged))  # list() of a deque copies it atomically under the GIL

    def _feed(self, steps: list[tuple[float, int, Any, Any, int]]) -> None:
        stall = self.stall_detector
        if stall is None:
            return
        fed = self._fed_sequence
        for now, seq, sched, it, _ in steps:
            if seq <= fed:
                continue
            fed = seq
            try:
                running = getattr(sched, "num_running_reqs", None) if sched is not None else None
                generated = getattr(it, "num_generation_tokens", 0) if it is not None else 0
                prompt = getattr(it, "num_prompt_tokens", 0) if it is not None else 0
            except Exception:
                continue  # an unreadable step: the flush counts it (bad_steps)
            stall.on_record(
                now, running if isinstance(running, int) else None,
                generated if isinstance(generated, int) else 0, prompt if isinstance(prompt, int) else 0,
            )
        self._fed_sequence = fed

    def flush(self) -> int:
        """Move every staged step into the store; returns the number of steps flushed."""
        with self._flush_lock:
            with self._feed_lock:
                staged = self._take()
                self._feed(staged)
            if not staged:
                return 0
            columns: dict[str, _Column] = {}
            bad = 0
            for step in staged:
                try:
                    self._extract(step, columns)
                except Exception as exc:
                    bad += 1
                    last_error = exc
            if bad:
                self._counters.bad_steps += bad
                self.manager.self_metrics.error(
                    Component.RECORDER, f"{bad} engine steps could not be read: {type(last_error).__name__}: {last_error}", bad
                )
            record_batch = self.manager.record_batch
            for name, col in columns.items():
                if not col.values:
                    continue
                try:  # one series' failure never costs the others
                    record_batch(name, col.array(), np.repeat(np.asarray(col.times), col.counts))
                except Exception as exc:
                    self.manager.self_metrics.error(Component.RECORDER, f"{name}: {type(exc).__name__}: {exc}", exc_info=True)
            self._counters.steps_flushed += len(staged)
            return len(staged)

    def _extract(self, step: tuple[float, int, Any, Any, int], columns: dict[str, _Column]) -> None:
        now, _, sched, it, engine_idx = step
        per_engine = self._counters.per_engine_steps
        if engine_idx not in per_engine and len(per_engine) >= MAX_ENGINE_INDICES:
            engine_idx = OTHER_ENGINES  # a caller inventing engine indices cannot grow this without bound
        per_engine[engine_idx] = per_engine.get(engine_idx, 0) + 1

        def add(name: str, value: float, scale: float = 1.0) -> None:
            col = columns.get(name)
            if col is None:
                col = columns[name] = _Column(scale)
            col.times.append(now)
            col.counts.append(1)
            col.values.append(value)

        def add_many(name: str, values: list[Any], scale: float) -> None:
            if not values:
                return
            col = columns.get(name)
            if col is None:
                col = columns[name] = _Column(scale)
            col.times.append(now)
            col.counts.append(len(values))
            col.values.extend(values)  # raw; converted and scaled once per flush

        if sched is not None:
            add("kv_cache_usage_percent", _num(sched, "kv_cache_usage") * 100.0)
            add("num_running_reqs", _num(sched, "num_running_reqs"))
            add("num_waiting_reqs", _num(sched, "num_waiting_reqs"))
            prefix = getattr(sched, "prefix_cache_stats", None)
            if prefix is not None:
                add("prefix_cache_queries", _num(prefix, "queries", 0.0))
                add("prefix_cache_hits", _num(prefix, "hits", 0.0))
        gen_tokens = 0.0
        if it is not None:
            gen_tokens = _num(it, "num_generation_tokens", 0.0)
            add("generation_tokens", gen_tokens)
            add("prompt_tokens", _num(it, "num_prompt_tokens", 0.0))
            add("preemptions", _num(it, "num_preempted_reqs", 0.0))
            first_tokens = _seq(it, "time_to_first_tokens_iter")
            add("requests_started", float(len(first_tokens)))
            add_many("ttft_ms", first_tokens, 1000.0)
            add_many("itl_ms", _seq(it, "inter_token_latencies_iter"), 1000.0)
            for req in _seq(it, "finished_requests"):
                self._extract_finished(req, add)
        self._throughput(now, gen_tokens if math.isfinite(gen_tokens) else 0.0, sched, add)

    def _tell_outcome(self, reason: str, corrupted: bool, ttft_ms: float) -> None:
        listener = self.outcome_listener
        if listener is None:
            return
        try:
            listener("request_finished")  # the share guard's denominator
            if reason in _ERROR_REASONS:
                listener("request_error")
            elif reason in _ABORT_REASONS:
                listener("request_aborted")
            if corrupted:
                listener("quality_check_failure")
            if math.isfinite(ttft_ms) and ttft_ms > self.objectives.ttft_ms:
                listener("slow_request")
        except Exception:  # the listener's failure is its own
            self._counters.record_errors += 1

    def _extract_finished(self, req: Any, add: Any) -> None:
        reason = _reason_name(getattr(req, "finish_reason", ""))
        failed = reason in _ERROR_REASONS or (self.objectives.abort_is_error and reason in _ABORT_REASONS)
        if getattr(req, "is_corrupted", False):
            failed = True
        e2e = _num(req, "e2e_latency") * 1000.0
        queued = _num(req, "queued_time") * 1000.0
        prefill = _num(req, "prefill_time") * 1000.0
        tpot = _num(req, "mean_time_per_output_token") * 1000.0
        add("request_latency_ms", e2e)
        add("queue_time_ms", queued)
        add("prefill_time_ms", prefill)
        add("decode_time_ms", _num(req, "decode_time") * 1000.0)
        if _num(req, "num_generation_tokens", 0.0) > 1:
            add("tpot_ms", tpot)  # undefined for single-token outputs
        add("request_error_percent", 100.0 if failed else 0.0)
        add("request_abort_percent", 100.0 if reason in _ABORT_REASONS else 0.0)
        add("request_prompt_tokens", _num(req, "num_prompt_tokens"))
        add("request_output_tokens", _num(req, "num_generation_tokens"))
        add("finished_requests", 1.0)
        ttft = queued + prefill
        if self.outcome_listener is not None:
            self._tell_outcome(reason, bool(getattr(req, "is_corrupted", False)), ttft)
        met = (
            not failed
            and math.isfinite(ttft)
            and ttft <= self.objectives.ttft_ms
            and (not math.isfinite(tpot) or tpot <= self.objectives.tpot_ms)
        )
        if met:
            add("goodput_requests", 1.0)
        add(GOODPUT_PERCENT_SERIES, 100.0 if met else 0.0)

    def _throughput(self, now: float, tokens: float, sched: Any, add: Any) -> None:
        """A tokens/s sample per ``throughput_interval_s`` of busy time: idle periods (no running
        request in the interval) are not samples, so an idle server does not breach a minimum
        throughput SLA."""
        if self._tp_start is None:
            self._tp_start = now
            return
        self._tp_tokens += tokens
        running = _num(sched, "num_running_reqs", 0.0) if sched is not None else 0.0
        self._tp_busy = self._tp_busy or running > 0 or tokens > 0
        elapsed = now - self._tp_start
        if elapsed >= self.throughput_interval_s:
            if self._tp_busy:
                add("tokens_per_second", self._tp_tokens / elapsed)
            self._tp_start = now
            self._tp_tokens = 0.0
            self._tp_busy = False


_recorders: weakref.WeakKeyDictionary[SLAManager, weakref.ref[EngineStatsRecorder]] = weakref.WeakKeyDictionary()
