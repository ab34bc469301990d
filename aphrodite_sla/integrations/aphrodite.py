"""Aphrodite Engine V1 StatLogger: ``AphroditeProductionStatLogger`` hands every engine step's stats
to the SLA runtime (or to a given production monitor).

Zero-code use: ``pip install aphrodite-sla`` registers the entry point
``aphrodite.stat_logger_plugins: aphrodite_sla =
aphrodite_sla.integrations.aphrodite:AphroditeProductionStatLogger`` and ``aphrodite run``
(``AsyncLLM``) loads it unless ``APHRODITE_PLUGINS`` is set without ``aphrodite_sla``.
Programmatic use, either the engine's per-engine form
``AsyncLLM.from_engine_args(args, stat_loggers=[AphroditeProductionStatLogger])`` or the seed's::

    stat_logger = AphroditeProductionStatLogger(
        local_interval=10.0, production_monitor=production_monitor, aphrodite_config=config)

where ``production_monitor`` has a ``recorder`` (``EngineStatsRecorder``) or a ``manager`` /
``sla_manager`` (``SLAManager``); without one the process-wide runtime is used.

Tested with aphrodite-engine 0.24.1 (``tests/contract``, run in the venv from
``scripts/engine_venv.sh``). Aphrodite's V1 stats lack a few vLLM fields; the recorder reads every
field with a default. Old V0 releases (0.6.x, ``aphrodite/engine/metrics.py``) are not supported.
Like ``integrations.vllm``, the class is built on first access so importing this module does not
import Aphrodite (or torch).
"""
from __future__ import annotations

from typing import Any

from aphrodite_sla.integrations.statlogger_core import StatLoggerCore, lazy_engine_class


def _build_aphrodite_class() -> type:
    from aphrodite.v1.metrics.loggers import StatLoggerBase

    class AphroditeProductionStatLogger(StatLoggerCore, StatLoggerBase):
        """Aphrodite StatLogger feeding aphrodite-sla. Per-engine form:
        ``AphroditeProductionStatLogger(aphrodite_config, engine_index)``; seed form with keywords
        ``local_interval`` (seconds between ``log()`` summaries), ``production_monitor``,
        ``aphrodite_config``. Unknown keywords are accepted and ignored (``ignored_kwargs``)."""

        engine_name = "Aphrodite"

        def __init__(self, aphrodite_config: Any = None, engine_index: int = 0, *, local_interval: float = 10.0,
                     production_monitor: Any = None, **kwargs: Any) -> None:
            self._sla_init(aphrodite_config, engine_index, production_monitor=production_monitor,
                           local_interval=local_interval, ignored=kwargs)

    AphroditeProductionStatLogger.__module__ = __name__
    AphroditeProductionStatLogger.__qualname__ = "AphroditeProductionStatLogger"
    return AphroditeProductionStatLogger


__getattr__ = lazy_engine_class(globals(), "AphroditeProductionStatLogger", _build_aphrodite_class)

__all__ = ["AphroditeProductionStatLogger"]  # noqa: F822 - built on first access (PEP 562)
