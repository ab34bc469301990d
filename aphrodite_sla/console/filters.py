"""``IncidentFilter``: the seed's bookmarkable filters (``?severity=critical``, ``?status=active``,
``?component=api``, ``?since=1h``) and the sort order, parsed from the query string.

Why a data class: the pages, the live fragments and the export links carry the same filter, so
it is parsed once, validated (a bad value is reported on the page and ignored, never a 500), and
written back to a query string."""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aphrodite_sla.incidents.model import Incident, IncidentSeverity, IncidentStatus

SEVERITIES = tuple(s.value for s in IncidentSeverity)
STATUSES = tuple(s.value for s in IncidentStatus)
OPEN_STATUSES = tuple(s.value for s in IncidentStatus if s.is_open)
SORT_KEYS = ("detected", "severity", "status", "updated", "title", "id")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
COMPONENT_LABELS = ("component", "service", "sla", "rule", "subject", "deployment")
MAX_LISTED = 500


def parse_since(value: str, now: float) -> float:
    """``1h``/``30m``/``7d`` ago, or epoch seconds."""
    value = value.strip().lower()
    match = _DURATION.match(value)
    if match:
        return now - float(match.group(1)) * _UNIT_S[match.group(2)]
    at = float(value)  # ValueError for anything else
    if not math.isfinite(at) or at < 0:
        raise ValueError(value)
    return at


def component_of(incident: Incident) -> list[str]:
    """The names an incident's component filter matches: its labels that name a part, and its source."""
    names = [incident.labels[k] for k in COMPONENT_LABELS if incident.labels.get(k)]
    if incident.source:
        names.append(incident.source.split(":", 1)[-1])
        names.append(incident.source)
    return [n.lower() for n in names]


@dataclass(frozen=True)
class IncidentFilter:
    severities: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    status_word: str = ""  # as written ("active" is the seed's word for the open statuses)
    component: str = ""
    since_text: str = ""
    since: float | None = None
    sort: str = "detected"
    descending: bool = True
    errors: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_query(cls, query: Mapping[str, str], now: float) -> IncidentFilter:
        errors: list[str] = []
        values: dict[str, Any] = {}
        sev = [v.strip().lower() for v in query.get("severity", "").split(",") if v.strip()]
        bad = [v for v in sev if v not in SEVERITIES]
        if bad:
            errors.append(f"severity {bad[0]!r} is not one of {', '.join(SEVERITIES)}")
        values["severities"] = tuple(v for v in sev if v in SEVERITIES)
        status = query.get("status", "").strip().lower()
        if status in ("active", "open"):
            values["statuses"], values["status_word"] = OPEN_STATUSES, status
        elif status:
            items = [v.strip() for v in status.split(",") if v.strip()]
            wrong = [v for v in items if v not in STATUSES]
            if wrong:
                errors.append(f"status {wrong[0]!r} is not 'active' or one of {', '.join(STATUSES)}")
            values["statuses"] = tuple(v for v in items if v in STATUSES)
            values["status_word"] = ",".join(values["statuses"])
        values["component"] = query.get("component", "").strip()[:200]
        since = query.get("since", "").strip()
        if since:
            try:
                values["since"], values["since_text"] = parse_since(since, now), since[:40]
            except ValueError:
                errors.append(f"since {since[:40]!r}: give a duration (30m, 1h, 7d) or epoch seconds")
        sort = query.get("sort", "detected").strip().lower()
        if sort not in SORT_KEYS:
            errors.append(f"sort {sort[:40]!r} is not one of {', '.join(SORT_KEYS)}")
            sort = "detected"
        values["sort"] = sort
        order = query.get("order", "desc").strip().lower()
        if order not in ("asc", "desc"):
            errors.append("order must be asc or desc")
            order = "desc"
        values["descending"] = order == "desc"
        return cls(errors=tuple(errors), **values)

    @property
    def active(self) -> bool:
        return bool(self.severities or self.statuses or self.component or self.since is not None)

    def query(self, **changes: str) -> str:
        """This filter as a query string (``changes`` override; an empty value drops the key)."""
        params = {"severity": ",".join(self.severities), "status": self.status_word, "component": self.component,
                  "since": self.since_text, "sort": "" if self.sort == "detected" else self.sort,
                  "order": "" if self.descending else "asc"}
        params.update(changes)
        return urlencode({k: v for k, v in params.items() if v})

    def apply(self, incidents: Iterable[Incident]) -> list[Incident]:
        out = [i for i in incidents
               if (not self.severities or i.severity.value in self.severities)
               and (not self.statuses or i.status.value in self.statuses)
               and (self.since is None or i.detected_at >= self.since)
               and (not self.component or self.component.lower() in component_of(i))]
        key = {"detected": lambda i: i.detected_at, "updated": lambda i: i.updated_at, "title": lambda i: i.title.lower(),
               "id": lambda i: i.incident_id, "status": lambda i: STATUSES.index(i.status.value),
               "severity": lambda i: (i.severity.rank, i.detected_at)}[self.sort]
        return sorted(out, key=key, reverse=self.descending)
