"""Deployment watch: compare a new deployment with the one before it, and roll back a regression.

How: ``track()`` is called at the switch (the runtime calls it at start-up with
``config_hash_of(engine_config)``). It captures, per watched SLA, a named baseline of the SLA's
current window — the previous deployment's traffic — with ``SLAManager.capture_baseline``. Then
``check()`` (every ``check_interval_s`` on its own daemon thread, or called by the caller) compares
each SLA's last window with that baseline (``detect_regression(sla, baseline_name=...)``: a
Mann–Whitney test plus a minimum effect on the median; each side needs 20 samples).

* An SLA is compared only once one full SLA window has passed since the switch (until then its
  window still holds the previous deployment's samples): TRACKING until the first comparison,
  then STABILISING.
* A significant regression marks REGRESSED and publishes ``DeploymentEvent(kind="regressed")``;
  with auto-rollback on and a hook configured, the hook runs once (ROLLING_BACK, then ROLLED_BACK
  or ROLLBACK_FAILED, each published).
* ``stabilisation_s`` without a regression → STABLE (a finding says when no comparison was
  conclusive, e.g. no traffic). Checks go on until ``monitoring_s``; a later regression is
  handled the same way. Tracking a newer deployment ends the watch of the previous one
  (SUPERSEDED if it was not yet STABLE).

A rollback hook returns True (or None) for success, False for failure, or an awaitable of that;
it is waited for from our thread (on ``rollback_loop`` when given, e.g. the engine's).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from aphrodite_sla.clock import Clock
from aphrodite_sla.event_stream import EventStream
from aphrodite_sla.events import DEPLOYMENT_ALERT, DeploymentEvent, episode_id, fingerprint
from aphrodite_sla.forking import reset_in_child
from aphrodite_sla.periodic import PeriodicThread
from aphrodite_sla.recovery.self_healing import run_awaitable
from aphrodite_sla.sla.manager import SLAManager
from aphrodite_sla.sla.regression import RegressionResult

logger = logging.getLogger(__name__)

MIN_SAMPLES = 20  # what detect_regression needs on each side (its min_samples default)
HISTORY_SIZE = 100


# -- data ------------------------------------------------------------------------------------------
class DeploymentStatus(str, Enum):
    TRACKING = "tracking"  # tracked; no SLA window has passed since the switch yet
    STABILISING = "stabilising"  # comparisons running, stabilisation period not passed
    STABLE = "stable"  # passed the stabilisation period without a regression
    REGRESSED = "regressed"  # a watched SLA is significantly worse than the previous deployment
    ROLLING_BACK = "rolling_back"  # the rollback hook is running
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    SUPERSEDED = "superseded"  # a newer deployment was tracked before this one was stable

    def __str__(self) -> str:
        return self.value


_WATCHED = (DeploymentStatus.TRACKING, DeploymentStatus.STABILISING, DeploymentStatus.STABLE)


@dataclass
class Deployment:
    """One tracked deployment (mutable while watched; readers get copies)."""

    deployment_id: str
    model: str
    version: str
    config_hash: str
    started_at: float
    baseline: str  # the baseline name in the SLA manager
    status: DeploymentStatus = DeploymentStatus.TRACKING
    watched: tuple[str, ...] = ()
    baseline_samples: dict[str, int] = field(default_factory=dict)
    results: dict[str, RegressionResult] = field(default_factory=dict)  # latest comparison per SLA
    findings: list[str] = field(default_factory=list)
    watch_ended_at: float | None = None
    rolled_back_by: str | None = None
    last_checked_at: float | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(DEPLOYMENT_ALERT, model=self.model)

    @property
    def episode(self) -> str:
        return episode_id(self.fingerprint, self.started_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment_id": self.deployment_id, "model": self.model, "version": self.version, "config_hash": self.config_hash,
            "started_at": self.started_at, "baseline": self.baseline, "status": self.status.value, "watched": list(self.watched),
            "baseline_samples": dict(self.baseline_samples), "findings": list(self.findings), "watch_ended_at": self.watch_ended_at,
            "rolled_back_by": self.rolled_back_by, "last_checked_at": self.last_checked_at,
            "results": {sla: {"regressed": r.regressed, "percent_change": _finite(r.percent_change), "p_value": _finite(r.p_value),
                              "baseline_count": r.baseline_count, "recent_count": r.recent_count, "message": r.message}
                        for sla, r in self.results.items()},
        }


RollbackHook = Callable[[Deployment, str], Awaitable[Any] | bool | None]


# -- behaviour -------------------------------------------------------------------------------------
class DeploymentMonitor:
    """The deployment watch (see the module docstring)."""

    def __init__(
        self,
        manager: SLAManager,
        *,
        clock: Clock | None = None,
        events: EventStream | None = None,
        rollback_hook: RollbackHook | None = None,
        auto_rollback: bool = True,
        stabilisation_s: float = 900.0,
        monitoring_s: float = 3600.0,
        slas: Iterable[str] | None = None,
        check_interval_s: float = 60.0,
        rollback_timeout_s: float = 300.0,
        rollback_loop: Any = None,
    ) -> None:
        if not isinstance(manager, SLAManager):
            raise ValueError(f"DeploymentMonitor.manager: expected an SLAManager, got {type(manager).__name__}")
        if rollback_hook is not None and not callable(rollback_hook):
            raise ValueError(f"DeploymentMonitor.rollback_hook: must be callable or None, got {type(rollback_hook).__name__}")
        if not isinstance(auto_rollback, bool):
            raise ValueError(f"DeploymentMonitor.auto_rollback: must be true or false, got {auto_rollback!r}")
        for name, value in (("stabilisation_s", stabilisation_s), ("monitoring_s", monitoring_s), ("check_interval_s", check_interval_s),
                            ("rollback_timeout_s", rollback_timeout_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"DeploymentMonitor.{name}: must be a finite number of seconds > 0, got {value!r}")
        if monitoring_s < stabilisation_s:
            raise ValueError(f"DeploymentMonitor.monitoring_s: must be >= stabilisation_s ({stabilisation_s}), got {monitoring_s}")
        self.slas = tuple(slas) if slas is not None else None
        unknown = [s for s in self.slas or () if s not in manager.thresholds]
        if unknown:
            raise ValueError(f"DeploymentMonitor.slas: unknown SLA {', '.join(map(repr, unknown))}; known: {', '.join(manager.thresholds)}")
        self.manager = manager
        self.clock: Clock = clock if clock is not None else manager.clock
        self.events = events if events is not None else manager.events
        self.rollback_hook = rollback_hook
        self.auto_rollback = auto_rollback
        self.stabilisation_s = float(stabilisation_s)
        self.monitoring_s = float(monitoring_s)
        self.rollback_timeout_s = float(rollback_timeout_s)
        self.rollback_loop = rollback_loop
        self._deployments: dict[str, Deployment] = {}
        self._lock = threading.Lock()
        reset_in_child(self)
        self._worker = PeriodicThread("aphrodite-sla-deployment-watch", self.check, float(check_interval_s), run_first=False)

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()

    # -- switches ----------------------------------------------------------------------------
    def enable_auto_rollback(self) -> None:
        self.auto_rollback = True

    def disable_auto_rollback(self) -> None:
        self.auto_rollback = False

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout: float = 5.0) -> bool:
        return self._worker.stop(timeout)

    # -- tracking ----------------------------------------------------------------------------
    def track(self, model: str, version: str, config_hash: str, deployment_id: str | None = None, *, now: float | None = None) -> Deployment:
        """Start watching a deployment that just switched in; baselines come from the window before."""
        for name, value in (("model", model), ("version", version), ("config_hash", config_hash)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"track.{name}: a non-empty string is required, got {value!r}")
        at = self.clock() if now is None else float(now)
        dep_id = deployment_id or f"{model}@{version}-{config_hash[:8]}-{int(at * 1000)}"
        thresholds = self.manager.thresholds
        watched = self.slas if self.slas is not None else tuple(n for n, t in thresholds.items() if t.enabled)
        dep = Deployment(dep_id, model, version, config_hash, at, f"deployment:{dep_id}", watched=tuple(watched))
        superseded = []
        with self._lock:
            if dep_id in self._deployments:
                raise ValueError(f"track.deployment_id: {dep_id!r} is tracked already")
            for old in self._deployments.values():
                if old.watch_ended_at is None and old.status in _WATCHED:
                    old.watch_ended_at = at
                    if old.status is not DeploymentStatus.STABLE:
                        old.status = DeploymentStatus.SUPERSEDED
                        old.findings.append(f"superseded by {dep_id} before it was stable")
                        superseded.append(old.deployment_id)
            self._deployments[dep_id] = dep
            while len(self._deployments) > HISTORY_SIZE:
                self._deployments.pop(next(iter(self._deployments)))
        for sla in dep.watched:
            try:
                n = self.manager.capture_baseline(dep.baseline, sla, now=at)
            except KeyError:
                n = 0
                dep.findings.append(f"{sla}: no such SLA any more; not compared")
            dep.baseline_samples[sla] = n
            if 0 < n < MIN_SAMPLES or (n == 0 and sla in thresholds):
                dep.findings.append(f"{sla}: baseline has {n} samples (need {MIN_SAMPLES}); not compared")
        self._publish(dep, "tracked", f"{model} {version} (config {config_hash[:12]}); watching {', '.join(dep.watched) or 'nothing'}"
                      + (f"; superseded {', '.join(superseded)}" if superseded else ""), at)
        return self._copy(dep)

    def check(self, now: float | None = None) -> list[Deployment]:
        """Compare every watched deployment with its baseline and act (see the module docstring).
        Returns copies of the deployments checked."""
        at = self.clock() if now is None else float(now)
        with self._lock:
            watched = [d for d in self._deployments.values() if d.watch_ended_at is None and d.status in _WATCHED]
        out = []
        for dep in watched:
            try:
                self._check_one(dep, at)
            except Exception:
                logger.exception("aphrodite-sla: deployment check of %s failed", dep.deployment_id)
            out.append(self._copy(dep))
        return out

    def _check_one(self, dep: Deployment, at: float) -> None:
        age = at - dep.started_at
        thresholds = self.manager.thresholds
        regressed: list[RegressionResult] = []
        compared = False
        for sla in dep.watched:
            th = thresholds.get(sla)
            if th is None or dep.baseline_samples.get(sla, 0) < MIN_SAMPLES or age < th.window_seconds:
                continue
            result = self.manager.detect_regression(sla, baseline_name=dep.baseline, now=at)
            compared = True
            with self._lock:
                dep.results[sla] = result
            if result.regressed:
                regressed.append(result)
        stable_now = False
        roll_back = False
        with self._lock:
            if dep.status not in _WATCHED or dep.watch_ended_at is not None:
                return  # a manual rollback or a newer deployment meanwhile
            dep.last_checked_at = at
            if regressed:
                dep.status = DeploymentStatus.REGRESSED
                dep.findings.extend(r.message for r in regressed)
                roll_back = self.auto_rollback and self.rollback_hook is not None
                if roll_back:
                    dep.status = DeploymentStatus.ROLLING_BACK
                elif self.auto_rollback:
                    dep.findings.append("auto-rollback: no rollback hook configured")
            else:
                if compared and dep.status is DeploymentStatus.TRACKING:
                    dep.status = DeploymentStatus.STABILISING
                if dep.status is not DeploymentStatus.STABLE and age >= self.stabilisation_s:
                    dep.status = DeploymentStatus.STABLE
                    stable_now = True
                    conclusive = [s for s, r in dep.results.items() if math.isfinite(r.p_value)]
                    if not conclusive:
                        dep.findings.append("stable without a conclusive comparison (too few samples in the baseline or since the switch)")
                if age >= self.monitoring_s:
                    dep.watch_ended_at = at
        if regressed:
            self._publish(dep, "regressed", "; ".join(r.message for r in regressed), at)
            if roll_back:
                self._roll_back(dep, "automatic: " + "; ".join(r.metric for r in regressed) + " regressed", "auto")
        elif stable_now:
            self._publish(dep, "stable", f"no regression in {age:.0f}s against {dep.baseline}", at)

    def rollback(self, deployment_id: str, by: str, reason: str = "manual rollback") -> Deployment:
        """Roll a deployment back by hand (whatever auto-rollback says)."""
        if not isinstance(by, str) or not by.strip():
            raise ValueError(f"rollback.by: a non-empty string is required, got {by!r}")
        if self.rollback_hook is None:
            raise ValueError("rollback.rollback_hook: no rollback hook is configured")
        with self._lock:
            dep = self._deployments.get(deployment_id)
            if dep is None:
                raise ValueError(f"rollback.deployment_id: unknown deployment {deployment_id!r}")
            if dep.status in (DeploymentStatus.ROLLING_BACK, DeploymentStatus.ROLLED_BACK):
                raise ValueError(f"rollback.deployment_id: {deployment_id!r} is {dep.status.value} already")
            dep.status = DeploymentStatus.ROLLING_BACK
        self._roll_back(dep, reason, by)
        return self._copy(dep)

    def _roll_back(self, dep: Deployment, reason: str, by: str) -> None:
        """Run the hook (outside the lock; the ROLLING_BACK status keeps it to one run)."""
        hook = self.rollback_hook
        assert hook is not None
        try:
            answer = hook(self._copy(dep), reason)
            if inspect.isawaitable(answer):
                answer = run_awaitable(answer, self.rollback_timeout_s, self.rollback_loop)
            ok, detail = answer is not False, f"rollback by {by}: {reason}" + ("" if answer is not False else "; the hook reported failure")
        except Exception as exc:
            ok, detail = False, f"rollback by {by} failed: {type(exc).__name__}: {exc}"
            logger.error("aphrodite-sla: rollback of %s failed: %s", dep.deployment_id, detail, exc_info=True)
        at = self.clock()
        with self._lock:
            dep.status = DeploymentStatus.ROLLED_BACK if ok else DeploymentStatus.ROLLBACK_FAILED
            dep.rolled_back_by = by
            dep.watch_ended_at = at
            dep.findings.append(detail)
        self._publish(dep, "rolled_back" if ok else "rollback_failed", detail, at)

    def _publish(self, dep: Deployment, kind: str, detail: str, at: float) -> None:
        self.events.publish([DeploymentEvent(dep.fingerprint, dep.episode, at, dep.deployment_id, kind, detail)])

    # -- reading -----------------------------------------------------------------------------
    def _copy(self, dep: Deployment) -> Deployment:
        with self._lock:
            return Deployment(
                dep.deployment_id, dep.model, dep.version, dep.config_hash, dep.started_at, dep.baseline, dep.status, dep.watched,
                dict(dep.baseline_samples), dict(dep.results), list(dep.findings), dep.watch_ended_at, dep.rolled_back_by,
                dep.last_checked_at,
            )

    def get(self, deployment_id: str) -> Deployment | None:
        with self._lock:
            dep = self._deployments.get(deployment_id)
        return None if dep is None else self._copy(dep)

    def history(self) -> list[Deployment]:
        """Every deployment kept, newest first."""
        with self._lock:
            deps = list(self._deployments.values())
        return [self._copy(d) for d in reversed(deps)]

    def active(self) -> list[Deployment]:
        """Deployments still watched (or rolling back)."""
        with self._lock:
            deps = [d for d in self._deployments.values()
                    if d.status is DeploymentStatus.ROLLING_BACK or (d.watch_ended_at is None and d.status in _WATCHED)]
        return [self._copy(d) for d in deps]


# -- the deployment's identity ---------------------------------------------------------------------
# The fields that define a deployment: (name, where to find it in a vLLM VllmConfig / Aphrodite
# config, then flat as in EngineArgs or a dict). Missing ones are left out.
DEPLOYMENT_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model", ("model_config.model", "model")),
    ("revision", ("model_config.revision", "revision")),
    ("tokenizer", ("model_config.tokenizer", "tokenizer")),
    ("tokenizer_revision", ("model_config.tokenizer_revision", "tokenizer_revision")),
    ("dtype", ("model_config.dtype", "dtype")),
    ("quantization", ("model_config.quantization", "quantization")),
    ("max_model_len", ("model_config.max_model_len", "max_model_len")),
    ("enforce_eager", ("model_config.enforce_eager", "enforce_eager")),
    ("kv_cache_dtype", ("cache_config.cache_dtype", "kv_cache_dtype", "cache_dtype")),
    ("block_size", ("cache_config.block_size", "block_size")),
    ("gpu_memory_utilization", ("cache_config.gpu_memory_utilization", "gpu_memory_utilization")),
    ("enable_prefix_caching", ("cache_config.enable_prefix_caching", "enable_prefix_caching")),
    ("tensor_parallel_size", ("parallel_config.tensor_parallel_size", "tensor_parallel_size")),
    ("pipeline_parallel_size", ("parallel_config.pipeline_parallel_size", "pipeline_parallel_size")),
    ("data_parallel_size", ("parallel_config.data_parallel_size", "data_parallel_size")),
    ("max_num_seqs", ("scheduler_config.max_num_seqs", "max_num_seqs")),
    ("max_num_batched_tokens", ("scheduler_config.max_num_batched_tokens", "max_num_batched_tokens")),
    ("speculative_model", ("speculative_config.model", "speculative_config.draft_model_config.model", "speculative_model")),
    ("num_speculative_tokens", ("speculative_config.num_speculative_tokens", "num_speculative_tokens")),
    ("max_loras", ("lora_config.max_loras", "max_loras")),
)

_MISSING = object()


def deployment_fields(config: Any) -> dict[str, Any]:
    """The deployment-defining fields of an engine config (object or mapping), as JSON values."""
    out: dict[str, Any] = {}
    for name, paths in DEPLOYMENT_FIELDS:
        for path in paths:
            value = _lookup(config, path)
            if value is not _MISSING and value is not None:
                out[name] = _plain(value)
                break
    return out


def config_hash_of(config: Any) -> str:
    """A stable sha256 (hex) of ``deployment_fields(config)``: the same for the same model,
    revision, dtype, quantization, parallelism, limits..., whatever form the config takes."""
    fields = deployment_fields(config)
    if not fields:
        raise ValueError(f"config_hash_of.config: no deployment field found in a {type(config).__name__} (expected e.g. model, dtype)")
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _lookup(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if obj is None:
            return _MISSING
        if isinstance(obj, Mapping):
            obj = obj.get(part, _MISSING)
        else:
            try:
                obj = getattr(obj, part, _MISSING)
            except Exception:  # a property that raises on a half-built config
                return _MISSING
        if obj is _MISSING:
            return _MISSING
    return obj


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)  # torch.dtype, paths, ...


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


__all__ = ["DEPLOYMENT_FIELDS", "Deployment", "DeploymentMonitor", "DeploymentStatus", "RollbackHook", "config_hash_of", "deployment_fields"]
