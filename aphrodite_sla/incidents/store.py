"""The incident store: incidents, their timeline and audit trail, post-mortems and detection rules
in SQLite (embedded default) or PostgreSQL (a fleet), through SQLAlchemy Core.

Why SQLAlchemy Core and not an ORM: the rows map one to one onto the frozen ``Incident`` and the
same statements run on both databases; only the connection set-up differs. SQLite runs in WAL
mode with ``synchronous=FULL`` and foreign keys on, so a transaction that returned survives a
SIGKILL (and a power cut); writers wait up to ``busy_timeout`` for each other.

Deduplication: ``open_key`` is unique and holds the fingerprint while an incident is open, so two
replicas that detect the same problem at once end with one incident: the second insert fails on
the key and ``create`` returns the one already there.

Every method blocks on the database: callers off the engine's event loop only (the incident
manager's subscriber thread, the API's worker thread, the CLI).
"""
from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, create_engine, delete, event, func, select, update
from sqlalchemy.engine import Connection, Engine, RowMapping, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from aphrodite_sla.forking import fork_waits, reset_in_child
from aphrodite_sla.incidents import schema as s
from aphrodite_sla.incidents.model import (
    AuditEntry,
    Incident,
    IncidentSeverity,
    IncidentStatus,
    IncidentType,
    TimelineEntry,
)

DEFAULT_PATH = "~/.local/state/aphrodite-sla/incidents.db"
OPEN_STATUSES = tuple(st.value for st in IncidentStatus if st.is_open)
_SCALAR_COLUMNS = (
    "correlation_id", "title", "description", "replica", "source", "detected_at", "first_bad_at", "updated_at",
    "acknowledged_at", "acknowledged_by", "assigned_to", "mitigated_at", "recovered_at", "resolved_at", "resolved_by",
    "resolution_notes", "closed_at", "stage", "root_cause", "escalation_level", "escalated_at", "response_failed_at",
    "reminded_at", "event_count", "last_change",
)


@dataclass(frozen=True)
class Retention:
    """How long rows are kept (the seed's ``retention:``): resolved incidents, timeline events,
    post-mortems, in days."""

    resolved_incidents_days: float = 90.0
    event_history_days: float = 7.0
    postmortems_days: float = 365.0


@dataclass(frozen=True)
class Page:
    """One page of a listing and the total that matched."""

    items: list[Incident]
    total: int
    offset: int
    limit: int


def new_incident_id(now: float) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"INC-{stamp}-{secrets.token_hex(3)}"


def sqlite_url(path: str | os.PathLike[str]) -> str:
    return f"sqlite:///{Path(path).expanduser()}"


class IncidentStore:
    """See the module docstring. ``url``: an SQLAlchemy URL (``sqlite:///path``,
    ``postgresql+psycopg://...``); ``replica`` labels what this process writes."""

    def __init__(self, url: str, *, replica: str = "", clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.replica = replica
        self.clock = clock
        self.engine = _engine(url)
        self._lock = threading.Lock()
        with fork_waits(), self.engine.begin() as conn:
            self.schema_version = s.migrate(conn)
        reset_in_child(self)

    def _reset_after_fork(self) -> None:
        # a forked child must not use the parent's pooled connections (nor close them: they are
        # the parent's): it opens its own
        self._lock = threading.Lock()
        self.engine.dispose(close=False)

    @classmethod
    def at_path(cls, path: str | os.PathLike[str], **kwargs: Any) -> IncidentStore:
        target = Path(path).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        return cls(sqlite_url(target), **kwargs)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    # -- incidents --------------------------------------------------------------------------------
    def create(self, incident: Incident, *, audit_actor: str = "system") -> tuple[Incident, bool]:
        """Insert ``incident`` (its timeline and audit too); if an open incident with the same
        fingerprint exists (this or another replica opened it), nothing is inserted and that one is
        returned with ``False``."""
        row = _row(incident)
        row["open_key"] = incident.fingerprint if incident.is_open else None
        try:
            with fork_waits(), self.engine.begin() as conn:
                conn.execute(s.incidents.insert().values(**row))
                self._append(conn, incident.incident_id, incident.timeline, incident.audit)
        except IntegrityError:
            existing = self.find_open(fingerprint=incident.fingerprint)
            if existing is None:  # the id itself collided (practically impossible): retry with a new one
                raise
            return existing, False
        return incident, True

    def save(self, incident: Incident, *, timeline: Iterable[TimelineEntry] = (), audit: Iterable[AuditEntry] = (),
             add_events: int = 0) -> Incident:
        """Write ``incident``'s fields and append ``timeline``/``audit`` in one transaction.
        ``event_count`` is never overwritten: ``add_events`` increments it in the database, so
        replicas joining events to one incident at once lose no count."""
        row = _row(incident)
        row.pop("incident_id")
        row.pop("event_count")
        if add_events:
            row["event_count"] = s.incidents.c.event_count + add_events
        row["open_key"] = incident.fingerprint if incident.is_open else None
        with fork_waits(), self.engine.begin() as conn:
            result = conn.execute(update(s.incidents).where(s.incidents.c.incident_id == incident.incident_id).values(**row))
            if result.rowcount == 0:
                raise KeyError(incident.incident_id)
            self._append(conn, incident.incident_id, tuple(timeline), tuple(audit))
        return incident

    def _append(self, conn: Connection, incident_id: str, timeline: Iterable[TimelineEntry], audit: Iterable[AuditEntry]) -> None:
        events = [{"incident_id": incident_id, "at": t.at, "kind": t.kind, "message": t.message, "actor": t.actor,
                   "stage": t.stage, "data": json.dumps(t.data, default=str), "replica": self.replica} for t in timeline]
        if events:
            conn.execute(s.incident_events.insert(), events)
        entries = [{"incident_id": incident_id, "at": a.at, "actor": a.actor, "action": a.action, "detail": a.detail} for a in audit]
        if entries:
            conn.execute(s.incident_audit.insert(), entries)

    def get(self, incident_id: str, *, full: bool = True) -> Incident | None:
        with fork_waits(), self.engine.connect() as conn:
            row = conn.execute(select(s.incidents).where(s.incidents.c.incident_id == incident_id)).mappings().first()
            if row is None:
                return None
            return self._incident(conn, row, full)

    def find_open(self, *, fingerprint: str | None = None, correlation_id: str | None = None, root_cause: str | None = None) -> Incident | None:
        """The open incident with this fingerprint (else correlation id, else root cause), newest first."""
        conds: list[ColumnElement[bool]] = [s.incidents.c.status.in_(OPEN_STATUSES)]
        if fingerprint is not None:
            conds.append(s.incidents.c.fingerprint == fingerprint)
        elif correlation_id:
            conds.append(s.incidents.c.correlation_id == correlation_id)
        elif root_cause:
            conds.append(s.incidents.c.root_cause == root_cause)
        else:
            return None
        with fork_waits(), self.engine.connect() as conn:
            row = conn.execute(select(s.incidents).where(and_(*conds)).order_by(s.incidents.c.detected_at.desc()).limit(1)).mappings().first()
            return None if row is None else self._incident(conn, row, True)

    def open_of_type(self, incident_type: str | None, since: float) -> Incident | None:
        """The newest open incident of ``incident_type`` (None: of any type) detected at or after ``since``."""
        c = s.incidents.c
        where = [c.status.in_(OPEN_STATUSES), c.detected_at >= since]
        if incident_type is not None:
            where.append(c.incident_type == incident_type)
        with fork_waits(), self.engine.connect() as conn:
            row = conn.execute(select(s.incidents).where(and_(*where)).order_by(c.detected_at.desc()).limit(1)).mappings().first()
            return None if row is None else self._incident(conn, row, True)

    def latest_with(self, fingerprint: str) -> Incident | None:
        """The newest incident of ``fingerprint`` whatever its status (flap suppression reopens it)."""
        with fork_waits(), self.engine.connect() as conn:
            row = conn.execute(select(s.incidents).where(s.incidents.c.fingerprint == fingerprint)
                               .order_by(s.incidents.c.detected_at.desc()).limit(1)).mappings().first()
            return None if row is None else self._incident(conn, row, True)

    def page(self, *, status: Iterable[str] | None = None, severity: Iterable[str] | None = None, incident_type: str | None = None,
             since: float | None = None, replica: str | None = None, limit: int = 50, offset: int = 0) -> Page:
        c = s.incidents.c
        conds: list[ColumnElement[bool]] = []
        if status:
            conds.append(c.status.in_(list(status)))
        if severity:
            conds.append(c.severity.in_(list(severity)))
        if incident_type:
            conds.append(c.incident_type == incident_type)
        if since is not None:
            conds.append(c.detected_at >= since)
        if replica is not None:
            conds.append(c.replica == replica)
        where = and_(True, *conds)
        with fork_waits(), self.engine.connect() as conn:
            total = int(conn.execute(select(func.count()).select_from(s.incidents).where(where)).scalar() or 0)
            rows = conn.execute(select(s.incidents).where(where).order_by(c.detected_at.desc(), c.incident_id)
                                .limit(limit).offset(offset)).mappings().all()
            return Page([self._incident(conn, r, False) for r in rows], total, offset, limit)

    def open_incidents(self, *, full: bool = True) -> list[Incident]:
        with fork_waits(), self.engine.connect() as conn:
            rows = conn.execute(select(s.incidents).where(s.incidents.c.status.in_(OPEN_STATUSES))
                                .order_by(s.incidents.c.detected_at)).mappings().all()
            return [self._incident(conn, r, full) for r in rows]

    def all_incidents(self, *, since: float | None = None, full: bool = True) -> list[Incident]:
        with fork_waits(), self.engine.connect() as conn:
            query = select(s.incidents).order_by(s.incidents.c.detected_at)
            if since is not None:
                query = query.where(s.incidents.c.detected_at >= since)
            return [self._incident(conn, r, full) for r in conn.execute(query).mappings().all()]

    def delete(self, incident_id: str) -> bool:
        with fork_waits(), self.engine.begin() as conn:
            return bool(conn.execute(delete(s.incidents).where(s.incidents.c.incident_id == incident_id)).rowcount)

    # -- post-mortems -----------------------------------------------------------------------------
    def save_postmortem(self, incident_id: str, markdown: str, at: float) -> None:
        with fork_waits(), self.engine.begin() as conn:
            conn.execute(delete(s.postmortems).where(s.postmortems.c.incident_id == incident_id))
            conn.execute(s.postmortems.insert().values(incident_id=incident_id, created_at=at, markdown=markdown))

    def postmortem(self, incident_id: str) -> str | None:
        with fork_waits(), self.engine.connect() as conn:
            value = conn.execute(select(s.postmortems.c.markdown).where(s.postmortems.c.incident_id == incident_id)).scalar()
            return None if value is None else str(value)

    # -- detection rules --------------------------------------------------------------------------
    def save_rule(self, name: str, definition: dict[str, Any], at: float, by: str) -> None:
        with fork_waits(), self.engine.begin() as conn:
            conn.execute(delete(s.detection_rules).where(s.detection_rules.c.name == name))
            conn.execute(s.detection_rules.insert().values(name=name, definition=json.dumps(definition), updated_at=at, updated_by=by))

    def rules(self) -> dict[str, dict[str, Any]]:
        with fork_waits(), self.engine.connect() as conn:
            return {r.name: json.loads(r.definition) for r in conn.execute(select(s.detection_rules))}

    # -- retention and statistics -----------------------------------------------------------------
    def purge(self, retention: Retention, now: float | None = None) -> dict[str, int]:
        """Delete what the retention allows: timeline events older than ``event_history_days``,
        resolved or closed incidents (with their rows) older than ``resolved_incidents_days``,
        post-mortems older than ``postmortems_days`` (an incident with a younger post-mortem is kept
        as long as its post-mortem). Open incidents are never purged."""
        now = self.clock() if now is None else now
        day = 86_400.0
        c = s.incidents.c
        with fork_waits(), self.engine.begin() as conn:
            events = conn.execute(delete(s.incident_events).where(s.incident_events.c.at < now - retention.event_history_days * day)).rowcount
            pms = conn.execute(delete(s.postmortems).where(s.postmortems.c.created_at < now - retention.postmortems_days * day)).rowcount
            kept = select(s.postmortems.c.incident_id)
            old = and_(c.status.not_in(OPEN_STATUSES), c.resolved_at < now - retention.resolved_incidents_days * day,
                       c.incident_id.not_in(kept))
            gone = [r[0] for r in conn.execute(select(c.incident_id).where(old))]
            if gone:
                conn.execute(delete(s.incident_audit).where(s.incident_audit.c.incident_id.in_(gone)))
                conn.execute(delete(s.incident_events).where(s.incident_events.c.incident_id.in_(gone)))
                conn.execute(delete(s.incidents).where(c.incident_id.in_(gone)))
        return {"events": int(events or 0), "postmortems": int(pms or 0), "incidents": len(gone)}

    def counts(self) -> dict[str, Any]:
        c = s.incidents.c
        with fork_waits(), self.engine.connect() as conn:
            by_status = {r[0]: int(r[1]) for r in conn.execute(select(c.status, func.count()).group_by(c.status))}
            open_by_severity = {r[0]: int(r[1]) for r in conn.execute(
                select(c.severity, func.count()).where(c.status.in_(OPEN_STATUSES)).group_by(c.severity))}
            by_type = {r[0]: int(r[1]) for r in conn.execute(select(c.incident_type, func.count()).group_by(c.incident_type))}
        return {"by_status": by_status, "open_by_severity": open_by_severity, "by_type": by_type}

    # -- rows <-> incidents -----------------------------------------------------------------------
    def _incident(self, conn: Connection, row: RowMapping, full: bool) -> Incident:
        timeline: tuple[TimelineEntry, ...] = ()
        audit: tuple[AuditEntry, ...] = ()
        if full:
            ev = s.incident_events.c
            timeline = tuple(TimelineEntry(r.at, r.kind, r.message, r.actor, r.stage, json.loads(r.data or "{}"))
                             for r in conn.execute(select(s.incident_events).where(ev.incident_id == row["incident_id"])
                                                   .order_by(ev.at, ev.id)))
            au = s.incident_audit.c
            audit = tuple(AuditEntry(r.at, r.actor, r.action, r.detail)
                          for r in conn.execute(select(s.incident_audit).where(au.incident_id == row["incident_id"]).order_by(au.at, au.id)))
        values = {name: row[name] for name in _SCALAR_COLUMNS}
        return Incident(
            incident_id=row["incident_id"], fingerprint=row["fingerprint"], severity=IncidentSeverity(row["severity"]),
            incident_type=IncidentType(row["incident_type"]), status=IncidentStatus(row["status"]),
            labels=json.loads(row["labels"] or "{}"), root_cause_detail=json.loads(row["root_cause_detail"] or "{}"),
            pending_approvals=tuple(json.loads(row["pending_approvals"] or "[]")), timeline=timeline, audit=audit, **values,
        )


def _row(incident: Incident) -> dict[str, Any]:
    row = {name: getattr(incident, name) for name in _SCALAR_COLUMNS}
    row.update(incident_id=incident.incident_id, fingerprint=incident.fingerprint, severity=incident.severity.value,
               incident_type=incident.incident_type.value, status=incident.status.value,
               labels=json.dumps(dict(incident.labels)), root_cause_detail=json.dumps(dict(incident.root_cause_detail), default=str),
               pending_approvals=json.dumps(list(incident.pending_approvals)))
    return row


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # the default store (~/.local/state/aphrodite-sla/incidents.db) lives in a folder a fresh
        # machine does not have: SQLite creates the file, not its folder
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # a small pool of connections shared by our threads (other processes open their own), each
        # set to WAL, FULL sync and foreign keys once, as it opens
        engine = create_engine(url, pool_size=4, max_overflow=4, pool_pre_ping=False,
                               connect_args={"check_same_thread": False, "timeout": 30.0})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)
