"""Incident statistics (MTTD, MTTA, MTTR, counts by status/severity/type): one pure function over
incidents, shared by the API, the CLI and the metrics view."""
from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from aphrodite_sla.incidents.model import Incident


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def incident_statistics(incidents: Iterable[Incident], counts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    items = list(incidents)
    mttd = [m for i in items if (m := i.mttd_minutes) is not None]
    mtta = [m for i in items if (m := i.mtta_minutes) is not None]
    mttr = [m for i in items if (m := i.mttr_minutes) is not None]
    by_severity: dict[str, int] = {}
    open_by_severity: dict[str, int] = {}
    by_status: dict[str, int] = {}
    by_type: dict[str, int] = {}
    for i in items:
        by_severity[i.severity.value] = by_severity.get(i.severity.value, 0) + 1
        by_status[i.status.value] = by_status.get(i.status.value, 0) + 1
        by_type[i.incident_type.value] = by_type.get(i.incident_type.value, 0) + 1
        if i.is_open:
            open_by_severity[i.severity.value] = open_by_severity.get(i.severity.value, 0) + 1
    out: dict[str, Any] = {
        "total": len(items), "open": sum(1 for i in items if i.is_open), "by_status": by_status, "by_severity": by_severity,
        "open_by_severity": open_by_severity, "by_type": by_type,
        "mttd_minutes": _mean(mttd), "mtta_minutes": _mean(mtta), "mttr_minutes": _mean(mttr),
        "resolved": len(mttr), "acknowledged": len(mtta),
        "escalated": sum(1 for i in items if i.escalation_level > 0),
        "auto_resolved": sum(1 for i in items if i.resolved_by == "auto"),
    }
    if counts is not None:
        out["store"] = dict(counts)
    return out
