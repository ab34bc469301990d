"""Incidents in a simulation (``simulate --incidents-db``, ``make demo``): the incident system on the
simulated engine's monitor, on engine time, resolving by itself once the SLAs hold, and at the end
a post-mortem for every incident (markdown files beside the database too).

A simulated on-call acknowledges each incident a minute (engine time) after it opened, so the
acknowledgement path and MTTA are exercised as the recovery driver exercises approvals.

Why a separate helper: the simulator only calls ``attach`` and ``finish``; everything about how
incidents run in a simulation (auto-resolution, the replica label, closing what is still open
when the engine stops) stays here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aphrodite_sla.events import SnapshotPublished
from aphrodite_sla.incidents.config import parse_incident_config
from aphrodite_sla.incidents.model import IncidentStatus

if TYPE_CHECKING:  # pragma: no cover
    from aphrodite_sla.context import MonitorContext
    from aphrodite_sla.incidents.service import IncidentSystem

SIM_AUTO_RESOLVE_S = 120.0
ACK_AFTER_S = 60.0  # the simulated on-call acknowledges an incident this many engine seconds after it opened


def attach(context: MonitorContext, db_path: str | Path) -> IncidentSystem:
    path = Path(db_path).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    base = parse_incident_config(context.config.incident_response)
    config = replace(base, store_path=str(path), database_url="", replica=base.replica or "simulator", auto_resolution=True,
                     auto_resolve_after_seconds=min(base.auto_resolve_after_seconds, SIM_AUTO_RESOLVE_S))
    system = context.attach_incidents(config=config)
    system.start()
    clock = context.manager.clock

    def simulated_oncall(_event: object) -> None:
        now = clock()
        for incident in system.store.open_incidents():
            if incident.acknowledged_at is None and now - incident.detected_at >= ACK_AFTER_S:
                system.manager.acknowledge(incident.incident_id, "simulated-oncall")

    context.manager.subscribe(simulated_oncall, SnapshotPublished, name="simulated-oncall")
    return system


def finish(system: IncidentSystem, out: Callable[[str], None] = print) -> dict[str, Any]:
    """Resolve what the simulation left open (the engine stopped), write every incident's
    post-mortem to the store and to ``postmortems/<id>.md`` beside the database, print a summary."""
    if system.events is not None:
        system.events.drain(10.0)
    for incident in system.store.open_incidents():
        system.resolve(incident.incident_id, "simulate", "the simulation ended with the incident open")
    incidents = system.store.all_incidents()
    db = Path(system.config.store_path)
    folder = db.parent / "postmortems"
    folder.mkdir(exist_ok=True)
    for incident in incidents:
        markdown = system.store.postmortem(incident.incident_id) or system.write_postmortem(incident) or ""
        (folder / f"{incident.incident_id}.md").write_text(markdown, encoding="utf-8")
    stats = system.statistics()
    resolved = [i for i in incidents if i.status in (IncidentStatus.RESOLVED, IncidentStatus.CLOSED)]
    out(f"\nincidents: {len(incidents)} in {db} ({len(resolved)} resolved, {stats['auto_resolved']} automatically); "
        f"post-mortems in {folder}")
    for incident in incidents:
        mttd = "-" if incident.mttd_minutes is None else f"{incident.mttd_minutes * 60:.0f}s"
        mttr = "-" if incident.mttr_minutes is None else f"{incident.mttr_minutes * 60:.0f}s"
        out(f"  {incident.incident_id}  {incident.severity.value:<8} {incident.incident_type.value:<24} MTTD {mttd:>5}  MTTR {mttr:>6}  "
            f"{incident.title}" + (f" (root cause: {incident.root_cause})" if incident.root_cause else ""))
    out(f"read them back: aphrodite-sla incidents list --store {db}")
    system.close()
    return stats
