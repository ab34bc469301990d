"""Where a healthy history for calibration comes from: a simulate run of a healthy scenario, or a
real Prometheus that scraped the engine (vLLM's or Aphrodite's own histograms and counters).

Both deliver what the monitor itself would judge — each SLA's statistic over its window, one value
per evaluation point — so the calibration replays the same numbers the evaluator would see. The
running monitor's HTTP API is not a source: it serves the current snapshot only, no history.
"""
from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from aphrodite_sla.calibration import History, WindowSeries
from aphrodite_sla.config import SLAConfig
from aphrodite_sla.sim.config import Scenario
from aphrodite_sla.sla.threshold import SLAThreshold, Statistic

# Prometheus refuses a range query of more than 11,000 points per series.
MAX_POINTS_PER_QUERY = 10_000
ENGINE_PREFIXES = ("vllm", "aphrodite")  # the same families under either engine's prefix

# Our raw series -> the engine's histogram families (seconds) that carry them, first found wins:
# ITL is "time_per_output_token_seconds" in vLLM before 0.9; per-request TPOT has its own family
# in later versions, the per-token one is the closest older stand-in.
HISTOGRAM_FAMILIES: dict[str, tuple[str, ...]] = {
    "ttft_ms": ("time_to_first_token_seconds",),
    "request_latency_ms": ("e2e_request_latency_seconds",),
    "itl_ms": ("inter_token_latency_seconds", "time_per_output_token_seconds"),
    "tpot_ms": ("request_time_per_output_token_seconds", "time_per_output_token_seconds"),
}


class SourceError(RuntimeError):
    """A history source cannot deliver (unreachable, refused, malformed); the message says which."""


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0, "y": 31_536_000.0}


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus-style duration (``7d``, ``1h30m``, ``90s``, ``15``: seconds)."""
    raw = text.strip()
    try:
        seconds = float(raw)
    except ValueError:
        parts = _DURATION.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise ValueError(f"not a duration: {text!r} (e.g. 7d, 12h, 1h30m, 90s)") from None
        seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"a duration must be > 0, got {text!r}")
    return seconds


def promql_duration(seconds: float) -> str:
    """``seconds`` as a PromQL range (whole seconds, or milliseconds when fractional)."""
    return f"{round(seconds)}s" if float(seconds).is_integer() else f"{round(seconds * 1000)}ms"


# -- a simulate run -----------------------------------------------------------------------------

def simulate_history(thresholds: Sequence[SLAThreshold], *, scenario: str | Scenario = "steady", duration_s: float = 1800.0, seed: int = 0,
                     out: Callable[[str], None] = lambda _line: None) -> History:
    """Run ``scenario`` (a catalogue name, or a ``Scenario`` such as a trace replay) on the simulated
    engine (recovery off) and read, after every evaluation, each
    SLA's statistic over its window from the monitor's own store — what the evaluator judged, for
    SLAs it runs or not. A window with fewer than ``min_samples`` samples is not judged (NaN)."""
    from aphrodite_sla.simulate import run_simulation

    box: dict[str, Any] = {}
    ends: list[float] = []
    values: dict[str, list[float]] = {th.metric_name: [] for th in thresholds}

    def step_logger(runtime: Any) -> Callable[[Any, Any], None]:
        box["manager"] = runtime.manager
        return runtime.recorder.record

    def on_evaluation(engine_s: float) -> None:
        manager = box["manager"]
        ends.append(engine_s)
        for th in thresholds:
            value, n = manager.window_statistic(th.source, th.statistic, th.window_seconds)
            values[th.metric_name].append(value if n >= th.min_samples else math.nan)

    run_simulation(scenario, duration_s=duration_s, seed=seed, recovery="off", out=out, print_summary=False,
                   step_logger=step_logger, on_evaluation=on_evaluation)
    step = SLAConfig().evaluation_interval_s  # what run_simulation evaluates at (engine steps land just after)
    series: dict[str, WindowSeries] = {}
    missing: dict[str, str] = {}
    for th in thresholds:
        v = np.asarray(values[th.metric_name], dtype=np.float64)
        if not np.isfinite(v).any():
            missing[th.metric_name] = f"no data: the simulator records no {th.source}"
        series[th.metric_name] = WindowSeries(np.asarray(ends, dtype=np.float64), v, step)
    what = f"--scenario {scenario}" if isinstance(scenario, str) else f"the replay {scenario.name}"
    return History(f"simulate {what} --duration {duration_s:g} --seed {seed}", series, missing)


# -- the running monitor ------------------------------------------------------------------------
def monitor_history(thresholds: Sequence[SLAThreshold], url: str, *, timeout_s: float = 30.0) -> History:
    """The running monitor's own history: ``GET {url}/metrics/history`` (the engine's server with
    the middleware, or the standalone exporter) — every SLA's statistic at each evaluation of the
    last day, exactly what the evaluator judged."""
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise SourceError(f"--monitor {url}: expected an http(s) URL, e.g. http://127.0.0.1:8000")
    try:
        with urllib.request.urlopen(f"{base}/metrics/history", timeout=timeout_s) as resp:
            data = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raise SourceError(f"--monitor {url}: /metrics/history answered {err.code} (is aphrodite-sla running there?)") from None
    except (urllib.error.URLError, OSError) as err:
        raise SourceError(f"--monitor {url}: unreachable ({getattr(err, 'reason', err)})") from None
    except ValueError as err:
        raise SourceError(f"--monitor {url}: /metrics/history is not JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("slas"), dict):
        raise SourceError(f"--monitor {url}: /metrics/history has no 'slas' object")
    step = float(data.get("evaluation_interval_s") or SLAConfig().evaluation_interval_s)
    series: dict[str, WindowSeries] = {}
    missing: dict[str, str] = {}
    for th in thresholds:
        entry = data["slas"].get(th.metric_name)
        if not entry or not entry.get("ends"):
            missing[th.metric_name] = "no data: the monitor does not evaluate this SLA"
            continue
        values = np.array([math.nan if v is None else float(v) for v in entry["values"]], dtype=np.float64)
        series[th.metric_name] = WindowSeries(np.asarray(entry["ends"], dtype=np.float64), values, step)
    return History(f"the monitor at {base} ({max((len(s.ends) for s in series.values()), default=0)} evaluations)", series, missing)


# -- a real Prometheus ------------------------------------------------------------------------

class PrometheusClient:
    """The few calls of Prometheus's HTTP API calibration needs (urllib: no client dependency)."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise SourceError(f"--prometheus: not an http(s) URL: {url!r}")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def get(self, path: str, params: Sequence[tuple[str, str]]) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            try:
                detail = json.loads(err.read()).get("error", "")
            except ValueError:
                detail = ""
            raise SourceError(f"Prometheus at {self.url} refused {path}: HTTP {err.code} {detail}".rstrip()) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise SourceError(f"Prometheus at {self.url} is unreachable: {reason}") from None
        except ValueError:
            raise SourceError(f"Prometheus at {self.url}: {path} did not answer JSON (is this a Prometheus?)") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            raise SourceError(f"Prometheus at {self.url}: {path} failed: {body.get('error') if isinstance(body, dict) else body!r}")
        return body.get("data")

    def check(self) -> None:
        """Raise ``SourceError`` unless a Prometheus answers queries at the URL (before any work)."""
        self.get("/api/v1/query", [("query", "1")])

    def has_series(self, name: str, start: float, end: float) -> bool:
        data = self.get("/api/v1/series", [("match[]", name), ("start", f"{start:.3f}"), ("end", f"{end:.3f}")])
        return bool(data)

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> dict[float, float]:
        """``expr`` at ``start``, ``start`` + step, … ``end`` (chunked under Prometheus's point limit),
        as timestamp -> value of its single series (NaN where it has none)."""
        points: dict[float, float] = {}
        chunk = step_s * (MAX_POINTS_PER_QUERY - 1)
        t0 = start
        while t0 <= end:
            t1 = min(end, t0 + chunk)
            data = self.get("/api/v1/query_range", [("query", expr), ("start", f"{t0:.3f}"), ("end", f"{t1:.3f}"), ("step", f"{step_s:g}")])
            result = data.get("result", []) if isinstance(data, dict) else []
            if len(result) > 1:
                raise SourceError(f"Prometheus at {self.url}: {expr} returned {len(result)} series; expected one (the query sums them)")
            for ts, value in result[0]["values"] if result else []:
                points[float(ts)] = float(value)
            t0 = t1 + step_s
        return points


def _matchers(match: str, extra: str = "") -> str:
    inner = ",".join(m for m in (match.strip().strip("{}"), extra) if m)
    return f"{{{inner}}}" if inner else ""


def candidate_queries(th: SLAThreshold, window_s: float, match: str = "") -> list[tuple[str, str]]:
    """(series whose presence the query needs, PromQL) for ``th`` over ``window_s``, in order of
    preference; empty when no engine family carries the SLA's series and statistic."""
    w = promql_duration(window_s)
    m = _matchers(match)
    q = th.statistic.quantile
    out: list[tuple[str, str]] = []
    for prefix in ENGINE_PREFIXES:
        for family in HISTOGRAM_FAMILIES.get(th.source, ()):
            name = f"{prefix}:{family}"
            if q is not None and 0.0 < q < 1.0:
                out.append((f"{name}_bucket", f"histogram_quantile({q:g}, sum by (le) (rate({name}_bucket{m}[{w}]))) * 1000"))
            elif th.statistic is Statistic.MEAN:
                out.append((f"{name}_count", f"sum(rate({name}_sum{m}[{w}])) / sum(rate({name}_count{m}[{w}])) * 1000"))
        if th.statistic is not Statistic.MEAN:
            continue
        if th.source == "request_error_percent":
            name = f"{prefix}:request_success_total"
            errors = _matchers(match, 'finished_reason="error"')
            out.append((name, f"100 * (sum(rate({name}{errors}[{w}])) or vector(0)) / sum(rate({name}{m}[{w}]))"))
        elif th.source == "tokens_per_second":
            name = f"{prefix}:generation_tokens_total"
            out.append((name, f"sum(rate({name}{m}[{w}]))"))
        elif th.source == "kv_cache_usage_percent":
            for gauge in ("kv_cache_usage_perc", "gpu_cache_usage_perc"):
                name = f"{prefix}:{gauge}"
                out.append((name, f"100 * avg(avg_over_time({name}{m}[{w}]))"))
    return out


def prometheus_history(thresholds: Iterable[SLAThreshold], url: str, *, since_s: float, step_s: float = 60.0, match: str = "",
                       end: float | None = None, client: PrometheusClient | None = None) -> History:
    """Each SLA's statistic over its window, every ``step_s`` over the last ``since_s``, from the
    engine's own families in the Prometheus at ``url`` (``match``: label matchers selecting one
    deployment, e.g. ``model_name="llama"``). Histogram quantiles are estimates within a bucket: the
    proposal is as coarse as the engine's buckets."""
    if not (step_s > 0 and math.isfinite(step_s)):
        raise ValueError(f"step must be > 0 seconds, got {step_s!r}")
    if since_s < step_s:
        raise ValueError(f"--since ({since_s:g} s) must be at least one --step ({step_s:g} s)")
    prom = client or PrometheusClient(url)
    prom.check()
    stop = round(time.time() if end is None else end, 3)  # milliseconds: what the API is sent
    start = round(stop - since_s, 3)
    grid = start + np.arange(int(math.floor((stop - start) / step_s + 1e-6)) + 1) * step_s  # Prometheus's own points
    series: dict[str, WindowSeries] = {}
    missing: dict[str, str] = {}
    present: dict[str, bool] = {}
    for th in thresholds:
        candidates = candidate_queries(th, th.window_seconds, match)
        if not candidates:
            missing[th.metric_name] = f"no source: no engine family carries {th.statistic.value} of {th.source}"
            continue
        chosen = None
        for needed, expr in candidates:
            if needed not in present:
                present[needed] = prom.has_series(needed + _matchers(match), start, stop)
            if present[needed]:
                chosen = expr
                break
        if chosen is None:
            missing[th.metric_name] = f"no data: none of {', '.join(sorted({n for n, _ in candidates}))} in the last {since_s:g} s"
            continue
        points = prom.query_range(chosen, start, stop, step_s)
        values = np.full(len(grid), math.nan)
        for ts, value in points.items():
            k = int(round((ts - start) / step_s))
            if 0 <= k < len(grid):
                values[k] = value
        series[th.metric_name] = WindowSeries(grid, values, step_s)
    return History(f"prometheus {prom.url} over the last {since_s:g} s every {step_s:g} s", series, missing)


__all__ = [
    "HISTOGRAM_FAMILIES", "PrometheusClient", "SourceError", "candidate_queries", "parse_duration", "prometheus_history",
    "promql_duration", "simulate_history",
]
