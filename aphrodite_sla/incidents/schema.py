"""The incident store's tables and their migrations (SQLAlchemy Core, one schema for SQLite and
PostgreSQL).

Why numbered migrations beside the tables: an engine upgraded in place opens a database an older
version wrote; ``migrate`` brings it to ``SCHEMA_VERSION`` step by step and records the version,
and a database newer than this code is refused rather than misread. Every step is idempotent
(``checkfirst``), so a process killed in the middle of one finishes it on the next start.
"""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
    text,
)
from sqlalchemy.engine import Connection

SCHEMA_VERSION = 2

metadata = MetaData()

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

incidents = Table(
    "incidents", metadata,
    Column("incident_id", String(64), primary_key=True),
    Column("fingerprint", String(128), nullable=False, index=True),
    # the fingerprint while the incident is open, NULL after: a unique key that lets only one open
    # incident per fingerprint exist, however many replicas detect it at once
    Column("open_key", String(128), unique=True),
    Column("correlation_id", String(256), nullable=False, default="", index=True),
    Column("title", String(512), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("severity", String(16), nullable=False, index=True),
    Column("incident_type", String(64), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("replica", String(128), nullable=False, default=""),
    Column("source", String(128), nullable=False, default=""),
    Column("labels", Text, nullable=False, default="{}"),
    Column("detected_at", Float, nullable=False, index=True),
    Column("first_bad_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("acknowledged_at", Float),
    Column("acknowledged_by", String(256), nullable=False, default=""),
    Column("assigned_to", String(256), nullable=False, default=""),
    Column("mitigated_at", Float),
    Column("recovered_at", Float),
    Column("resolved_at", Float, index=True),
    Column("resolved_by", String(256), nullable=False, default=""),
    Column("resolution_notes", Text, nullable=False, default=""),
    Column("closed_at", Float),
    Column("stage", String(32), nullable=False, default="assessment"),
    Column("root_cause", String(256), nullable=False, default=""),
    Column("root_cause_detail", Text, nullable=False, default="{}"),
    Column("escalation_level", Integer, nullable=False, default=0),
    Column("escalated_at", Float),
    Column("response_failed_at", Float),
    Column("reminded_at", Float),
    Column("pending_approvals", Text, nullable=False, default="[]"),
    Column("event_count", Integer, nullable=False, default=1),
    Column("last_change", String(32), nullable=False, default="opened"),
)

incident_events = Table(
    "incident_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", String(64), ForeignKey("incidents.incident_id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", Float, nullable=False, index=True),
    Column("kind", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("actor", String(256), nullable=False, default="system"),
    Column("stage", String(32), nullable=False, default=""),
    Column("data", Text, nullable=False, default="{}"),
    Column("replica", String(128), nullable=False, default=""),
)

incident_audit = Table(
    "incident_audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", String(64), ForeignKey("incidents.incident_id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(64), nullable=False),
    Column("detail", Text, nullable=False, default=""),
)

postmortems = Table(
    "postmortems", metadata,
    Column("incident_id", String(64), ForeignKey("incidents.incident_id", ondelete="CASCADE"), primary_key=True),
    Column("created_at", Float, nullable=False, index=True),
    Column("markdown", Text, nullable=False),
)

# version 2: detection rules changed at run time survive a restart and are shared by a fleet
detection_rules = Table(
    "detection_rules", metadata,
    Column("name", String(128), primary_key=True),
    Column("definition", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(256), nullable=False, default=""),
)


def _v1(conn: Connection) -> None:
    for table in (schema_version, incidents, incident_events, incident_audit, postmortems):
        table.create(conn, checkfirst=True)


def _v2(conn: Connection) -> None:
    detection_rules.create(conn, checkfirst=True)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1, 2: _v2}


class SchemaError(RuntimeError):
    """The database was written by a newer version (or is not ours)."""


def current_version(conn: Connection) -> int:
    if not conn.dialect.has_table(conn, "schema_version"):
        return 0
    value = conn.execute(select(schema_version.c.version)).scalar()
    return int(value or 0)


def migrate(conn: Connection) -> int:
    """Bring the schema to ``SCHEMA_VERSION`` (inside the caller's transaction); the version reached."""
    if conn.dialect.name == "postgresql":  # replicas starting together migrate one at a time
        conn.execute(text("SELECT pg_advisory_xact_lock(774411)"))
    version = current_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaError(f"the incident store is at schema version {version}, newer than this code's {SCHEMA_VERSION}: upgrade aphrodite-sla")
    for step in range(version + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[step](conn)
        if step == 1:
            conn.execute(schema_version.insert().values(version=1))
        else:
            conn.execute(schema_version.update().values(version=step))
    return SCHEMA_VERSION
