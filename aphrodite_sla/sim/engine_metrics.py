"""What the simulated engine's own /metrics would show: vLLM's PrometheusStatLogger families with
vLLM's names and default buckets, in a registry of their own.

Why: dashboards put the engine's histogram-derived estimates beside our exact quantiles; with a
simulator standing in for the engine, something must play the engine's exporter too. Only the
simulator uses this module: in a real server the engine exports these itself (and our collectors
never use the ``vllm:`` prefix there).
"""
from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# vLLM v1 default buckets (vllm/v1/metrics/buckets.py), seconds.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                           240.0, 480.0, 960.0, 1920.0, 7680.0)


class SimulatedEngineMetrics:
    """Observes each simulated step like vLLM's PrometheusStatLogger (a subset of its families)."""

    def __init__(self, registry: CollectorRegistry, model_name: str) -> None:
        labels = ["model_name", "engine"]
        self._labels = (model_name, "0")
        kw: dict[str, Any] = {"labelnames": labels, "registry": registry}
        self.running = Gauge("vllm:num_requests_running", "Number of requests in model execution batches.", **kw)
        self.waiting = Gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", **kw)
        self.kv = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", **kw)
        self.gen = Counter("vllm:generation_tokens", "Number of generation tokens processed.", **kw)
        self.prompt = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.", **kw)
        self.success = Counter(
            "vllm:request_success", "Count of successfully processed requests.",
            labelnames=labels + ["finished_reason"], registry=registry,
        )
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", buckets=TTFT_BUCKETS, **kw)
        self.itl = Histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", buckets=ITL_BUCKETS, **kw)
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", buckets=REQUEST_LATENCY_BUCKETS, **kw
        )
        lv = self._labels
        self._running, self._waiting, self._kv = self.running.labels(*lv), self.waiting.labels(*lv), self.kv.labels(*lv)
        self._gen, self._prompt = self.gen.labels(*lv), self.prompt.labels(*lv)
        self._ttft, self._itl, self._e2e = self.ttft.labels(*lv), self.itl.labels(*lv), self.e2e.labels(*lv)

    def record(self, scheduler_stats: Any, iteration_stats: Any) -> None:
        if scheduler_stats is not None:
            self._running.set(scheduler_stats.num_running_reqs)
            self._waiting.set(scheduler_stats.num_waiting_reqs)
            self._kv.set(scheduler_stats.kv_cache_usage)
        if iteration_stats is None:
            return
        self._gen.inc(iteration_stats.num_generation_tokens)
        self._prompt.inc(iteration_stats.num_prompt_tokens)
        for v in iteration_stats.time_to_first_tokens_iter:
            self._ttft.observe(v)
        for v in iteration_stats.inter_token_latencies_iter:
            self._itl.observe(v)
        for req in iteration_stats.finished_requests:
            self._e2e.observe(req.e2e_latency)
            reason = getattr(req.finish_reason, "name", str(req.finish_reason)).lower()
            self.success.labels(*self._labels, reason).inc()
