"""Engine stats objects with exactly vLLM v1's names (``vllm/v1/metrics/stats.py``,
``vllm/v1/engine.FinishReason``), and a factory that builds the real vLLM objects when asked.

Our classes are plain slotted dataclasses: cheap to build once per simulated step. Field names
and units (seconds, KV usage 0-1) follow vLLM v1, so a StatLogger cannot tell them apart when it
reads them with ``getattr``. vLLM is imported only inside :class:`StatsFactory` when
``prefer_real=True``; importing this module never imports vllm (or torch).
"""
from __future__ import annotations

import dataclasses
import enum
import inspect
from dataclasses import dataclass, field
from typing import Any

FINISH_REASON_STRINGS = ("stop", "length", "abort", "error", "repetition")


class FinishReason(enum.IntEnum):
    """Why a request finished; the same values and ``str()`` as vLLM's ``FinishReason``."""

    STOP = 0
    LENGTH = 1
    ABORT = 2
    ERROR = 3
    REPETITION = 4

    def __str__(self) -> str:
        return FINISH_REASON_STRINGS[self.value]


@dataclass(slots=True)
class PrefixCacheStats:
    """Per-step delta of prefix-cache lookups (``requests``; ``queries``/``hits`` in tokens)."""

    reset: bool = False
    requests: int = 0
    queries: int = 0
    hits: int = 0


@dataclass(slots=True)
class SchedulerIterationDetails:
    """Scheduler-side details of one engine iteration (newer vLLM only)."""

    iteration_index: int = 0
    num_ctx_requests: int = 0
    num_ctx_tokens: int = 0
    num_generation_requests: int = 0
    num_generation_tokens: int = 0
    elapsed_ms: float = 0.0
    num_encoder_inputs: int = 0
    num_encoder_output_tokens: int = 0
    is_dummy: bool = False


@dataclass(slots=True)
class SchedulerStats:
    """Scheduler state after one step (vLLM v1 ``SchedulerStats``)."""

    num_running_reqs: int = 0
    num_waiting_reqs: int = 0
    num_skipped_waiting_reqs: int = 0
    step_counter: int = 0
    current_wave: int = 0
    kv_cache_usage: float = 0.0
    iteration_details: SchedulerIterationDetails | None = None
    prefix_cache_stats: PrefixCacheStats = field(default_factory=PrefixCacheStats)
    connector_prefix_cache_stats: PrefixCacheStats | None = None
    kv_cache_eviction_events: list = field(default_factory=list)
    spec_decoding_stats: Any = None
    kv_connector_stats: dict | None = None
    waiting_lora_adapters: dict = field(default_factory=dict)
    running_lora_adapters: dict = field(default_factory=dict)
    cudagraph_stats: Any = None
    perf_stats: Any = None


@dataclass(slots=True)
class FinishedRequestStats:
    """One finished request (vLLM v1 ``FinishedRequestStats``); times in seconds.

    ``e2e_latency = queued_time + inference_time`` and ``inference_time = prefill_time +
    decode_time``; ``mean_time_per_output_token = decode_time / (num_generation_tokens - 1)``
    (0 for a single token), exactly as vLLM computes them.
    """

    finish_reason: FinishReason = FinishReason.STOP
    request_id: str | None = None
    e2e_latency: float = 0.0
    num_prompt_tokens: int = 0
    num_generation_tokens: int = 0
    max_tokens_param: int | None = None
    queued_time: float = 0.0
    prefill_time: float = 0.0
    inference_time: float = 0.0
    decode_time: float = 0.0
    mean_time_per_output_token: float = 0.0
    is_corrupted: bool = False
    num_cached_tokens: int = 0
    num_preemptions: int = 0


@dataclass(slots=True)
class IterationStats:
    """The outputs of one engine step (vLLM v1 ``IterationStats``).

    ``iteration_timestamp`` is the (simulated) wall clock; ``time_to_first_tokens_iter`` holds
    one TTFT (arrival to first token) per request whose first token came this step,
    ``inter_token_latencies_iter`` one latency per other token produced this step.
    """

    iteration_timestamp: float = 0.0
    num_generation_tokens: int = 0
    num_prompt_tokens: int = 0
    num_preempted_reqs: int = 0
    time_to_first_tokens_iter: list[float] = field(default_factory=list)
    inter_token_latencies_iter: list[float] = field(default_factory=list)
    finished_requests: list[FinishedRequestStats] = field(default_factory=list)
    num_corrupted_reqs: int = 0


# --------------------------------------------------------------------------- factory


def _init_params(cls: type) -> frozenset[str]:
    """Keyword names ``cls`` accepts at construction (dataclass init fields or signature)."""
    if dataclasses.is_dataclass(cls):
        return frozenset(f.name for f in dataclasses.fields(cls) if f.init)
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return frozenset()
    return frozenset(
        name
        for name, p in sig.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


class _RealBuilder:
    """Builds one real vLLM stats class defensively: passes the keywords its constructor takes,
    then sets the remaining values on attributes the object already has; drops the rest."""

    __slots__ = ("cls", "params")

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.params = _init_params(cls)

    def __call__(self, values: dict[str, Any]) -> Any:
        params = self.params
        obj = self.cls(**{k: v for k, v in values.items() if k in params})
        for k, v in values.items():
            if k in params or not hasattr(obj, k):
                continue
            try:
                setattr(obj, k, v)
            except (AttributeError, TypeError):
                pass  # read-only property (e.g. IterationStats.num_prompt_tokens); caller fixes up
        return obj


class StatsFactory:
    """Makes the stats objects the simulator hands to a StatLogger.

    ``StatsFactory()`` builds this module's dataclasses. ``StatsFactory(prefer_real=True)``
    imports ``vllm.v1.metrics.stats`` and ``vllm.v1.engine`` (only then) and builds the real
    vLLM objects, setting only the fields that exist in the installed version; when vllm is not
    importable it falls back to ours (``using_real`` tells which).
    """

    def __init__(self, prefer_real: bool = False) -> None:
        self.using_real = False
        self.import_error: str | None = None
        if prefer_real:
            try:
                from vllm.v1.engine import FinishReason as real_reason
                from vllm.v1.metrics import stats as real
            except Exception as exc:  # vllm absent or broken (torch etc.): use ours
                self.import_error = f"{type(exc).__name__}: {exc}"
            else:
                self._setup_real(real, real_reason)
                self.using_real = True

    # -- real vLLM objects --------------------------------------------------------------

    def _setup_real(self, real: Any, real_reason: Any) -> None:
        self._real_reason = real_reason
        self._b_prefix = _RealBuilder(real.PrefixCacheStats)
        self._b_sched = _RealBuilder(real.SchedulerStats)
        self._b_iter = _RealBuilder(real.IterationStats)
        self._b_fin = _RealBuilder(real.FinishedRequestStats)
        details = getattr(real, "SchedulerIterationDetails", None)
        self._b_details = _RealBuilder(details) if details is not None else None
        self._real_prompt_stats = getattr(real, "PromptTokenStats", None)

    # -- public builders ----------------------------------------------------------------

    def finish_reason(self, reason: FinishReason) -> Any:
        """Our reason, or the real enum member of the same name (its value when it lacks one)."""
        if not self.using_real:
            return reason
        member = getattr(self._real_reason, reason.name, None)
        if member is not None:
            return member
        try:
            return self._real_reason(int(reason))
        except ValueError:
            return self._real_reason(FinishReason.ABORT.value)

    def prefix_cache_stats(self, requests: int, queries: int, hits: int) -> Any:
        if not self.using_real:
            return PrefixCacheStats(False, requests, queries, hits)
        return self._b_prefix({"reset": False, "requests": requests, "queries": queries, "hits": hits})

    def iteration_details(self, **values: Any) -> Any:
        if not self.using_real:
            return SchedulerIterationDetails(**values)
        return None if self._b_details is None else self._b_details(values)

    def scheduler_stats(
        self,
        num_running_reqs: int,
        num_waiting_reqs: int,
        kv_cache_usage: float,
        prefix_cache_stats: Any,
        step_counter: int,
        iteration_details: Any = None,
    ) -> Any:
        if not self.using_real:
            return SchedulerStats(
                num_running_reqs=num_running_reqs,
                num_waiting_reqs=num_waiting_reqs,
                step_counter=step_counter,
                kv_cache_usage=kv_cache_usage,
                iteration_details=iteration_details,
                prefix_cache_stats=prefix_cache_stats,
            )
        values = {
            "num_running_reqs": num_running_reqs,
            "num_waiting_reqs": num_waiting_reqs,
            "step_counter": step_counter,
            "kv_cache_usage": kv_cache_usage,
            # vLLM before 0.10 called it gpu_cache_usage
            "gpu_cache_usage": kv_cache_usage,
            "prefix_cache_stats": prefix_cache_stats,
        }
        if iteration_details is not None:
            values["iteration_details"] = iteration_details
        return self._b_sched(values)

    def finished_request(
        self,
        finish_reason: FinishReason,
        request_id: str,
        e2e_latency: float,
        num_prompt_tokens: int,
        num_generation_tokens: int,
        max_tokens_param: int | None,
        queued_time: float,
        prefill_time: float,
        inference_time: float,
        decode_time: float,
        mean_time_per_output_token: float,
        num_cached_tokens: int,
        num_preemptions: int,
    ) -> Any:
        if not self.using_real:
            return FinishedRequestStats(
                finish_reason, request_id, e2e_latency, num_prompt_tokens, num_generation_tokens,
                max_tokens_param, queued_time, prefill_time, inference_time, decode_time,
                mean_time_per_output_token, False, num_cached_tokens, num_preemptions,
            )
        return self._b_fin({
            "finish_reason": self.finish_reason(finish_reason),
            "request_id": request_id,
            "e2e_latency": e2e_latency,
            "num_prompt_tokens": num_prompt_tokens,
            "num_generation_tokens": num_generation_tokens,
            "max_tokens_param": max_tokens_param,
            "queued_time": queued_time,
            "prefill_time": prefill_time,
            "inference_time": inference_time,
            "decode_time": decode_time,
            "mean_time_per_output_token": mean_time_per_output_token,
            "is_corrupted": False,
            "num_cached_tokens": num_cached_tokens,
            "num_preemptions": num_preemptions,
        })

    def iteration_stats(
        self,
        iteration_timestamp: float,
        num_generation_tokens: int,
        num_prompt_tokens: int,
        num_preempted_reqs: int,
        time_to_first_tokens_iter: list[float],
        inter_token_latencies_iter: list[float],
        finished_requests: list[Any],
    ) -> Any:
        if not self.using_real:
            return IterationStats(
                iteration_timestamp, num_generation_tokens, num_prompt_tokens, num_preempted_reqs,
                time_to_first_tokens_iter, inter_token_latencies_iter, finished_requests, 0,
            )
        obj = self._b_iter({
            "iteration_timestamp": iteration_timestamp,
            "num_generation_tokens": num_generation_tokens,
            "num_prompt_tokens": num_prompt_tokens,
            "num_preempted_reqs": num_preempted_reqs,
            "time_to_first_tokens_iter": time_to_first_tokens_iter,
            "inter_token_latencies_iter": inter_token_latencies_iter,
            # vLLM before 0.11 called them time_per_output_tokens_iter
            "time_per_output_tokens_iter": inter_token_latencies_iter,
            "finished_requests": finished_requests,
            "num_corrupted_reqs": 0,
        })
        if getattr(obj, "num_prompt_tokens", num_prompt_tokens) != num_prompt_tokens:
            # newer vLLM: num_prompt_tokens is a property over prompt_token_stats
            pts = getattr(obj, "prompt_token_stats", None)
            if pts is not None:
                for name in ("total", "computed"):
                    if hasattr(pts, name):
                        setattr(pts, name, num_prompt_tokens)
        return obj


__all__ = [
    "FINISH_REASON_STRINGS",
    "FinishReason",
    "FinishedRequestStats",
    "IterationStats",
    "PrefixCacheStats",
    "SchedulerIterationDetails",
    "SchedulerStats",
    "StatsFactory",
]
