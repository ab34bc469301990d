"""Recovery history and its figures: success rate, MTTR, initiation latency, counts, durations.

Why apart from the engine: the engine acts; this only remembers. Memory is bounded however long
the server runs: the last ``history_size`` executions, a smaller ring of SKIPPED ones (a flood of
skips must not push real runs out of the history), the last ``sample_size`` MTTRs and initiation
latencies for means and percentiles, and counters (totals, by status, by procedure and status,
histogram buckets) that are numbers, not lists. Not thread-safe by itself: the engine holds its
lock around every call.
"""
from __future__ import annotations

import bisect
import math
import statistics
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from aphrodite_sla.recovery.model import ExecutionStatus, RecoveryExecution, plain

# Upper bounds (seconds) of the execution-duration histogram, Prometheus ``le`` style (+Inf last).
DURATION_BUCKETS_S: tuple[float, ...] = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, math.inf)
SKIPPED_KEPT = 100
SAMPLE_SIZE = 1000


@dataclass(frozen=True)
class RecoveryStats:
    """A copy of the figures. ``success_rate_percent``: SUCCEEDED of SUCCEEDED+FAILED (advisory and
    skipped runs changed nothing, so they are not counted), None before any. MTTR: trigger (the
    violation event) to the verified action's verification, over the last ``SAMPLE_SIZE``
    successes. Initiation latency: trigger to the execution's start. ``duration_buckets``:
    cumulative counts of finished non-skipped executions by ``DURATION_BUCKETS_S``."""

    total: int
    by_status: dict[str, int]
    by_procedure: dict[tuple[str, str], int]  # (procedure_id, status) -> count
    success_rate_percent: float | None
    mttr_mean_s: float | None
    mttr_median_s: float | None
    initiation_mean_s: float | None
    initiation_p95_s: float | None
    duration_buckets: tuple[tuple[float, int], ...]
    duration_sum_s: float
    duration_count: int
    active: int = 0
    kept_mitigations: int = 0
    version: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)  # SKIPPED executions by reason kind

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (the API): per-procedure counts as {procedure: {status: count}}."""
        out = plain({k: v for k, v in asdict(self).items() if k != "by_procedure"})
        nested: dict[str, dict[str, int]] = {}
        for (procedure, status), count in self.by_procedure.items():
            nested.setdefault(procedure, {})[status] = count
        out["by_procedure"] = nested
        out["duration_buckets"] = [[None if b == float("inf") else b, c] for b, c in self.duration_buckets]
        return out


class RecoveryHistory:
    """Finished executions and the counters over them (see the module docstring)."""

    def __init__(self, history_size: int = 500, sample_size: int = SAMPLE_SIZE) -> None:
        if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size < 1:
            raise ValueError(f"RecoveryHistory.history_size: must be an integer >= 1, got {history_size!r}")
        self._runs: deque[RecoveryExecution] = deque(maxlen=history_size)
        self._skipped: deque[RecoveryExecution] = deque(maxlen=min(SKIPPED_KEPT, history_size))
        self._mttr: deque[float] = deque(maxlen=sample_size)
        self._initiation: deque[float] = deque(maxlen=sample_size)
        self._by_status: Counter[str] = Counter()
        self._by_procedure: Counter[tuple[str, str]] = Counter()
        self._by_reason: Counter[str] = Counter()
        self._buckets = [0] * len(DURATION_BUCKETS_S)
        self._duration_sum = 0.0
        self._duration_count = 0
        self.total = 0

    def record(self, execution: RecoveryExecution, reason_kind: str = "") -> None:
        """Count a finished execution and keep it (the caller hands over a copy it will not change)."""
        status = execution.status
        self.total += 1
        self._by_status[status.value] += 1
        self._by_procedure[(execution.procedure_id, status.value)] += 1
        if status is ExecutionStatus.SKIPPED:
            self._by_reason[reason_kind or "other"] += 1
            self._skipped.append(execution)
            return
        self._runs.append(execution)
        self._initiation.append(max(0.0, execution.started_at - execution.triggered_at))
        duration = execution.duration_s
        if duration is not None:
            self._duration_sum += duration
            self._duration_count += 1
            self._buckets[bisect.bisect_left(DURATION_BUCKETS_S, duration)] += 1
        if status is ExecutionStatus.SUCCEEDED and execution.finished_at is not None:
            self._mttr.append(max(0.0, execution.finished_at - execution.triggered_at))

    def replace(self, execution_id: str, execution: RecoveryExecution) -> bool:
        """Swap in a later copy of a kept execution (e.g. a kept mitigation undone on resolve)."""
        for i, run in enumerate(self._runs):
            if run.execution_id == execution_id:
                self._runs[i] = execution
                return True
        return False

    def find(self, execution_id: str) -> RecoveryExecution | None:
        for run in self._runs:
            if run.execution_id == execution_id:
                return run
        return None

    def recent(self, limit: int | None = None) -> list[RecoveryExecution]:
        """Kept executions (skipped ones included), newest start first."""
        merged = sorted((*self._runs, *self._skipped), key=lambda e: e.started_at, reverse=True)
        return [copy_execution(e) for e in (merged if limit is None else merged[: max(0, limit)])]

    def stats(self, *, active: int = 0, kept_mitigations: int = 0, version: int = 0) -> RecoveryStats:
        ok, failed = self._by_status[ExecutionStatus.SUCCEEDED.value], self._by_status[ExecutionStatus.FAILED.value]
        cumulative, running = [], 0
        for bound, count in zip(DURATION_BUCKETS_S, self._buckets):
            running += count
            cumulative.append((bound, running))
        mttr, init = list(self._mttr), sorted(self._initiation)
        return RecoveryStats(
            total=self.total,
            by_status=dict(self._by_status),
            by_procedure=dict(self._by_procedure),
            success_rate_percent=100.0 * ok / (ok + failed) if ok + failed else None,
            mttr_mean_s=statistics.fmean(mttr) if mttr else None,
            mttr_median_s=statistics.median(mttr) if mttr else None,
            initiation_mean_s=statistics.fmean(init) if init else None,
            initiation_p95_s=_nearest_rank(init, 0.95) if init else None,
            duration_buckets=tuple(cumulative),
            duration_sum_s=self._duration_sum,
            duration_count=self._duration_count,
            active=active,
            kept_mitigations=kept_mitigations,
            version=version,
            by_reason=dict(self._by_reason),
        )


def copy_execution(execution: RecoveryExecution) -> RecoveryExecution:
    """A copy a reader may keep: its own action list (the results themselves are frozen)."""
    return replace(execution, actions=list(execution.actions))


def _nearest_rank(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


__all__ = ["DURATION_BUCKETS_S", "RecoveryHistory", "RecoveryStats", "copy_execution"]
