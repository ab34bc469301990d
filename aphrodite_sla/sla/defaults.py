"""The built-in SLAs: the serving set a zero-code install runs, and the seed's seven.

The **serving** set is what an LLM deployment can hold on any model and load: time to first
token (what a user waits before anything happens), time per output token (how fast the answer
streams) and engine errors. Whole-request latency is not in it: it grows with the length of the
answer the user asked for (a healthy server takes seconds for a few hundred tokens), so a 200 ms
p95 would page a healthy fleet forever; throughput minima depend on demand, not health; high KV
cache and GPU use are what a well-loaded engine looks like. The bounds are generous defaults for
interactive serving; ``aphrodite-sla calibrate`` (or the configuration file) sets them from what the
deployment shows healthy.

The **seed** set is the specification's table, mapped onto the series an inference engine records.

``request_latency_p95`` and ``request_latency_p99`` are two SLAs over one raw series
(``request_latency_ms``, one sample per finished request), so one exact selection pass serves both.
``error_rate_percent`` reads per-request outcomes recorded as 0 (ok) or 100 (error): its mean is the
error rate in percent. Sample rates size the ring buffers (window × rate samples): they are the
highest rate at which the whole window stays in memory, and can be raised per deployment.
"""
from __future__ import annotations

from aphrodite_sla.sla.threshold import Direction, SLAThreshold, Statistic

REQUEST_LATENCY_MS = "request_latency_ms"
REQUEST_OUTCOME = "request_error_percent"
TTFT_MS = "ttft_ms"
TPOT_MS = "tpot_ms"


def serving_thresholds() -> list[SLAThreshold]:
    """TTFT p95 2 s ±25% and time per output token p95 100 ms ±25% over 5 min (one sample per
    request), engine errors 0.1% ±400% (the seed's error SLA, objective 99.9%)."""
    return [
        SLAThreshold(
            "ttft_p95", 2000.0, 25.0, 5, statistic=Statistic.P95, source_metric=TTFT_MS, unit="ms",
            description="95th percentile time to first token", sample_rate_hz=200.0,
        ),
        SLAThreshold(
            "tpot_p95", 100.0, 25.0, 5, statistic=Statistic.P95, source_metric=TPOT_MS, unit="ms",
            description="95th percentile time per output token (per request)", sample_rate_hz=200.0,
        ),
        _error_rate(),
    ]


def _error_rate() -> SLAThreshold:
    return SLAThreshold(
        "error_rate_percent", 0.1, 400.0, 5, statistic=Statistic.MEAN, source_metric=REQUEST_OUTCOME,
        unit="%", description="Requests finished with an error, in percent", sample_rate_hz=200.0,
        objective_percent=99.9,
    )


def default_thresholds() -> list[SLAThreshold]:
    """The seed's defaults: 200 ms p95 ±25% and 500 ms p99 ±50% over 5 min, ≥100 tokens/s ±20% over
    3 min, 0.1% errors ±400% over 5 min, 85% GPU ±10% over 10 min, 80% KV cache ±20% over 5 min,
    85% convergence ±15% over 15 min."""
    return [
        SLAThreshold(
            "request_latency_p95", 200.0, 25.0, 5, statistic=Statistic.P95, source_metric=REQUEST_LATENCY_MS,
            unit="ms", description="95th percentile end-to-end request latency", sample_rate_hz=200.0,
        ),
        SLAThreshold(
            "request_latency_p99", 500.0, 50.0, 5, statistic=Statistic.P99, source_metric=REQUEST_LATENCY_MS,
            unit="ms", description="99th percentile end-to-end request latency", sample_rate_hz=200.0,
        ),
        SLAThreshold(
            "tokens_per_second", 100.0, 20.0, 3, direction=Direction.LOWER, statistic=Statistic.MEAN,
            unit="tokens/s", description="Generation throughput (minimum)", sample_rate_hz=5.0,
        ),
        _error_rate(),
        SLAThreshold(
            "gpu_utilization_percent", 85.0, 10.0, 10, statistic=Statistic.MEAN, unit="%",
            description="GPU utilisation (sustained saturation)", sample_rate_hz=1.0,
        ),
        SLAThreshold(
            "kv_cache_usage_percent", 80.0, 20.0, 5, statistic=Statistic.MEAN, unit="%",
            description="KV-cache usage", sample_rate_hz=20.0,
        ),
        SLAThreshold(
            "echo_evolution_convergence", 85.0, 15.0, 15, direction=Direction.LOWER, statistic=Statistic.MEAN,
            unit="%", description="Deep Tree Echo evolution convergence (minimum)", sample_rate_hz=1.0,
        ),
    ]
