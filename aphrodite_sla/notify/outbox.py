"""The durable outbox (SQLAlchemy Core): notifications are rows before anything is sent.

Why an outbox: a receiver may be down for an hour and the process may be killed in between;
a notification written here (committed, WAL and ``synchronous=FULL`` on SQLite) survives both,
and the dispatcher delivers it later — at least once, and at most once per dedup key because
the key is unique (a re-published change inserts nothing). Claims are leases
(``claimed_until``), so two dispatchers (replicas on one PostgreSQL) never send a row at once
and a dispatcher that died mid-send lets its rows go after the lease.

Tables are prefixed ``notification_`` and created by :func:`ensure_schema` (idempotent, with a
schema version), so they live beside the incident store's tables in the same database.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from aphrodite_sla.forking import fork_waits, reset_in_child
from aphrodite_sla.notify.model import IncidentFacts, Notification, NotificationStatus, dedup_key

SCHEMA_VERSION = 1
LEASE_S = 120.0  # a claimed row goes back to the queue after this (the sender's timeouts are shorter)
_ERROR_CHARS = 1000

metadata = sa.MetaData()
schema_version = sa.Table(
    "notification_schema_version", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)
outbox = sa.Table(
    "notification_outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dedup_key", sa.String(512), nullable=False, unique=True),
    sa.Column("receiver", sa.String(64), nullable=False),
    sa.Column("fingerprint", sa.String(128), nullable=False),
    sa.Column("incident_id", sa.String(128), nullable=False),
    sa.Column("change", sa.String(32), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("escalation_level", sa.Integer, nullable=False),
    sa.Column("facts", sa.Text, nullable=False),  # IncidentFacts as JSON: no secrets, by construction
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("claimed_until", sa.Float, nullable=False, default=0.0),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text, nullable=False, default=""),
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Index("ix_notification_outbox_due", "status", "next_attempt_at"),
    sa.Index("ix_notification_outbox_incident", "fingerprint", "receiver"),
)
attempts = sa.Table(
    "notification_attempts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("notification_id", sa.Integer, sa.ForeignKey("notification_outbox.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("attempted_at", sa.Float, nullable=False),
    sa.Column("duration_s", sa.Float, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text, nullable=False, default=""),
)


def create_engine(url: str) -> sa.Engine:
    """An engine for ``url``; SQLite gets WAL, ``synchronous=FULL`` (a commit is on disk when it
    returns), a busy timeout and foreign keys on every connection."""
    engine = sa.create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    return engine


def ensure_schema(engine: sa.Engine) -> int:
    """Create or migrate the ``notification_`` tables; idempotent and safe to race (two processes
    starting at once). Returns the schema version. A newer version than this code knows is an
    error (an older build must not write to a newer layout)."""
    with fork_waits():
        metadata.create_all(engine, checkfirst=True)
    with fork_waits(), engine.begin() as conn:
        found = conn.execute(sa.select(schema_version.c.version).where(schema_version.c.id == 1)).scalar()
        if found is None:
            try:
                with conn.begin_nested():
                    conn.execute(schema_version.insert().values(id=1, version=SCHEMA_VERSION))
            except IntegrityError:  # another process wrote it first
                found = conn.execute(sa.select(schema_version.c.version).where(schema_version.c.id == 1)).scalar()
        if found is not None and found > SCHEMA_VERSION:
            raise RuntimeError(f"notification outbox schema version {found} is newer than this build's {SCHEMA_VERSION}")
        # Migrations from older versions go here (version 1 is the first).
    return SCHEMA_VERSION


@dataclass(frozen=True)
class OutboxCounts:
    """Rows by receiver and status, read by the metrics view."""

    by_receiver: dict[str, dict[str, int]]


class Outbox:
    """Enqueue, claim and settle notification rows in ``engine``'s database."""

    def __init__(self, engine: sa.Engine, *, clock: Callable[[], float] = time.time, lease_s: float = LEASE_S) -> None:
        self.engine = engine
        self.clock = clock
        self.lease_s = lease_s
        ensure_schema(engine)
        reset_in_child(self)

    def _reset_after_fork(self) -> None:
        # a forked child must not use the parent's pooled connections (nor close them: they are
        # the parent's): it opens its own
        self.engine.dispose(close=False)

    # -- writing --------------------------------------------------------------------------------
    def enqueue(self, facts: IncidentFacts, receivers: Iterable[str]) -> list[str]:
        """Write one row per receiver in one transaction; durable when this returns. Returns the
        dedup keys that were new (a key already in the outbox inserts nothing)."""
        now = self.clock()
        body = json.dumps(facts.to_json(), sort_keys=True)
        rows: list[dict[str, Any]] = [
            {"dedup_key": dedup_key(facts, r), "receiver": r, "fingerprint": facts.fingerprint, "incident_id": facts.incident_id,
             "change": facts.change, "severity": facts.severity, "escalation_level": facts.escalation_level, "facts": body,
             "status": NotificationStatus.PENDING.value, "attempts": 0, "next_attempt_at": now, "claimed_until": 0.0,
             "created_at": now, "last_error": ""}
            for r in dict.fromkeys(receivers)
        ]
        if not rows:
            return []
        new: list[str] = []
        with fork_waits(), self.engine.begin() as conn:
            for row in rows:
                if self._insert_new(conn, row):
                    new.append(row["dedup_key"])
        return new

    def _insert_new(self, conn: sa.Connection, row: dict) -> bool:
        dialect = self.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
            # RETURNING, not rowcount: a skipped insert returns no row on every driver
            result = conn.execute(insert(outbox).values(**row).on_conflict_do_nothing(index_elements=["dedup_key"]).returning(outbox.c.id))
            return result.first() is not None
        try:  # other databases: a savepoint per row keeps the transaction usable after a duplicate
            with conn.begin_nested():
                conn.execute(outbox.insert().values(**row))
            return True
        except IntegrityError:
            return False

    # -- dispatching ----------------------------------------------------------------------------
    def claim_due(self, limit: int, *, exclude_receivers: Sequence[str] = ()) -> list[Notification]:
        """Lease up to ``limit`` pending rows whose attempt is due (oldest first). A row another
        dispatcher claimed meanwhile is skipped (the UPDATE's condition fails). A row waits while
        an older row of the same incident for the same receiver is still pending: changes reach a
        receiver in order (a PagerDuty resolve never overtakes its trigger's retry)."""
        now = self.clock()
        older = outbox.alias("older")
        waits = sa.exists().where(
            older.c.receiver == outbox.c.receiver, older.c.fingerprint == outbox.c.fingerprint,
            older.c.id < outbox.c.id, older.c.status == NotificationStatus.PENDING.value,
        )
        query = (
            sa.select(outbox)
            .where(outbox.c.status == NotificationStatus.PENDING.value, outbox.c.next_attempt_at <= now, outbox.c.claimed_until <= now,
                   ~waits)
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(limit * 8)  # rows of a receiver already taken are skipped below
        )
        if exclude_receivers:
            query = query.where(outbox.c.receiver.not_in(list(exclude_receivers)))
        claimed: list[Notification] = []
        receivers: set[str] = set()
        with fork_waits(), self.engine.begin() as conn:
            for row in conn.execute(query).mappings().all():
                if row["receiver"] in receivers:  # one row per receiver per lease: in order, one in flight
                    continue
                took = conn.execute(
                    outbox.update()
                    .where(outbox.c.id == row["id"], outbox.c.claimed_until <= now, outbox.c.status == NotificationStatus.PENDING.value)
                    .values(claimed_until=now + self.lease_s)
                ).rowcount
                if took:
                    receivers.add(row["receiver"])
                    claimed.append(_notification(row))
                    if len(claimed) >= limit:
                        break
        return claimed

    def mark_delivered(self, n: Notification, started_at: float) -> None:
        now = self.clock()
        with fork_waits(), self.engine.begin() as conn:
            conn.execute(outbox.update().where(outbox.c.id == n.id).values(
                status=NotificationStatus.DELIVERED.value, attempts=outbox.c.attempts + 1, delivered_at=now, claimed_until=0.0))
            conn.execute(attempts.insert().values(notification_id=n.id, attempted_at=started_at, duration_s=now - started_at, ok=True, error=""))

    def mark_failed(self, n: Notification, started_at: float, error: str, retry_at: float | None) -> None:
        """Record a failed attempt: retry at ``retry_at``, or give up (status failed) when None."""
        now = self.clock()
        error = error[:_ERROR_CHARS]
        values: dict = {"attempts": outbox.c.attempts + 1, "last_error": error, "claimed_until": 0.0}
        if retry_at is None:
            values["status"] = NotificationStatus.FAILED.value
        else:
            values["next_attempt_at"] = retry_at
        with fork_waits(), self.engine.begin() as conn:
            conn.execute(outbox.update().where(outbox.c.id == n.id).values(**values))
            conn.execute(attempts.insert().values(notification_id=n.id, attempted_at=started_at, duration_s=now - started_at, ok=False, error=error))

    def purge(self, before: float) -> int:
        """Delete delivered and given-up rows created before ``before`` (and their attempts): the
        retention the incident store configures. Pending rows are never purged. Returns rows deleted."""
        done = (outbox.c.status != NotificationStatus.PENDING.value) & (outbox.c.created_at < before)
        with fork_waits(), self.engine.begin() as conn:
            conn.execute(attempts.delete().where(attempts.c.notification_id.in_(sa.select(outbox.c.id).where(done))))
            return int(conn.execute(outbox.delete().where(done)).rowcount)

    # -- reading --------------------------------------------------------------------------------
    def counts(self) -> OutboxCounts:
        out: dict[str, dict[str, int]] = {}
        with fork_waits(), self.engine.connect() as conn:
            for receiver, status, n in conn.execute(
                    sa.select(outbox.c.receiver, outbox.c.status, sa.func.count()).group_by(outbox.c.receiver, outbox.c.status)):
                out.setdefault(receiver, {})[status] = int(n)
        return OutboxCounts(out)

    def notifications(self, *, receiver: str | None = None, status: NotificationStatus | None = None, limit: int = 1000) -> list[Notification]:
        """The newest ``limit`` rows (filtered), oldest first."""
        query = sa.select(outbox).order_by(outbox.c.id.desc()).limit(limit)
        if receiver is not None:
            query = query.where(outbox.c.receiver == receiver)
        if status is not None:
            query = query.where(outbox.c.status == status.value)
        with fork_waits(), self.engine.connect() as conn:
            return [_notification(r) for r in reversed(conn.execute(query).mappings().all())]

    def of_incident(self, incident_id: str, limit: int = 500) -> list[Notification]:
        """The rows of one incident, oldest first (the console's notifications section)."""
        query = sa.select(outbox).where(outbox.c.incident_id == incident_id).order_by(outbox.c.id).limit(limit)
        with fork_waits(), self.engine.connect() as conn:
            return [_notification(r) for r in conn.execute(query).mappings().all()]

    def attempts_of(self, notification_id: int) -> list[dict]:
        with fork_waits(), self.engine.connect() as conn:
            rows = conn.execute(sa.select(attempts).where(attempts.c.notification_id == notification_id).order_by(attempts.c.id))
            return [dict(r) for r in rows.mappings().all()]

    def last_delivered(self, receiver: str, fingerprint: str) -> Notification | None:
        """The newest notification of incident ``fingerprint`` delivered to ``receiver``."""
        query = (sa.select(outbox).where(outbox.c.receiver == receiver, outbox.c.fingerprint == fingerprint,
                                         outbox.c.status == NotificationStatus.DELIVERED.value).order_by(outbox.c.id.desc()).limit(1))
        with fork_waits(), self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return _notification(row) if row is not None else None

    def firing(self, receiver: str) -> list[Notification]:
        """Per incident fingerprint, the last delivered notification to ``receiver`` when it is not
        a resolution: the alerts an Alertmanager receiver must keep re-sending."""
        last = (
            sa.select(sa.func.max(outbox.c.id))
            .where(outbox.c.receiver == receiver, outbox.c.status == NotificationStatus.DELIVERED.value)
            .group_by(outbox.c.fingerprint)
        )
        with fork_waits(), self.engine.connect() as conn:
            rows = conn.execute(sa.select(outbox).where(outbox.c.id.in_(last)).order_by(outbox.c.id)).mappings().all()
        return [n for n in map(_notification, rows) if not n.facts.resolving]


def _notification(row: sa.RowMapping) -> Notification:
    return Notification(
        id=row["id"], dedup_key=row["dedup_key"], receiver=row["receiver"], facts=IncidentFacts.from_json(json.loads(row["facts"])),
        status=NotificationStatus(row["status"]), attempts=row["attempts"], next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"], last_error=row["last_error"] or "", delivered_at=row["delivered_at"],
    )
