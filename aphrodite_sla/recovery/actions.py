"""One handler per ``RecoveryAction``: what each seed action really does on vLLM / Aphrodite.

Why these mappings: an inference server cannot "restart a service" or "invalidate a cache" in the
abstract; each handler does the nearest real thing the engine offers (``AsyncLLM`` methods called
through ``EngineHandle``, never on the recovery thread's own loop), the monitor's own enforcement
points (admission, breakers) or an operator hook, and says so in its detail. Where nothing real
is available the pre-check answers NOT_AVAILABLE instead of pretending. Mitigations that should
last while the violation does (shedding, draining, a forced-open breaker) are
``keep_until_resolved`` and come with an undo that restores what was there before.
"""
from __future__ import annotations

import contextlib
import gc
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from aphrodite_sla.integrations.admission import AdmissionController, AdmissionLimits, AdmissionState
from aphrodite_sla.recovery.engine_handle import EngineUnavailable
from aphrodite_sla.recovery.hooks import HookContext
from aphrodite_sla.recovery.model import ActionHandler, Applied, Precheck, RecoveryAction, Undo
from aphrodite_sla.recovery.procedures import demand_bound
from aphrodite_sla.recovery.target import RecoveryTarget
from aphrodite_sla.sla.threshold import SLAViolation, ViolationSeverity

# LOAD_BALANCER_ADJUST: the fraction of inference requests shed, by the episode's peak severity
SHED_FRACTIONS = {ViolationSeverity.MINOR: 0.10, ViolationSeverity.MAJOR: 0.25, ViolationSeverity.CRITICAL: 0.50}
# vLLM / Aphrodite ``pause_generation`` mode that aborts every in-flight request (the others wait or freeze)
PAUSE_ABORT_MODE = "abort"


class ActionFailed(RuntimeError):
    """The action ran and the engine (or hook) said no: the message says what and why."""


def _reason(action: RecoveryAction, violation: SLAViolation | None) -> str:
    if violation is None:
        return f"recovery {action.value}: run by an operator"
    return f"recovery {action.value}: {violation.metric_name} {violation.worst_severity.value}"


def _severity(violation: SLAViolation | None) -> ViolationSeverity:
    # run by hand: the mildest step
    return violation.worst_severity if violation is not None else ViolationSeverity.MINOR


def _no_engine(target: RecoveryTarget, *methods: str) -> Precheck | None:
    why = target.engine.missing(*methods)
    return Precheck.unavailable(f"no engine handle: {why}") if why else None


async def _engine(target: RecoveryTarget, method: str, *args: Any, **kwargs: Any) -> Any:
    return await target.engine.call(method, *args, timeout_s=target.engine_call_timeout_s, **kwargs)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


# -- admission: recovery's own limits, one source per action ---------------------------------------
# Recovery sets its limits under sources of its own (the controller enforces the strictest of all
# sources), so undoing them never writes back, or lifts, what degradation or an operator set.
SHED_SOURCE = "recovery-shed"
DRAIN_SOURCE = "recovery-drain"


def _set_own_limits(admission: AdmissionController, source: str, mine: AdmissionLimits, reason: str) -> Undo:
    """Set recovery's limits under ``source``; the undo puts the source back as it was, unless it
    was changed after us (then the newer setting stays)."""
    previous = admission.sources().get(source)
    admission.apply(mine, reason, source=source)

    async def undo() -> str:
        now = admission.sources().get(source)
        if now is None or now[0] != mine:
            return f"admission source {source} changed since: left as is"
        if previous is None:
            admission.apply(AdmissionLimits.none(), source=source)
            return f"admission source {source} removed"
        admission.apply(previous[0], previous[1], source=source)
        return f"admission source {source} restored"

    return undo


# -- handlers ------------------------------------------------------------------------------------
class CacheInvalidation:
    """Reset the engine's prefix cache (and the multimodal cache where the engine has one)."""

    action = RecoveryAction.CACHE_INVALIDATION
    requires_approval = False

    def precheck(self, target: RecoveryTarget, violation: SLAViolation | None) -> Precheck:
        return _no_engine(target, "reset_prefix_cache") or Precheck.go()

    async def apply(self, target: RecoveryTarget, violation: SLAViolation | None) -> Applied:
        done = await _engine(target, "reset_prefix_cache")
        detail = "prefix cache reset"
        if done is False:
            # vLLM answers False while running requests hold cached blocks (any busy engine): then
            # the running requests are preempted back to the queue first (recomputed, none lost)
            done = await _engine(target, "reset_prefix_cache", reset_running_requests=True)
            detail = "prefix cache reset (running requests preempted and recomputed)"
        if done is False:
            raise ActionFailed("engine did not reset the prefix cache (reset_prefix_cache() returned False even with running requests reset)")
        if target.engine.has("reset_mm_cache"):
            await _engine(target, "reset_mm_cache")
            detail += "; multimodal cache reset"
        return Applied(detail)


class LoadBalancerAdjust:
    """Shed a fraction of inference requests (503 + Retry-After) by severity, while the violation lasts."""

    action = RecoveryAction.LOAD_BALANCER_ADJUST
    requires_approval = False

    def precheck(self, target: RecoveryTarget, violation: SLAViolation | None) -> Precheck:
        policy = target.admission.policy
        fraction = SHED_FRACTIONS[_severity(violation)]
        if violation is not None and demand_bound(violation):
            return Precheck.refuse(f"{violation.metric_name} is a demand-dependent minimum: shedding requests lowers it further")
        if policy.state is AdmissionState.CLOSED:
            return Precheck.refuse("admission is closed (draining): shedding more changes nothing")
        if policy.shed_fraction >= fraction:
            return Precheck.refuse(f"already shedding {policy.shed_fraction:.0%} (>= {fraction:.0%})")
        return Precheck.go()

    async def apply(self, target: RecoveryTarget, violation: SLAViolation | None) -> Applied:
        fraction = SHED_FRACTIONS[_severity(violation)]
        mine = AdmissionLimits(shed_fraction=fraction, retry_after_s=target.shed_retry_after_s)
        undo = _set_own_limits(target.admission, SHED_SOURCE, mine, _reason(self.action, violation))
        return Applied(f"shedding {fraction:.0%} of inference requests (503, Retry-After {target.shed_retry_after_s:g} s)",
                       undo=undo, keep_until_resolved=True)


class TrafficRouting:
    """Drain: reject every inference request and answer 503 on /health/production, so an external
    load balancer moves traffic to other replicas."""

    action = RecoveryAction.TRAFFIC_ROUTING
    requires_approval = False

    def precheck(self, target: RecoveryTarget, violation: SLAViolation | None) -> Precheck:
        if target.fleet_replicas <= 1 and not target.allow_single_replica_drain:
            return Precheck.refuse("single replica: draining would drop all traffic")
        if target.admission.state is AdmissionState.CLOSED:
            return Precheck.refuse("already draining (admission closed)")
        return Precheck.go()

    async def apply(self, target: RecoveryTarget, violation: SLAViolation | None) -> Applied:
        mine = AdmissionLimits(closed=True, retry_after_s=target.drain_retry_after_s)
        undo = _set_own_limits(target.admission, DRAIN_SOURCE, mine, _reason(self.action, violation))
        return Applied(f"draining: admission closed, /health/production answers 503 ({target.fleet_replicas} replicas in the fleet)",
                       undo=undo, keep_until_resolved=True)


class ResourceScaling:
    """Ask for one more replica (the desired-replicas gauge an autoscaler follows) and run the
    configured scaling hook, if any."""

    action = RecoveryAction.RESOURCE_SCALING
    requires_approval = False

    def precheck(self, target: RecoveryTarget, violation: SLAViolation | None) -> Precheck:
        if self.action in target.hooks:
            return Precheck.go()
        s = target.scaling.snapshot()
        if s.max_replicas <= s.current_replicas:
            return Precheck.unavailable(f"no scaling hook configured and max_replicas ({s.max_replicas}) is not above current {s.current_replicas}")
        if s.desired_replicas >= s.max_replicas:
            return Precheck.refuse(f"already asking for the maximum of {s.max_replicas} replicas")
        return Precheck.go()

    async def apply(self, target: RecoveryTarget, violation: SLAViolation | None) -> Applied:
        scaling = target.scaling
        previous, desired = scaling.scale_up()
        detail = f"desired replicas {previous} -> {desired}"
        hook = target.hooks.get(self.action)
        if hook is not None:
            result = await hook.run(HookContext.for_violation(self.action, violation))
            if not result.ok:
                scaling.set_desired(previous)
                raise ActionFailed(f"scaling hook {hook.describe()} {result.describe()} (desired replicas back to {previous})")
            detail += f"; scaling hook {result.describe()}"

        async def undo() -> str:
            if scaling.desired_replicas != desired:
                return f"desired replicas changed since ({scaling.desired_replicas}): left as is"
            scaling.set_desired(previous)
            return f"desired replicas back to {previous}" + ("" if hook is None else " (the scaling hook is not undone)")

        return Applied(detail, undo=undo)


class CircuitBreakerActivation:
    """Force the model-inference breaker open (the middleware then rejects inference requests)."""

    action = RecoveryAction.CIRCUIT_BREAKER_ACTIVATION
    requires_approval = False

    def precheck(self, target: RecoveryTarget, violation: SLAViolation | None) -> Precheck:
        if target.breakers is None:
            return Precheck.unavailable("no circuit breakers configured")
        if target.fleet_replicas <= 1 and not target.allow_single_replica_drain:
            # held open, it refuses every inference request: on the only replica, an outage
            return Precheck.refuse("single replica: holding the breaker open would refuse all traffic")
        return Precheck.go()

    async def apply(self, target: RecoveryTarget, violation: SLAViolation | None) -> Applied:
        breakers, name = target.breakers, target.inference_breaker
        if breakers is None:
            raise ActionFailed("no circuit breakers configured")
        breakers.force_open(name, _reason(self.action, violation))

        async def undo() -> str:
            breakers.reset(name)
            return f"breaker {name} reset"

        return Applied(f"breaker {name} forced open", undo=undo, keep_until_resolved=True)


class HealthCheckReset:
    """Ask the engine whether it is alive (``check_health``); if it is, reset our own health state
    (stall detector, error counters) so a recovered engine stops being reported unhealthy."""

    action = RecoveryAction.HEALTH_CHECK_RESET
    requires_approval = False

    def precheck(self, target: RecoveryTarget, violation: SLAViolation | None) -> Precheck:
        return _no_engine(target, "check_health") or Precheck.go()

    async def apply(self, target: RecoveryTarget, violation: SLAViolation | None) -> Applied:
        try:
            await _engine(target, "check_health")
        except (TimeoutError, EngineUnavailable):
            raise
        except Exception as err:  # EngineDeadError: the engine is gone, resetting our state would hide it
            raise ActionFailed(f"engine check_health() failed, engine dead: {type(err).__name__}: {err}".rstrip(": ")) from err
        if target.health_reset is None:
            return Applied("engine healthy (no monitor health state to reset)")
        await _maybe_await(target.health_reset())
        return Applied("engine healthy; monitor health state reset")


class ServiceRestart:
    """The configured restart hook; else restart serving in place: ``pause_generation(mode="abort")``
    (aborts every in-flight request and clears the KV and prefix caches), then ``resume_generation()``."""

    action = RecoveryAction.SERVICE_RESTART
    requires_approval = True

    def precheck(self, target: RecoveryTarget, violation: SLAViolation | None) -> Precheck:
        if self.action in target.hooks:
            return Precheck.go()
        return _no_engine(target, "pause_generation", "resume_generation") or Precheck.go()

    async def apply(self, target: RecoveryTarget, violation: SLAViolation | None) -> Applied:
        hook = target.hooks.get(self.action)
        if hook is not None:
            result = await hook.run(HookContext.for_violation(self.action, violation))
            if not result.ok:
                raise ActionFailed(f"restart hook {hook.describe()} {result.describe()}")
            return Applied(f"restart hook {result.describe()}")
        unfinished = None
        if target.engine.has("get_num_unfinished_requests"):
            unfinished = await _engine(target, "get_num_unfinished_requests")
        try:
            await _engine(target, "pause_generation", mode=PAUSE_ABORT_MODE)
        except BaseException:
            # resumed even when the pause failed, timed out or we were cancelled: never leave the engine paused
            with contextlib.suppress(Exception):
                await _engine(target, "resume_generation")
            raise
        await _engine(target, "resume_generation")
        aborted = "" if unfinished is None else f" ({unfinished} in flight)"
        return Applied(f"generation paused (in-flight requests aborted{aborted}, caches cleared) and resumed", undo=_resume_if_paused(target))


def _resume_if_paused(target: RecoveryTarget) -> Callable[[], Awaitable[str]]:
    async def undo() -> str:
        if target.engine.has("is_paused") and not await _engine(target, "is_paused"):
            return "engine not paused"
        await _engine(target, "resume_generation")
        return "generation resumed"

    return undo


class DeploymentRollback:
    """Only an operator's rollback hook can roll a deployment back."""

    action = RecoveryAction.DEPLOYMENT_ROLLBACK
    requires_approval = True

    def precheck(self, target: RecoveryTarget, violation: SLAViolation | None) -> Precheck:
        return Precheck.go() if self.action in target.hooks else Precheck.unavailable("no deployment_rollback hook configured")

    async def apply(self, target: RecoveryTarget, violation: SLAViolation | None) -> Applied:
        hook = target.hooks.get(self.action)
        if hook is None:
            raise ActionFailed("no deployment_rollback hook configured")
        result = await hook.run(HookContext.for_violation(self.action, violation))
        if not result.ok:
            raise ActionFailed(f"rollback hook {hook.describe()} {result.describe()}")
        return Applied(f"rollback hook {result.describe()}")


class MemoryCleanup:
    """Python garbage collection always; engine ``sleep(level=1)`` + ``wake_up()`` only when the
    target enables it (it aborts in-flight requests, drops the KV cache and pauses serving)."""

    action = RecoveryAction.MEMORY_CLEANUP
    requires_approval = False

    def precheck(self, target: RecoveryTarget, violation: SLAViolation | None) -> Precheck:
        return Precheck.go()

    async def apply(self, target: RecoveryTarget, violation: SLAViolation | None) -> Applied:
        collected = gc.collect()
        detail = f"gc collected {collected} unreachable objects"
        if not target.memory_sleep_enabled:
            return Applied(detail + "; engine sleep/wake not enabled")
        why = target.engine.missing("sleep", "wake_up")
        if why:
            return Applied(detail + f"; engine sleep/wake skipped: {why}")
        if target.engine.has("is_sleeping") and await _engine(target, "is_sleeping"):
            return Applied(detail + "; engine already asleep: left as is")
        try:
            await _engine(target, "sleep", level=1)
        except BaseException as err:
            with contextlib.suppress(Exception):
                await _engine(target, "wake_up")  # serving must come back whatever happened
            if isinstance(err, Exception) and not isinstance(err, TimeoutError):
                raise ActionFailed(f"{detail}; engine sleep(level=1) failed: {type(err).__name__}: {err}") from err
            raise
        await _engine(target, "wake_up")
        return Applied(detail + "; engine slept (level 1: KV cache freed) and woke")


HANDLER_TYPES: tuple[type[Any], ...] = (
    CacheInvalidation, LoadBalancerAdjust, TrafficRouting, ResourceScaling, CircuitBreakerActivation,
    HealthCheckReset, ServiceRestart, DeploymentRollback, MemoryCleanup,
)


def default_handlers() -> dict[RecoveryAction, ActionHandler]:
    """A fresh handler for every ``RecoveryAction``."""
    handlers: dict[RecoveryAction, ActionHandler] = {cls.action: cls() for cls in HANDLER_TYPES}
    missing = set(RecoveryAction) - set(handlers)
    if missing:  # a new action without a handler is a programming error, caught at start-up
        raise RuntimeError(f"no handler for {sorted(a.value for a in missing)}")
    return handlers


__all__ = [
    "HANDLER_TYPES", "PAUSE_ABORT_MODE", "SHED_FRACTIONS", "ActionFailed", "CacheInvalidation", "CircuitBreakerActivation", "DeploymentRollback",
    "HealthCheckReset", "LoadBalancerAdjust", "MemoryCleanup", "ResourceScaling", "ServiceRestart", "TrafficRouting", "default_handlers",
]
