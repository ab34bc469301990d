"""vLLM V1 StatLogger: ``SLAStatLogger`` hands every engine step's stats to the SLA runtime.

Zero-code use: ``pip install aphrodite-sla`` registers the entry point
``vllm.stat_logger_plugins: aphrodite_sla = aphrodite_sla.integrations.vllm:SLAStatLogger`` and
``vllm serve`` (``AsyncLLM``) loads it unless ``VLLM_PLUGINS`` is set without ``aphrodite_sla``.
Programmatic use: ``AsyncLLM.from_engine_args(args, stat_loggers=[SLAStatLogger])``.

Tested with vLLM 0.32.0 (``tests/contract``, run in the venv from ``scripts/engine_venv.sh``);
0.33.0 has the same stat-logger interface. The engine calls ``record()`` on its asyncio loop once
per output batch, so it only keeps a reference to the step's stats (``EngineStatsRecorder``): the
numbers are read later, off the loop, with defensive ``getattr`` reads.

``SLAStatLogger`` is created on first access (PEP 562 ``__getattr__``): importing this module
does not import vLLM (or torch) until the class itself is asked for, which is what vLLM's plugin
loader and ``from aphrodite_sla.integrations.vllm import SLAStatLogger`` both do. The body is the
engine-neutral ``StatLoggerCore`` (``integrations.statlogger_core``).
"""
from __future__ import annotations

from typing import Any

from aphrodite_sla.integrations.statlogger_core import StatLoggerCore, lazy_engine_class


def _build_vllm_class() -> type:
    from vllm.v1.metrics.loggers import StatLoggerBase

    class SLAStatLogger(StatLoggerCore, StatLoggerBase):
        """vLLM StatLogger feeding aphrodite-sla. Per-engine form: ``SLAStatLogger(vllm_config,
        engine_index)`` (how vLLM's ``StatLoggerManager`` builds per-engine loggers). Keyword
        ``production_monitor=`` feeds a given monitor instead of the process runtime; other
        unknown keywords are accepted and ignored (kept in ``ignored_kwargs``)."""

        engine_name = "vLLM"

        def __init__(self, vllm_config: Any = None, engine_index: int = 0, *, production_monitor: Any = None,
                     local_interval: float = 10.0, **kwargs: Any) -> None:
            self._sla_init(vllm_config, engine_index, production_monitor=production_monitor,
                           local_interval=local_interval, ignored=kwargs)

    SLAStatLogger.__module__ = __name__
    SLAStatLogger.__qualname__ = "SLAStatLogger"
    return SLAStatLogger


__getattr__ = lazy_engine_class(globals(), "SLAStatLogger", _build_vllm_class)

__all__ = ["SLAStatLogger"]  # noqa: F822 - built on first access (PEP 562)
