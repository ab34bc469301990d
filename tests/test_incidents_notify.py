"""Incidents and notifications wired together: an incident opened by the monitor is delivered by the
notifier built with the incident system (its outbox in the incident store's database), and the
console's notifications section reads the deliveries back."""
from __future__ import annotations

from aphrodite_sla import ManualClock
from aphrodite_sla.config import SLAConfig
from aphrodite_sla.console.notifications import deliveries_of, find_source
from aphrodite_sla.context import MonitorContext
from aphrodite_sla.notify.local_receivers import LocalReceivers
from tests.test_incidents import T0, TOKEN, drive, lat_sla


def test_an_incident_is_delivered_through_the_outbox_in_the_store(tmp_path):
    receivers = LocalReceivers.start()
    try:
        section = {"store_path": str(tmp_path / "incidents.db"), "notifications": receivers.notifications_config()}
        cfg = SLAConfig(thresholds=(lat_sla(),), api_token=TOKEN, incident_response=section)
        clock = ManualClock(T0)
        ctx = MonitorContext.build(cfg, clock=clock, with_recovery=False, with_rca=False)
        system = ctx.attach_incidents(notifier_env=receivers.env)
        system.start()
        drive(ctx, clock, 1000.0, 60)  # a critical violation: Slack and PagerDuty
        assert system.notifier is not None and system.notifier.wait_delivered(20)
        incident = system.store.page().items[0]
        assert system.notifier.outbox.engine is system.store.engine  # one database
        assert receivers.pagerduty.bodies() and receivers.slack.bodies()
        assert receivers.pagerduty.bodies()[0]["dedup_key"] == incident.fingerprint
        shown = deliveries_of(find_source(system), incident.incident_id)
        assert shown and {d.receiver for d in shown} >= {"slack", "pagerduty"}
        assert all(d.state.endswith("delivered") for d in shown)
    finally:
        if ctx.incidents is not None:
            ctx.incidents.close()
        receivers.stop()
