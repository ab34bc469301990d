"""Notifications: incident changes delivered to people through a durable outbox.

``IncidentChanged`` events (from the incident manager, on the event stream) are routed to
receivers (by severity, or the event's explicit ``receivers``), written to the outbox table
before anything is sent, and delivered by a dispatcher thread with retry and back-off.
Start with :func:`aphrodite_sla.notify.notifier.build_notifier`.
"""
