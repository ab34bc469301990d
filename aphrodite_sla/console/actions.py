"""What a signed-in person does from the console, through the same API routes the CLI calls
(``/api/incidents/...`` and ``/api/auto-recovery/...``, with the bearer token), so validation,
the lifecycle's transitions and the audit trail are the same whichever way a person acts.

Two things the incidents API has no route for are written through the incident manager here: the
timeline note that a mitigation was chosen in the console, and the note that a console-started
action's approval was decided (recovery's approval of a hand-run action carries no incident)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aphrodite_sla.incidents.model import ResponseStage
from aphrodite_sla.recovery.api_routing import ApiRequest
from aphrodite_sla.recovery.model import RecoveryAction

if TYPE_CHECKING:  # pragma: no cover
    from aphrodite_sla.incidents.service import IncidentSystem
    from aphrodite_sla.recovery.service import RecoverySystem

MITIGATE_FROM = ("detected", "acknowledged", "investigating")


@dataclass(frozen=True)
class ActionOutcome:
    ok: bool
    message: str


def risky_actions(recovery: RecoverySystem | None) -> frozenset[str]:
    """The actions that wait for a person's approval in this process's recovery engine."""
    if recovery is None:
        return frozenset()
    engine = recovery.engine
    needs = getattr(engine, "_needs_approval", None)
    handlers = getattr(engine, "_handlers", {})
    if callable(needs):
        return frozenset(a.value for a in RecoveryAction if needs(a, handlers.get(a)))
    return frozenset({RecoveryAction.SERVICE_RESTART.value, RecoveryAction.DEPLOYMENT_ROLLBACK.value})


class ConsoleActions:
    def __init__(self, incidents: IncidentSystem, recovery: RecoverySystem | None, token: str) -> None:
        self.incidents = incidents
        self.recovery = recovery
        self.token = token

    def _call(self, api: Any, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        response = api.handle(ApiRequest(method, path, {}, headers, json.dumps(body).encode()))
        try:
            payload = json.loads(response.body)
        except ValueError:
            payload = {}
        return response.status, payload

    def _incident_call(self, path: str, body: dict[str, Any], done: str) -> ActionOutcome:
        status, payload = self._call(self.incidents.api, "POST", path, body)
        if status >= 400:
            return ActionOutcome(False, str(payload.get("error", f"refused ({status})")))
        return ActionOutcome(True, done)

    def acknowledge(self, incident_id: str, by: str) -> ActionOutcome:
        return self._incident_call(f"/api/incidents/{incident_id}/acknowledge", {"by": by}, f"acknowledged by {by}")

    def assign(self, incident_id: str, assignee: str, by: str) -> ActionOutcome:
        if not assignee.strip():
            return ActionOutcome(False, "give the name of the person to assign")
        return self._incident_call(f"/api/incidents/{incident_id}/assign", {"assignee": assignee.strip(), "by": by},
                                   f"assigned to {assignee.strip()}")

    def resolve(self, incident_id: str, notes: str, by: str) -> ActionOutcome:
        return self._incident_call(f"/api/incidents/{incident_id}/resolve", {"notes": notes, "by": by}, f"resolved by {by}")

    def mitigate(self, incident_id: str, action: str, by: str) -> ActionOutcome:
        """Run ``action`` through recovery's action route (approval rules apply), note it on the
        incident's timeline and move the incident to mitigating."""
        if self.recovery is None:
            return ActionOutcome(False, "recovery is not running in this process: mitigate through the engine's console")
        incident = self.incidents.store.get(incident_id)
        if incident is None:
            return ActionOutcome(False, f"unknown incident {incident_id!r}")
        if not incident.is_open:
            return ActionOutcome(False, f"{incident_id} is {incident.status.value}: nothing to mitigate")
        try:
            chosen = RecoveryAction(action)
        except ValueError:
            return ActionOutcome(False, f"unknown action {action!r}")
        status, payload = self._call(self.recovery.api, "POST", f"/api/auto-recovery/test/{chosen.value}", {"by": by})
        if status >= 400:
            return ActionOutcome(False, str(payload.get("error", f"refused ({status})")))
        risky = chosen.value in risky_actions(self.recovery)
        wait = "; it waits for approval (approve it below)" if risky else ""
        self.incidents.manager.note(incident_id, by=by, kind="mitigation", message=f"{chosen.value} started from the console by {by}{wait}",
                                    stage=ResponseStage.CONTAINMENT, data={"action": chosen.value, "ticket": payload.get("ticket", "")})
        if incident.status.value in MITIGATE_FROM:
            self._call(self.incidents.api, "POST", f"/api/incidents/{incident_id}/status",
                       {"status": "mitigating", "by": by, "message": f"mitigating: {chosen.value}"})
        return ActionOutcome(True, f"{chosen.value} started{wait}")

    def decide(self, incident_id: str, request_id: str, approve: bool, by: str, reason: str = "") -> ActionOutcome:
        """An action waiting for approval: through the incident's route when recovery linked it to
        this incident, else recovery's approvals route (and a note on this incident)."""
        verb = "approve" if approve else "deny"
        body: dict[str, Any] = {"by": by} if approve else {"by": by, "reason": reason}
        incident = self.incidents.store.get(incident_id)
        if incident is None:
            return ActionOutcome(False, f"unknown incident {incident_id!r}")
        if request_id in incident.pending_approvals:
            return self._incident_call(f"/api/incidents/{incident_id}/approvals/{request_id}/{verb}", body, f"{request_id} {verb}d")
        if self.recovery is None:
            return ActionOutcome(False, "recovery is not running in this process")
        status, payload = self._call(self.recovery.api, "POST", f"/api/auto-recovery/approvals/{request_id}/{verb}", body)
        if status >= 400:
            return ActionOutcome(False, str(payload.get("error", f"refused ({status})")))
        action = payload.get("action", "")
        self.incidents.manager.note(incident_id, by=by, kind="approval", message=f"{action} ({request_id}) {verb}d by {by}"
                                    + (f": {reason}" if reason else ""), stage=ResponseStage.REMEDIATION,
                                    data={"request_id": request_id, "approved": approve})
        return ActionOutcome(True, f"{action or request_id} {verb}d")
