"""Recovery: what the monitor does about a violation (actions on the engine, procedures, circuit
breakers, graceful degradation, monitoring modes, self-healing, deployment watch, REST API).

Everything here subscribes to the monitor's event stream or is driven by an operator; nothing runs
inside the evaluator or on the engine's event loop (engine calls are scheduled onto that loop and
awaited from the recovery thread).
"""
