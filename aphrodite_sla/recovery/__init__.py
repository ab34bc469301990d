"""Recovery: what the monitor does about a violation (actions on the engine, procedures, circuit
breakers, graceful degradation, monitoring modes, self-healing, deployment watch, REST API).

Everything here subscribes to the monitor's event stream or is driven by an operator; nothing runs
inside the evaluator or on the engine's event loop (engine calls are scheduled onto that loop and
awaited from the recovery thread).
"""

from aphrodite_sla.recovery.model import (
    ActionOutcome,
    ActionResult,
    ExecutionStatus,
    RecoveryAction,
    RecoveryExecution,
    RecoveryProcedure,
)


def __getattr__(name: str) -> object:
    """The seed's factories, imported on first use (they pull in the whole recovery system)."""
    if name == "create_production_recovery_engine":
        from aphrodite_sla.recovery.service import create_production_recovery_engine

        return create_production_recovery_engine
    if name == "create_production_monitor":
        from aphrodite_sla.recovery.production_monitor import create_production_monitor

        return create_production_monitor
    raise AttributeError(name)


__all__ = [
    "ActionOutcome", "ActionResult", "ExecutionStatus", "RecoveryAction", "RecoveryExecution", "RecoveryProcedure",
    "create_production_monitor", "create_production_recovery_engine",
]
