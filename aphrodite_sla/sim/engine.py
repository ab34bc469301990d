"""A continuous-batching LLM engine simulated step by step, producing vLLM v1 stats.

Model (vLLM V1's scheduler, simplified):

* Requests wait in a FIFO queue and run in a batch of at most ``max_num_seqs``. A request holds
  ``ceil(tokens / block_size)`` KV blocks, where ``tokens`` counts its computed prompt tokens
  plus its generated tokens (the slot of the token sampled in a step is reserved before the
  step). Blocks come from a budget of ``num_gpu_blocks`` (less during ``kv_exhaustion``).
* Each step, every decoding request produces one token; the rest of the
  ``max_num_batched_tokens`` budget goes to (chunked) prefill of running requests, then to
  admitting waiting requests in FIFO order while blocks are free (none are admitted in a step
  that preempted). A prefix-cache hit skips the computation of the shared-prefix blocks.
* A prompt of ``max_model_len`` tokens or more is rejected at the door as the engine's API does
  (it never enters the engine; ``rejected_too_long`` counts it); a prompt that fits but leaves
  less room than ``max_tokens`` gets its ``max_tokens`` cut to the room left (LENGTH finish).
* Prefix cache: a request whose trace carries block hashes (Mooncake) is given, when first
  scheduled, the tokens of its longest prefix of hashes found in an LRU cache of block hashes
  bounded by the KV budget (then its own hashes are cached); other requests follow the
  workload's ``prefix_hit_fraction`` model. Both feed the steps' ``prefix_cache_stats``.
* When a request needs a block and none is free, the newest running request is preempted
  (recompute: its blocks are freed, it goes back to the head of the waiting queue, and on
  resumption its prompt and generated tokens are prefilled again).
* The step time follows :class:`~aphrodite_sla.sim.config.EngineConfig`; faults scale it.
* Stats are what vLLM hands a StatLogger for that step: TTFT = first token - arrival, one
  inter-token latency per other token (all decode tokens of a step share the step's end time,
  as in vLLM), and for each finished request queued/prefill/decode/inference/e2e times with
  ``e2e = queued + prefill + decode`` (up to float rounding).

Actions (the same names and effects as vLLM's ``AsyncLLM`` / ``EngineCore``, applied between
steps; :class:`~aphrodite_sla.sim.engine_client.SimulatedEngineClient` is the async face):

* ``abort(ids)`` / ``abort_all()``: the requests finish with ABORT (reported in the next stats,
  with ``e2e = queued + prefill + decode`` up to the abort), their KV blocks are freed.
* ``pause_generation(mode)``: new requests queue, none is scheduled. ``"abort"`` aborts every
  request first; ``"wait"`` lets the running ones finish (the pause completes when they have);
  ``"keep"`` freezes everything (no step runs). With ``clear_cache`` (the default) a completed
  pause resets the prefix cache with ``reset_running_requests=True`` (so ``"keep"`` sends the
  running requests back to the queue, to be recomputed), as vLLM's ``_finish_pause`` does.
  ``resume_generation()`` schedules again; ``is_paused()``.
* ``sleep(level, mode)``: pauses as above, then (level >= 1) discards the KV cache and offloads
  the weights: no step runs until ``wake_up()``, which resumes scheduling once every part is
  awake, after ``wake_up_s[level]`` of reloading. ``is_sleeping()`` is true while paused too (vLLM).
* ``reset_prefix_cache(reset_running_requests=False)``: refused (False) while requests run,
  unless they are first preempted back to the queue. Clears the hash LRU; the synthetic
  ``prefix_hit_fraction`` model goes cold: a request arriving ``x`` s after the reset finds its
  shared prefix with probability ``x / prefix_rewarm_s`` (the shared prefixes are recomputed
  and cached again by the requests that use them); queued requests lose their hits.
* ``check_health()`` raises :class:`SimulatedEngineDeadError` once ``kill()`` marked the engine
  dead (``errored``). A stall is not death: vLLM's health check passes while a batch is wedged
  (which is why stall detection needs its own timer), and so does this one.
* ``rollback()`` stands for the deployment-rollback hook. Faults that an action remedies end
  there (see :mod:`aphrodite_sla.sim.faults`); ``remedies_applied`` logs every remedy.
* Admission: with ``admission=AdmissionController``, each arriving request first asks
  ``admit()``; a refused one (the client got a 503 + Retry-After) never enters the engine:
  ``rejected_by_admission`` and ``ArrivalStats.shed`` count it, and it is not an engine error.

Commands from another thread go through :meth:`EngineSimulator.submit`, a thread-safe queue that
``step()`` drains at its start (the step boundary), as the real engine core drains its input queue.

Decoding requests are not visited every step: a request's token count is implied by the step
counter, and it is touched only at the steps where it needs a new KV block or finishes (events
in per-step buckets). A step therefore costs a few tens of microseconds however many requests
run, and an hour of engine time takes seconds.
"""
from __future__ import annotations

import math
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np

from aphrodite_sla.clock import ManualClock
from aphrodite_sla.sim.config import Scenario
from aphrodite_sla.sim.faults import CONFIG_CHANGE_KINDS, DEPLOYMENT_KINDS, Fault, FaultKind, Remedy
from aphrodite_sla.sim.stats import FinishReason, StatsFactory
from aphrodite_sla.sim.workload import ArrivalStream, _Chunked

MIB = 1024 * 1024
# What the simulated host and GPU samplers read (a modelling choice, stated): other processes use
# this much host CPU at rest; the KV cache is this much of the GPU's memory, and a GPU-memory
# neighbour holds the part of it the engine had to give up.
HOST_CPU_OTHER_BASE_PERCENT = 10.0
GPU_MEMORY_KV_PERCENT = 60.0

WAITING, PREFILL, DECODE, DONE = 0, 1, 2, 3
UNPAUSED, PAUSED_NEW, PAUSED_ALL = 0, 1, 2  # vLLM's PauseState: queue new requests / also freeze running ones

PauseMode = Literal["abort", "wait", "keep"]
PAUSE_MODES: tuple[str, ...] = ("abort", "wait", "keep")
SLEEP_TAGS: tuple[str, ...] = ("weights", "kv_cache")  # what sleep(level >= 1) puts to sleep; wake_up(tags) wakes
DEFERRED: Any = object()  # a submitted command's return value meaning "it resolves its future itself, later"


class SimulatedEngineDeadError(RuntimeError):
    """The simulated engine is dead (``kill()``): the stand-in for vLLM's ``EngineDeadError``."""


class RemedyEvent(NamedTuple):
    """One remedy that took effect: clock time, the action that caused it (e.g.
    ``"pause_generation(mode='abort')"``), the remedy, and the faults it ended (possibly none)."""

    time: float
    action: str
    remedy: Remedy
    cleared: tuple[Fault, ...]


class FaultEvent(NamedTuple):
    """Ground truth for one fault: when the simulator actually applied it and stopped (clock
    times, the same clock as ``iteration_timestamp``; ``end_time`` is None while active), and the
    remedy that ended it early (None: it ran its course, or still runs)."""

    fault: Fault
    start_time: float
    end_time: float | None
    remedy: Remedy | None = None


@dataclass(frozen=True)
class ArrivalStats:
    """Requests that arrived at the engine's API since the previous
    :meth:`EngineSimulator.take_arrival_stats` call: how many (``count``: the offered load, shed
    and rejected ones included), the sums of their prompt and (requested) output tokens as they
    arrived, how many were ``rejected`` (prompt longer than the context) and how many ``shed``
    by admission control (a 503 before the engine; not an engine error)."""

    count: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    rejected: int = 0
    shed: int = 0


@dataclass
class RunSummary:
    """What one :meth:`EngineSimulator.run` call did. ``arrived`` / ``finished`` /
    ``rejected_too_long`` count since the simulator's start; ``arrived`` counts the requests that
    entered the engine (prompts too long for the context are rejected, not arrived)."""

    engine_s: float
    wall_s: float
    steps: int
    stats_steps: int
    stall_ticks: int
    idle_ticks: int
    arrived: int
    finished: int
    running: int
    waiting: int
    finished_by_reason: dict[str, int] = field(default_factory=dict)
    rejected_too_long: int = 0  # prompts >= max_model_len turned away, since the start
    rejected_by_admission: int = 0  # shed by admission control (503 + Retry-After), since the start
    paused_ticks: int = 0  # clock ticks while paused, asleep, waking up or dead (no step ran)

    @property
    def us_per_step(self) -> float:
        return 1e6 * self.wall_s / max(1, self.steps)

    @property
    def speedup(self) -> float:
        return self.engine_s / self.wall_s if self.wall_s > 0 else math.inf


class _Req:
    """One request inside the simulator (engine-internal state, not a stats object)."""

    __slots__ = (
        "arrival",
        "blocks",
        "cached",
        "computed",
        "epoch",
        "fin_step",
        "first_ts",
        "gen",
        "gen0",
        "hashes",
        "last_ts",
        "max_tokens",
        "n_tokens",
        "preemptions",
        "prompt",
        "reason",
        "rid",
        "run_seq",
        "sched",
        "scheduled_ts",
        "state",
        "sync",
        "target",
    )
    # attribute types (set by the engine when a request arrives)
    arrival: float
    blocks: int
    cached: int
    computed: int
    epoch: int
    fin_step: int
    first_ts: float
    gen: int
    gen0: int
    hashes: tuple[int, ...] | None
    last_ts: float
    max_tokens: int
    n_tokens: int
    preemptions: int
    prompt: int
    reason: FinishReason
    rid: int
    run_seq: int
    sched: int
    scheduled_ts: float
    state: int
    sync: int
    target: int

    def kv_tokens(self, last_step: int) -> int:
        """Tokens whose KV slots this request holds after step ``last_step``."""
        if self.state == DECODE:
            return self.prompt + self.gen0 + (last_step - self.sync)
        if self.state == PREFILL:
            # a prefill chunk reserves the slot of the token its last chunk samples
            return self.computed + (1 if self.computed == self.n_tokens else 0)
        return 0

    def generated(self, last_step: int) -> int:
        if self.state == DECODE:
            return self.gen0 + (last_step - self.sync)
        return self.gen


class EngineSimulator:
    """Simulates one engine running ``scenario`` on ``clock`` (a ``ManualClock`` by default,
    advanced by each step's duration). ``seed`` fixes every random draw; ``stats_factory``
    chooses our stats dataclasses (default) or the real vLLM ones.

    Besides the stats of each step: ``take_arrival_stats()`` (what arrived since the last call,
    for arrival-rate and token-mix series), ``rejected_too_long``, ``rejected_by_admission``,
    ``fault_log``, ``remedies_applied``, ``memory_bytes``, ``gpu_clock_ratio``,
    ``kv_cache_usage``. ``admission``: an ``AdmissionController`` (anything with ``admit() ->
    bool``) every arriving request passes first. The actions are described in the module doc."""

    prefix_rewarm_s: float = 5.0  # after a prefix-cache reset, synthetic hits ramp back over this long
    wake_up_s: ClassVar[dict[int, float]] = {1: 2.0, 2: 8.0}  # reload time after sleep(level): weights from CPU / from disk

    def __init__(
        self,
        scenario: Scenario,
        *,
        clock: Any = None,
        seed: int = 0,
        stats_factory: StatsFactory | None = None,
        admission: Any = None,
    ) -> None:
        self.scenario = scenario
        self.config = cfg = scenario.engine
        self.workload = scenario.workload
        self.clock = ManualClock() if clock is None else clock
        if not callable(getattr(self.clock, "advance", None)):
            raise TypeError("EngineSimulator needs a clock with advance(seconds), e.g. ManualClock")
        self.start_time = float(self.clock())
        self.seed = seed
        self.stats_factory = StatsFactory() if stats_factory is None else stats_factory

        ss = np.random.SeedSequence(seed)
        s_arr, s_fate, s_jit = ss.spawn(3)
        self._stream = ArrivalStream(scenario.workload, s_arr)
        fate_rng = np.random.default_rng(s_fate)
        self._u = _Chunked(fate_rng.random)
        jit_rng = np.random.default_rng(s_jit)
        sigma = cfg.step_jitter
        self._jit = _Chunked(lambda n: np.exp(sigma * jit_rng.standard_normal(n)))

        # scheduler state
        self._waiting: deque[_Req] = deque()
        self._running: dict[_Req, None] = {}  # insertion-ordered: popitem() is the newest
        self._prefilling: list[_Req] = []
        self._grow_due: dict[int, list] = {}
        self._fin_due: dict[int, list] = {}
        self._arr_buf: list = []
        self._used = 0
        self._n_decode = 0
        self._ctx_tokens = 0
        self._pstep = 0
        self._prev_now = self.start_time
        self._next_id = 0
        self._run_seq = 0

        # counters
        self.steps = 0
        self.stall_ticks = 0
        self.idle_ticks = 0
        self.arrived = 0  # requests that entered the engine (rejected ones excluded)
        self.rejected_too_long = 0
        self.finished = 0
        self.finished_by_reason: Counter[FinishReason] = Counter()
        self.preemptions = 0
        self._reported_preemptions = 0
        self.generation_tokens = 0
        self.last_step_s = 0.0
        self._arr_count = self._arr_prompt = self._arr_output = self._arr_rejected = self._arr_shed = 0

        # admission and actions
        if admission is not None and not callable(getattr(admission, "admit", None)):
            raise TypeError(f"EngineSimulator: admission needs an admit() -> bool method, got {type(admission).__name__}")
        self.admission = admission
        self._admit: Callable[[], bool] | None = None if admission is None else admission.admit
        self.rejected_by_admission = 0
        self.rejected_dead = 0  # arrivals refused because the engine was dead
        self.aborted = 0  # requests finished by abort actions (the workload's own aborts are not counted here)
        self.paused_ticks = 0
        self._live: dict[int, _Req] = {}  # unfinished requests by id
        self._pending_fin: list[Any] = []  # finished stats of aborted requests, reported with the next stats
        self._commands: deque[tuple[Callable[[], Any], Future]] = deque()
        self._owner_thread: int | None = None  # the thread inside run(): it may apply commands itself
        self._pause = UNPAUSED
        self._pause_waiters: list[Callable[[BaseException | None], Any]] | None = None  # a "wait" pause still draining
        self._asleep: set[str] = set()
        self.sleep_level = 0
        self._waking_until = -math.inf
        self._dead: str | None = None
        self._gate = False  # paused, asleep, waking up or dead: step() takes its slow path
        self._pc_reset_at = -math.inf
        self.prefix_cache_resets = 0
        self.mm_cache_resets = 0
        self.remedies_applied: list[RemedyEvent] = []

        # prefix cache of block hashes (traces that carry them): hash -> None, oldest first
        spec = scenario.workload.arrivals
        self._hash_bs: int = getattr(spec, "hash_block_size", 512)
        self._pc_blocks: OrderedDict[int, None] = OrderedDict()
        self._pc_capacity = 0

        # faults
        self.faults: tuple[Fault, ...] = tuple(sorted(scenario.faults, key=lambda f: f.start_s))
        self.fault_log: list[FaultEvent] = []
        self._log_index: dict[int, int] = {}
        self._active: frozenset[int] = frozenset()
        self._remedied: dict[int, float] = {}  # fault index -> engine seconds when a remedy ended it
        self._leak_released: dict[int, float] = {}  # memory_leak index -> engine seconds its memory was last released
        self.deployments = 0  # deployments (and config changes) made so far: what a deployment tracker sees
        self.config_changes = 0
        self._boundaries = sorted({b for f in self.faults for b in (f.start_s, f.end_s, *f.ramp_boundaries()) if math.isfinite(b)})
        self._next_boundary = self._boundaries[0] if self._boundaries else math.inf
        self._set_modifiers()

    # ------------------------------------------------------------------ faults

    def _set_modifiers(self) -> None:
        step_mult = decode_mult = rate_mult = prompt_mult = kv_div = clock_div = 1.0
        output_mult = cpu_mult = gpu_mem_mult = seqs_div = 1.0
        abort_p = thrash_p = 0.0
        ok = 1.0 - self.workload.error_fraction
        stalled = False
        el = self.elapsed_s
        for i in self._active:
            f = self.faults[i]
            k, m = f.kind, f.magnitude_at(el)
            if k is FaultKind.OUTPUT_LENGTH_SHIFT:
                output_mult *= m
            elif k is FaultKind.CLIENT_ERROR_BURST:
                abort_p = 1.0 - (1.0 - abort_p) * (1.0 - m)
            elif k is FaultKind.PREFIX_CACHE_THRASH:
                thrash_p = 1.0 - (1.0 - thrash_p) * (1.0 - m)
            elif k is FaultKind.CPU_NOISY_NEIGHBOUR:
                step_mult *= m
                cpu_mult *= m
            elif k is FaultKind.GPU_MEMORY_NEIGHBOUR:
                kv_div *= m
                gpu_mem_mult *= m
            elif k is FaultKind.BAD_CONFIGURATION:
                seqs_div *= m
            if k is FaultKind.LATENCY_SPIKE:
                step_mult *= m
            elif k is FaultKind.THROUGHPUT_COLLAPSE:
                decode_mult *= m
            elif k is FaultKind.ERROR_BURST:
                ok *= 1.0 - m
            elif k is FaultKind.KV_EXHAUSTION:
                kv_div *= m
            elif k is FaultKind.STALL:
                stalled = True
            elif k is FaultKind.GPU_THROTTLING:
                step_mult *= m
                clock_div *= m
            elif k is FaultKind.TRAFFIC_SURGE:
                rate_mult *= m
            elif k is FaultKind.PROMPT_LENGTH_SHIFT:
                prompt_mult *= m
            elif k is FaultKind.BAD_DEPLOYMENT:
                step_mult *= m
                ok *= 1.0 - f.error_fraction
            # MEMORY_LEAK: read off the clock by memory_bytes
        self._step_mult = step_mult
        self._decode_mult = decode_mult
        self._rate_mult = rate_mult
        self._prompt_mult = prompt_mult
        self._error_p = 1.0 - ok
        self._stalled = stalled
        self.gpu_clock_ratio = 1.0 / clock_div
        cfg = self.config
        self._output_mult = output_mult
        self._abort_p = abort_p
        self._thrash_p = thrash_p
        self._max_seqs = max(1, int(cfg.max_num_seqs / seqs_div))
        # what a host/GPU sampler would read (the neighbours' share): the engine's own CPU and GPU
        # memory stay as they are; the other process's use is what moves
        self.host_cpu_other_percent = HOST_CPU_OTHER_BASE_PERCENT + (100.0 - HOST_CPU_OTHER_BASE_PERCENT) * (1.0 - 1.0 / cpu_mult)
        self.gpu_memory_other_percent = GPU_MEMORY_KV_PERCENT * (1.0 - 1.0 / gpu_mem_mult)
        self.kv_budget_blocks = max(cfg.min_blocks, min(cfg.num_gpu_blocks, int(cfg.num_gpu_blocks / kv_div)))
        self._pc_capacity = self.kv_budget_blocks * cfg.block_size // self._hash_bs
        pc = self._pc_blocks
        while len(pc) > self._pc_capacity:
            pc.popitem(last=False)

    def _update_faults(self, el: float, now: float) -> None:
        remedied = self._remedied
        active = frozenset(i for i, f in enumerate(self.faults) if f.start_s <= el < f.end_s and i not in remedied)
        for i in sorted(active - self._active):
            self._log_index[i] = len(self.fault_log)
            self.fault_log.append(FaultEvent(self.faults[i], now, None))
            if self.faults[i].kind in DEPLOYMENT_KINDS:
                self.deployments += 1
            elif self.faults[i].kind in CONFIG_CHANGE_KINDS:
                self.config_changes += 1
        for i in sorted(self._active - active):
            j = self._log_index.pop(i)
            self.fault_log[j] = self.fault_log[j]._replace(end_time=now)
        self._active = active
        self._set_modifiers()
        while self._used > self.kv_budget_blocks and self._running:
            self._preempt_newest()  # the KV budget shrank under us (kv_exhaustion)
        self._next_boundary = next((b for b in self._boundaries if b > el), math.inf)

    @property
    def active_faults(self) -> list[Fault]:
        return [self.faults[i] for i in sorted(self._active)]

    @property
    def stalled(self) -> bool:
        return self._stalled

    @property
    def elapsed_s(self) -> float:
        """Engine seconds since the simulator started."""
        return self.clock() - self.start_time

    @property
    def memory_bytes(self) -> int:
        """Reported process memory: the base plus whatever ``memory_leak`` faults leaked so far and
        no remedy released (a leak leaks from its start, or its last release, to its end)."""
        el = self.elapsed_s
        leaked = 0.0
        for i, f in enumerate(self.faults):
            if f.kind is FaultKind.MEMORY_LEAK and el > f.start_s and f.magnitude is not None:
                end = min(el, f.end_s, self._remedied.get(i, math.inf))
                begin = max(f.start_s, self._leak_released.get(i, -math.inf))
                if end > begin:
                    leaked += f.magnitude * MIB * (end - begin)
        return int(self.config.process_memory_bytes + leaked)

    @property
    def kv_cache_usage(self) -> float:
        return self._used / self.kv_budget_blocks

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def used_blocks(self) -> int:
        return self._used

    def check_invariants(self) -> None:
        """Raise AssertionError if the scheduler state is inconsistent: KV blocks in use must
        equal the sum held by running requests and stay within the budget; every running
        request holds exactly ``ceil(kv_tokens / block_size)`` blocks; waiting requests hold
        none; the batch respects ``max_num_seqs``; and every arrived request is finished,
        running or waiting."""
        cfg = self.config
        bs = cfg.block_size
        held = 0
        for r in self._running:
            assert r.state in (PREFILL, DECODE), f"request {r.rid} in running with state {r.state}"
            kv = r.kv_tokens(self._pstep)
            assert r.blocks == -(-kv // bs), f"request {r.rid}: {r.blocks} blocks for {kv} tokens"
            assert kv <= r.prompt + r.max_tokens, f"request {r.rid}: {kv} tokens > prompt + max_tokens"
            held += r.blocks
        assert held == self._used, f"blocks held {held} != blocks in use {self._used}"
        assert self._used <= self.kv_budget_blocks, f"{self._used} blocks in use > budget {self.kv_budget_blocks}"
        assert len(self._running) <= cfg.max_num_seqs, f"{len(self._running)} running > max_num_seqs"
        for r in self._waiting:
            assert r.state == WAITING and r.blocks == 0, f"waiting request {r.rid} holds {r.blocks} blocks"
        n_dec = sum(1 for r in self._running if r.state == DECODE)
        assert n_dec == self._n_decode, f"decoding count {self._n_decode} != {n_dec}"
        in_system = len(self._running) + len(self._waiting)
        assert self.arrived == self.finished + in_system, (
            f"arrived {self.arrived} != finished {self.finished} + in system {in_system}"
        )
        assert len(self._live) == in_system, f"{len(self._live)} requests known as unfinished != {in_system} in the system"
        if self._pause == PAUSED_ALL or self._asleep:
            assert not self._pause_waiters, "a frozen or sleeping engine cannot be draining"

    # ------------------------------------------------------------------ requests

    def _add_arrivals(self, arrivals: list) -> None:
        cfg = self.config
        w = self.workload
        bs = cfg.block_size
        mml = cfg.max_model_len
        start = self.start_time
        waiting = self._waiting
        live = self._live
        admit = self._admit
        cold_until = self._pc_reset_at + self.prefix_rewarm_s
        accepted = rejected = shed = dead = sum_p = sum_o = 0
        output_mult, thrash_p = self._output_mult, self._thrash_p
        for t, prompt, drawn_output, prefix in arrivals:
            output = max(1, int(round(drawn_output * output_mult))) if output_mult != 1.0 and drawn_output > 0 else drawn_output
            sum_p += prompt
            sum_o += output
            if admit is not None and not admit():
                shed += 1  # 503 + Retry-After from the middleware: never reaches the engine
                continue
            if self._dead is not None:
                dead += 1
                continue
            if prompt >= mml:
                # the API rejects it: no room for a single output token in the context
                rejected += 1
                continue
            accepted += 1
            r = _Req()
            r.rid = self._next_id
            self._next_id += 1
            live[r.rid] = r
            r.arrival = start + t
            r.prompt = prompt
            max_tok = w.max_tokens if w.max_tokens < mml - prompt else mml - prompt
            r.max_tokens = max_tok
            if output == 0:
                # recorded as failed (BurstGPT): fails at its first token
                r.target, r.reason = 1, FinishReason.ERROR
            elif output >= max_tok:
                r.target, r.reason = max_tok, FinishReason.LENGTH
            else:
                r.target, r.reason = output, FinishReason.STOP
            if prefix.__class__ is tuple:
                r.hashes = prefix  # cached tokens looked up when first scheduled
                r.cached = 0
            else:
                r.hashes = None
                cached = prefix if prefix < prompt else prompt - 1
                if cached and thrash_p > 0.0 and self._u.next() < thrash_p:
                    cached = 0  # evicted by competing prefixes (prefix_cache_thrash)
                if cached and r.arrival < cold_until and self._u.next() * self.prefix_rewarm_s >= r.arrival - self._pc_reset_at:
                    cached = 0  # the shared prefix is not cached again yet after a reset
                r.cached = cached - cached % bs
            r.state = WAITING
            r.gen = r.gen0 = r.sync = r.blocks = r.sched = r.preemptions = r.epoch = r.run_seq = 0
            r.fin_step = 0
            r.n_tokens = prompt
            r.computed = r.cached
            r.scheduled_ts = r.first_ts = r.last_ts = 0.0
            waiting.append(r)
        self.arrived += accepted
        self.rejected_too_long += rejected
        self.rejected_by_admission += shed
        self.rejected_dead += dead
        self._arr_count += accepted + rejected + shed + dead
        self._arr_prompt += sum_p
        self._arr_output += sum_o
        self._arr_rejected += rejected
        self._arr_shed += shed

    def take_arrival_stats(self) -> ArrivalStats:
        """What arrived since the previous call (or the start): request count (shed and rejected
        included), prompt and output token sums, rejections, sheds; resets the tally."""
        out = ArrivalStats(self._arr_count, self._arr_prompt, self._arr_output, self._arr_rejected, self._arr_shed)
        self._arr_count = self._arr_prompt = self._arr_output = self._arr_rejected = self._arr_shed = 0
        return out

    def _prefix_lookup(self, r: _Req) -> None:
        """Sets ``r.cached`` from the longest prefix of its block hashes in the prefix cache."""
        hashes = r.hashes
        assert hashes is not None
        pc = self._pc_blocks
        k = 0
        for h in hashes:
            if h not in pc:
                break
            k += 1
        cached = k * self._hash_bs
        if cached >= r.prompt:
            cached = r.prompt - 1
        r.cached = cached - cached % self.config.block_size
        r.computed = r.cached

    def _prefix_insert(self, hashes: tuple[int, ...]) -> None:
        """Caches (or refreshes) a scheduled request's block hashes; the LRU end gets its deepest
        blocks, so a prefix is evicted tail first (as vLLM frees a request's blocks)."""
        pc = self._pc_blocks
        for h in reversed(hashes):
            if h in pc:
                pc.move_to_end(h)
            else:
                pc[h] = None
        cap = self._pc_capacity
        while len(pc) > cap:
            pc.popitem(last=False)

    @property
    def prefix_cache_blocks(self) -> int:
        """Block hashes held in the prefix cache (traces with block hashes only)."""
        return len(self._pc_blocks)

    def _decide_fate(self, r: _Req) -> None:
        """At the first token: does this request end early (ERROR / ABORT / REPETITION)?"""
        if r.reason is FinishReason.ERROR:
            return  # recorded as failed in its trace: already decided
        w = self.workload
        u = self._u.next()
        p = self._error_p
        if u < p:
            reason = FinishReason.ERROR
        elif u < (p := p + w.abort_fraction + self._abort_p * (1.0 - p - w.abort_fraction)):
            reason = FinishReason.ABORT
        elif u < p + w.repetition_fraction:
            reason = FinishReason.REPETITION
        else:
            return
        r.reason = reason
        r.target = 1 + int(self._u.next() * r.target)
        if r.target > r.max_tokens:
            r.target = r.max_tokens

    def _preempt_newest(self) -> _Req:
        r, _ = self._running.popitem()
        self._used -= r.blocks
        r.blocks = 0
        r.epoch += 1
        if r.state == DECODE:
            r.gen = r.gen0 + (self._pstep - r.sync)
            r.last_ts = self._prev_now  # its latest token came with the latest step
            self._ctx_tokens -= r.prompt + r.gen
            self._n_decode -= 1
        else:
            self._prefilling.remove(r)
        r.state = WAITING
        r.n_tokens = r.prompt + r.gen
        r.computed = r.cached
        r.preemptions += 1
        self.preemptions += 1
        self._waiting.appendleft(r)
        return r

    def _start_decode(self, r: _Req, s: int) -> None:
        r.state = DECODE
        r.gen0 = r.gen
        r.sync = s
        self._n_decode += 1
        self._ctx_tokens += r.prompt + r.gen
        fin = s + r.target - r.gen
        r.fin_step = fin
        ep = r.epoch
        self._fin_due.setdefault(fin, []).append((r, ep))
        grow = s + r.blocks * self.config.block_size - (r.prompt + r.gen) + 1
        if grow <= fin:
            self._grow_due.setdefault(grow, []).append((r, ep))

    def _finish(self, r: _Req, now: float, s: int, out: list) -> None:
        if r.state == DECODE:
            r.gen = r.gen0 + (s - r.sync)
            self._n_decode -= 1
            self._ctx_tokens -= r.prompt + r.gen
        r.state = DONE
        r.epoch += 1
        del self._running[r]
        del self._live[r.rid]
        self._used -= r.blocks
        r.blocks = 0
        r.last_ts = now
        gen = r.gen
        queued = r.scheduled_ts - r.arrival
        prefill = r.first_ts - r.scheduled_ts
        decode = now - r.first_ts
        self.finished += 1
        self.finished_by_reason[r.reason] += 1
        out.append(self._mk_fin(
            r.reason, f"req-{r.rid}", now - r.arrival, r.prompt, gen, r.max_tokens,
            queued, prefill, now - r.scheduled_ts, decode,
            decode / (gen - 1) if gen > 1 else 0.0, r.cached, r.preemptions,
        ))

    def _mk_fin(self, reason: FinishReason, *args: Any) -> Any:
        return self.stats_factory.finished_request(reason, *args)

    # ------------------------------------------------------------------ actions (between steps)

    def submit(self, command: Callable[[], Any], future: Future | None = None) -> Future:
        """Queue ``command()`` to run at the next step boundary and return the Future of its result
        (thread-safe: the way another thread acts on a running simulation). A command that returns
        :data:`DEFERRED` resolves ``future`` itself later (a ``"wait"`` pause, when drained). Called
        from the thread inside :meth:`run` (its callbacks run between steps), it applies at once."""
        fut: Future = Future() if future is None else future
        self._commands.append((command, fut))
        if self._owner_thread is not None and threading.get_ident() == self._owner_thread:
            self.apply_pending()
        return fut

    def apply_pending(self) -> int:
        """Run the queued commands in order (``step()`` calls this at its start); returns how many
        ran. A dead engine fails them with :class:`SimulatedEngineDeadError`."""
        commands = self._commands
        n = 0
        while commands:
            command, fut = commands.popleft()
            if not fut.set_running_or_notify_cancel():
                continue  # the caller gave up before the boundary
            n += 1
            try:
                if self._dead is not None:
                    raise SimulatedEngineDeadError(f"the simulated engine is dead: {self._dead}")
                result = command()
            except Exception as exc:
                fut.set_exception(exc)
                continue
            if result is not DEFERRED:
                fut.set_result(result)
        return n

    @property
    def owner_thread(self) -> int | None:
        """The id of the thread inside :meth:`run` (None outside it)."""
        return self._owner_thread

    def abort(self, request_ids: str | Iterable[str]) -> int:
        """Abort unfinished requests by id (``"req-N"``, as in ``FinishedRequestStats.request_id``);
        unknown or finished ids are ignored, as vLLM does. They finish with ABORT in the next stats.
        Aborting every running request (at least one) drops the batch: the ``restart`` remedy."""
        ids = (request_ids,) if isinstance(request_ids, str) else request_ids
        live = self._live
        chosen: dict[int, _Req] = {}
        for rid in ids:
            if not isinstance(rid, str):
                raise TypeError(f"abort: request ids are strings like 'req-12', got {rid!r}")
            num = rid[4:]
            if rid.startswith("req-") and num.isdigit() and int(num) in live:
                chosen[int(num)] = live[int(num)]
        n_running = len(self._running)
        drops_batch = n_running > 0 and sum(1 for r in chosen.values() if r.state != WAITING) == n_running
        self._abort_reqs(list(chosen.values()))
        if drops_batch:
            self._remedy(Remedy.RESTART, "abort(every running request)")
        return len(chosen)

    def abort_all(self) -> int:
        """Abort every unfinished request, running and queued (the ``restart`` remedy); returns how many."""
        n = self._abort_reqs(list(self._live.values()))
        self._remedy(Remedy.RESTART, "abort_all()")
        return n

    def unfinished_request_ids(self) -> list[str]:
        """Ids of the requests running or queued now, oldest first."""
        return [f"req-{rid}" for rid in self._live]

    def get_num_unfinished_requests(self) -> int:
        """Requests running or queued (what ``AsyncLLM.get_num_unfinished_requests()`` counts)."""
        return len(self._live)

    def pause_generation(
        self, mode: PauseMode = "abort", clear_cache: bool = True, on_complete: Callable[[BaseException | None], Any] | None = None,
    ) -> bool:
        """Stop scheduling new requests (they queue). ``"abort"``: abort every request first
        (``restart`` remedy); ``"wait"``: the running requests go on until done; ``"keep"``: freeze
        everything. Once complete (at once, or for ``"wait"`` when the running requests have
        finished) ``clear_cache`` resets the prefix cache, preempting any running request, then
        ``on_complete(None)`` runs (``on_complete(error)`` if the engine died first). Returns
        whether the pause is complete now."""
        if mode not in PAUSE_MODES:
            raise ValueError(f"Invalid pause mode: {mode!r}; one of {', '.join(PAUSE_MODES)}")
        action = f"pause_generation(mode={mode!r})"
        if mode == "abort":
            self._abort_reqs(list(self._live.values()))
            self._remedy(Remedy.RESTART, action)
        self._pause = PAUSED_ALL if mode == "keep" else PAUSED_NEW
        self._update_gate()
        then: list[Callable[[BaseException | None], Any]] = []
        if clear_cache:
            then.append(lambda err: None if err is not None else self._reset_caches(action))
        if on_complete is not None:
            then.append(on_complete)
        if mode == "wait" and self._running:
            self._pause_waiters = (self._pause_waiters or []) + then
            return False
        self._complete_pause(None, then)
        return True

    def _complete_pause(self, error: BaseException | None, extra: Sequence[Callable[[BaseException | None], Any]] = ()) -> None:
        waiters = (self._pause_waiters or []) + list(extra)
        self._pause_waiters = None
        for fn in waiters:
            fn(error)

    def _reset_caches(self, action: str) -> None:
        """What a completed pause with ``clear_cache`` does (vLLM's ``_reset_caches``)."""
        self.reset_prefix_cache(reset_running_requests=True, action=action)
        self.reset_mm_cache()

    def resume_generation(self) -> None:
        """Schedule queued requests again. Like vLLM, refused while a ``"wait"`` pause still drains."""
        if self._pause_waiters is not None:
            raise RuntimeError("resume_generation called while a pause is still in flight; wait for the pause to complete first")
        self._pause = UNPAUSED
        self._update_gate()

    def is_paused(self) -> bool:
        return self._pause != UNPAUSED

    def sleep(self, level: int = 1, mode: PauseMode = "abort", on_complete: Callable[[BaseException | None], Any] | None = None) -> bool:
        """Pause (``mode`` as in :meth:`pause_generation`), then for ``level >= 1`` discard the KV
        cache and offload the weights (the ``sleep`` remedy: GPU memory given back): no step runs
        until :meth:`wake_up`. Level 0 only pauses. Returns whether it is asleep now (``"wait"``
        sleeps once the running requests are done)."""
        if isinstance(level, bool) or not isinstance(level, int) or level < 0:
            raise ValueError(f"sleep: level must be an integer >= 0, got {level!r}")

        def asleep(error: BaseException | None) -> None:
            if error is None and level >= 1:
                if self._running:  # cannot happen: the pause aborted, drained or (clear_cache) preempted them
                    raise AssertionError(f"sleep: {len(self._running)} requests still hold KV blocks")
                self._asleep = set(SLEEP_TAGS)
                self.sleep_level = level
                self._update_gate()
                self._remedy(Remedy.SLEEP, f"sleep(level={level})")
            if on_complete is not None:
                on_complete(error)

        return self.pause_generation(mode, clear_cache=level >= 1, on_complete=asleep)

    def wake_up(self, tags: list[str] | None = None) -> bool:
        """Wake the parts named in ``tags`` (``"weights"``, ``"kv_cache"``; None: all; ``"scheduling"``
        alone resumes a level-0 sleep). Once all are awake, scheduling resumes (after
        ``wake_up_s[level]`` of weight reloading, during which no step runs). Returns whether fully awake."""
        if tags is not None:
            if isinstance(tags, str):
                raise TypeError("wake_up: tags is a list of names, e.g. ['weights']")
            tags = [t for t in tags if t != "scheduling"]
            unknown = sorted(set(tags) - set(SLEEP_TAGS))
            if unknown:
                raise ValueError(f"wake_up: unknown tags {unknown}; known: {', '.join(SLEEP_TAGS)}, scheduling")
        if tags is None or tags:
            woke = self._asleep & (set(SLEEP_TAGS) if tags is None else set(tags))
            if "weights" in woke:
                reload_s = self.wake_up_s.get(self.sleep_level, max(self.wake_up_s.values()))
                self._waking_until = max(self._waking_until, self.clock() + reload_s)
            self._asleep -= woke
        fully_awake = not self._asleep
        if fully_awake:
            self.sleep_level = 0
            if self._pause_waiters is None:
                self._pause = UNPAUSED
        self._update_gate()
        return fully_awake

    def is_sleeping(self) -> bool:
        """Asleep, or paused (vLLM: ``is_scheduler_paused() or executor.is_sleeping``)."""
        return bool(self._asleep) or self._pause != UNPAUSED

    @property
    def waking_up(self) -> bool:
        """Weights still reloading after :meth:`wake_up` (no step runs)."""
        return self.clock() < self._waking_until

    def reset_prefix_cache(self, reset_running_requests: bool = False, reset_connector: bool = False, *, action: str | None = None) -> bool:
        """Clear the prefix cache (the ``reset_prefix_cache`` remedy). Refused (False) while
        requests run and hold cached blocks, unless ``reset_running_requests`` first preempts them
        back to the queue (to be recomputed in full). Queued requests lose their cache hits; the
        synthetic hit model rewarms over ``prefix_rewarm_s``. There is no KV connector:
        ``reset_connector`` resets nothing and does not fail, as in vLLM without one."""
        del reset_connector
        if self._running:
            if not reset_running_requests:
                return False
            while self._running:
                self._preempt_newest()  # newest first: they return to the queue in FIFO order
        for r in self._waiting:
            if r.scheduled_ts != 0.0 or r.hashes is None:
                r.computed = 0  # its cached blocks are gone (a hashed request not scheduled yet looks up the empty cache)
                if r.scheduled_ts == 0.0:
                    r.cached = 0
        self._pc_blocks.clear()
        self._pc_reset_at = self.clock()
        self.prefix_cache_resets += 1
        self._remedy(Remedy.RESET_PREFIX_CACHE, action or f"reset_prefix_cache(reset_running_requests={reset_running_requests})")
        return True

    def reset_mm_cache(self) -> None:
        """Counted only: the simulated requests carry no multimodal inputs."""
        self.mm_cache_resets += 1

    def rollback(self) -> None:
        """The deployment-rollback hook: ends ``bad_deployment`` faults (the ``rollback`` remedy).
        Modelled as a swap at the step boundary; requests in flight carry on."""
        self._remedy(Remedy.ROLLBACK, "rollback()")

    def kill(self, reason: str = "killed") -> None:
        """The engine process dies: every unfinished request is lost (ERROR; no stats, the output
        path is gone), later arrivals are refused, commands fail and :meth:`check_health` raises."""
        if self._dead is not None:
            return
        self._abort_reqs(list(self._live.values()), reason=FinishReason.ERROR, report=False)
        self._dead = str(reason)
        self._update_gate()
        if self._pause_waiters is not None:
            self._complete_pause(SimulatedEngineDeadError(f"the simulated engine died while pausing: {reason}"))

    @property
    def errored(self) -> bool:
        return self._dead is not None

    @property
    def dead_error(self) -> SimulatedEngineDeadError:
        return SimulatedEngineDeadError(f"the simulated engine is dead: {self._dead}")

    def check_health(self) -> None:
        """Raise :class:`SimulatedEngineDeadError` if the engine is dead; a stall is not death."""
        if self._dead is not None:
            raise self.dead_error

    def _update_gate(self) -> None:
        self._gate = bool(self._pause or self._asleep or self._dead is not None or self._waking_until > -math.inf)

    def _held(self, t0: float) -> bool:
        """Whether no step may run at ``t0``: dead, asleep, frozen, reloading weights, or paused with nothing running."""
        if self._dead is not None or self._asleep or self._pause == PAUSED_ALL:
            return True
        if self._waking_until > -math.inf:
            if t0 < self._waking_until:
                return True
            self._waking_until = -math.inf
            self._update_gate()
        return bool(self._pause) and not self._running

    def _hold_tick(self, t0: float) -> tuple[Any, Any] | None:
        """A tick without a step (``stall_tick_s``); completes a ``"wait"`` pause once drained."""
        if self._pause_waiters is not None and not self._running:
            self._complete_pause(None)
        dt = self.config.stall_tick_s
        if t0 < self._waking_until:
            dt = min(dt, self._waking_until - t0)
        self.clock.advance(dt)
        self.paused_ticks += 1
        return self._flush_aborted() if self._pending_fin else None

    def _flush_aborted(self) -> tuple[Any, Any]:
        """Stats for a tick without tokens that reports aborted requests (vLLM sends abort outputs at once)."""
        f = self.stats_factory
        finished, self._pending_fin = self._pending_fin, []
        sched_stats = f.scheduler_stats(
            len(self._running), len(self._waiting), self._used / self.kv_budget_blocks, f.prefix_cache_stats(0, 0, 0), self._pstep,
            f.iteration_details(iteration_index=self._pstep, num_ctx_requests=0, num_ctx_tokens=0, num_generation_requests=0,
                                num_generation_tokens=0, elapsed_ms=0.0),
        )
        iter_stats = f.iteration_stats(self.clock(), 0, 0, self.preemptions - self._reported_preemptions, [], [], finished)
        self._reported_preemptions = self.preemptions
        return sched_stats, iter_stats

    def _abort_reqs(self, reqs: list[_Req], reason: FinishReason = FinishReason.ABORT, report: bool = True) -> int:
        """Finish ``reqs`` now with ``reason``: free their blocks, drop them from the queues; with
        ``report`` their FinishedRequestStats go out with the next stats. Returns how many."""
        now = self.clock()
        s = self._pstep
        running = self._running
        n = 0
        drop_waiting = False
        for r in reqs:
            st = r.state
            if st == DONE:
                continue
            n += 1
            gen = r.generated(s)
            if st == WAITING:
                drop_waiting = True
            else:
                if st == DECODE:
                    self._n_decode -= 1
                    self._ctx_tokens -= r.prompt + gen
                else:
                    self._prefilling.remove(r)
                del running[r]
                self._used -= r.blocks
                r.blocks = 0
            r.gen = gen
            r.state = DONE
            r.epoch += 1  # its pending grow / finish events are void
            r.reason = reason
            del self._live[r.rid]
            self.finished += 1
            self.finished_by_reason[reason] += 1
            if reason is FinishReason.ABORT:
                self.aborted += 1
            if report:
                scheduled = r.scheduled_ts if r.scheduled_ts != 0.0 else now
                first = r.first_ts if r.first_ts != 0.0 else now
                decode = now - first
                self._pending_fin.append(self._mk_fin(
                    reason, f"req-{r.rid}", now - r.arrival, r.prompt, gen, r.max_tokens,
                    scheduled - r.arrival, first - scheduled, now - scheduled, decode,
                    decode / (gen - 1) if gen > 1 else 0.0, r.cached if r.scheduled_ts != 0.0 else 0, r.preemptions,
                ))
        if drop_waiting:
            kept = [r for r in self._waiting if r.state == WAITING]
            self._waiting.clear()
            self._waiting.extend(kept)
        return n

    def _remedy(self, remedy: Remedy, action: str) -> None:
        """``remedy`` took effect now: end the active faults it cures (they are not applied again),
        release memory leaked by the leaks it cures, and log it in ``remedies_applied``."""
        now = self.clock()
        el = now - self.start_time
        faults = self.faults
        cleared = [i for i in sorted(self._active) if remedy in (faults[i].remedy or ())]
        for i, f in enumerate(faults):
            if f.kind is FaultKind.MEMORY_LEAK and f.start_s < el and remedy in (f.remedy or ()):
                self._leak_released[i] = el
        if cleared:
            for i in cleared:
                self._remedied[i] = el
                j = self._log_index.pop(i)
                self.fault_log[j] = self.fault_log[j]._replace(end_time=now, remedy=remedy)
            self._active = self._active.difference(cleared)
            self._set_modifiers()
        self.remedies_applied.append(RemedyEvent(now, action, remedy, tuple(faults[i] for i in cleared)))

    # ------------------------------------------------------------------ the step

    def step(self) -> tuple[Any, Any] | None:
        """Run one engine step: advance the clock by its duration and return
        ``(scheduler_stats, iteration_stats)``; None when no tokens were produced (a stall, or
        an idle engine with nothing to do), in which case the clock still advances."""
        cfg = self.config
        clock = self.clock
        t0 = clock()
        el = t0 - self.start_time
        if el >= self._next_boundary:
            self._update_faults(el, t0)
        if self._commands:
            self.apply_pending()  # the step boundary: actions queued by other threads take effect
        buf = self._arr_buf
        self._stream.pull(el, self._rate_mult, self._prompt_mult, buf)
        if buf:
            self._add_arrivals(buf)
            buf.clear()
        if self._stalled:
            clock.advance(cfg.stall_tick_s)
            self.stall_ticks += 1
            return self._flush_aborted() if self._pending_fin else None
        running = self._running
        waiting = self._waiting
        if self._gate and self._held(t0):
            return self._hold_tick(t0)
        if not running and not waiting:
            dt = self._stream.next_arrival_hint() - el
            clock.advance(min(max(dt, 1e-4), cfg.idle_tick_max_s))
            self.idle_ticks += 1
            return self._flush_aborted() if self._pending_fin else None

        s = self._pstep + 1
        bs = cfg.block_size
        budget_blocks = self.kv_budget_blocks
        free = budget_blocks - self._used
        preempted = self.preemptions

        # 1. decoding requests that need one more block this step
        due = self._grow_due.pop(s, None)
        if due:
            if len(due) > 1:
                due.sort(key=lambda e: e[0].run_seq)
            for r, ep in due:
                if r.epoch != ep:
                    continue
                while free < 1:
                    before = self._used
                    victim = self._preempt_newest()
                    free += before - self._used
                    if victim is r:
                        break
                if r.epoch != ep:
                    continue
                r.blocks += 1
                self._used += 1
                free -= 1
                nxt = s + bs
                if nxt <= r.fin_step:
                    self._grow_due.setdefault(nxt, []).append((r, ep))

        # 2. prefill of running requests, in order
        budget = cfg.max_num_batched_tokens - self._n_decode
        sched: list[_Req] = []
        prefill_tokens = 0
        for r in self._prefilling[:] if self._prefilling else ():
            if budget <= 0:
                break
            if r.state != PREFILL:
                continue
            num_new = r.n_tokens - r.computed
            if num_new > budget:
                num_new = budget
            after = r.computed + num_new
            if after == r.n_tokens:
                after += 1
            need = -(-after // bs) - r.blocks
            self_preempted = False
            while need > free:
                before = self._used
                victim = self._preempt_newest()
                free += before - self._used
                if victim is r:
                    self_preempted = True
                    break
            if self_preempted:
                break
            r.blocks += need
            self._used += need
            free -= need
            r.sched = num_new
            budget -= num_new
            prefill_tokens += num_new
            sched.append(r)

        # 3. admit waiting requests (FIFO) unless this step preempted or the engine is paused
        pc_requests = pc_queries = pc_hits = 0
        if self.preemptions == preempted and not self._pause:
            max_seqs = self._max_seqs
            while waiting and budget > 0 and len(running) < max_seqs:
                r = waiting[0]
                if r.hashes is not None and r.scheduled_ts == 0.0:
                    self._prefix_lookup(r)
                num_new = r.n_tokens - r.computed
                if num_new > budget:
                    num_new = budget
                after = r.computed + num_new
                if after == r.n_tokens:
                    after += 1
                need = -(-after // bs)
                if need > free:
                    break
                waiting.popleft()
                running[r] = None
                self._run_seq += 1
                r.run_seq = self._run_seq
                r.state = PREFILL
                self._prefilling.append(r)
                if r.scheduled_ts == 0.0:
                    r.scheduled_ts = t0
                if r.preemptions == 0:
                    pc_requests += 1
                    pc_queries += r.prompt
                    pc_hits += r.cached
                    if r.hashes is not None:
                        self._prefix_insert(r.hashes)
                r.blocks = need
                self._used += need
                free -= need
                r.sched = num_new
                budget -= num_new
                prefill_tokens += num_new
                sched.append(r)

        n_dec = self._n_decode
        if n_dec == 0 and not sched:
            # nothing fits (cannot happen with a sane config); let time pass
            clock.advance(cfg.stall_tick_s)
            self.idle_ticks += 1
            return self._flush_aborted() if self._pending_fin else None

        # 4. the step's duration
        step_s = (
            (cfg.step_base_s + cfg.decode_s_per_seq * n_dec + cfg.attention_s_per_ctx_token * self._ctx_tokens)
            * self._decode_mult
            + cfg.prefill_s_per_token * prefill_tokens
        ) * self._step_mult * self._jit.next()
        clock.advance(step_s)
        now = clock()
        self._pstep = s
        self.steps += 1
        self.last_step_s = step_s

        # 5. outputs: one token per decoding request, first/resumed tokens of completed prefills
        itl = [now - self._prev_now] * n_dec if n_dec else []
        ttft: list[float] = []
        finished: list[Any] = []
        if self._pending_fin:
            finished, self._pending_fin = self._pending_fin, finished
        gen_tokens = n_dec
        prompt_tokens = 0
        self._ctx_tokens += n_dec
        for r in sched:
            r.computed += r.sched
            if r.computed != r.n_tokens:
                continue
            self._prefilling.remove(r)
            r.gen += 1
            gen_tokens += 1
            if r.first_ts == 0.0:
                r.first_ts = now
                ttft.append(now - r.arrival)
                prompt_tokens += r.prompt
                self._decide_fate(r)
            else:
                itl.append(now - r.last_ts)
            r.last_ts = now
            if r.gen >= r.target:
                self._finish(r, now, s, finished)
            else:
                self._start_decode(r, s)
        due = self._fin_due.pop(s, None)
        if due:
            for r, ep in due:
                if r.epoch == ep:
                    self._finish(r, now, s, finished)
        self._prev_now = now
        self.generation_tokens += gen_tokens

        f = self.stats_factory
        details = f.iteration_details(
            iteration_index=s,
            num_ctx_requests=len(sched),
            num_ctx_tokens=prefill_tokens,
            num_generation_requests=n_dec,
            num_generation_tokens=gen_tokens,
            elapsed_ms=1000.0 * step_s,
        )
        sched_stats = f.scheduler_stats(
            len(running),
            len(waiting),
            self._used / budget_blocks,
            f.prefix_cache_stats(pc_requests, pc_queries, pc_hits),
            s,
            details,
        )
        iter_stats = f.iteration_stats(
            now, gen_tokens, prompt_tokens, self.preemptions - self._reported_preemptions, ttft, itl, finished,
        )
        self._reported_preemptions = self.preemptions
        return sched_stats, iter_stats

    # ------------------------------------------------------------------ loop

    def run(
        self,
        duration_s: float | None = None,
        *,
        on_step: Callable[[Any, Any], Any] | None = None,
        on_tick: Callable[[EngineSimulator], Any] | None = None,
    ) -> RunSummary:
        """Step for ``duration_s`` more engine seconds (default: until the scenario's
        ``duration_s`` since the start). ``on_step(scheduler_stats, iteration_stats)`` is called
        for every step that produced stats (like ``StatLoggerBase.record``); ``on_tick(sim)``
        after every step, stalls and idle ticks included (for timers and evaluators)."""
        clock = self.clock
        end = self.start_time + self.scenario.duration_s if duration_s is None else clock() + duration_s
        steps0, stall0, idle0, paused0 = self.steps, self.stall_ticks, self.idle_ticks, self.paused_ticks
        t_engine0 = clock()
        step = self.step
        stats_steps = 0
        wall0 = time.perf_counter()
        self._owner_thread = threading.get_ident()  # commands submitted from the callbacks apply at once
        try:
            while clock() < end:
                out = step()  # applies the commands queued by other threads first
                if out is not None:
                    stats_steps += 1
                    if on_step is not None:
                        on_step(out[0], out[1])
                if on_tick is not None:
                    on_tick(self)
        finally:
            self._owner_thread = None
        wall = time.perf_counter() - wall0
        return RunSummary(
            engine_s=clock() - t_engine0,
            wall_s=wall,
            steps=(self.steps - steps0) + (self.stall_ticks - stall0) + (self.idle_ticks - idle0) + (self.paused_ticks - paused0),
            stats_steps=stats_steps,
            stall_ticks=self.stall_ticks - stall0,
            idle_ticks=self.idle_ticks - idle0,
            arrived=self.arrived,
            finished=self.finished,
            running=len(self._running),
            waiting=len(self._waiting),
            finished_by_reason={str(k): v for k, v in sorted(self.finished_by_reason.items())},
            rejected_too_long=self.rejected_too_long,
            rejected_by_admission=self.rejected_by_admission,
            paused_ticks=self.paused_ticks - paused0,
        )


__all__ = [
    "DEFERRED", "PAUSE_MODES", "ArrivalStats", "EngineSimulator", "FaultEvent", "PauseMode", "RemedyEvent", "RunSummary",
    "SimulatedEngineDeadError",
]
