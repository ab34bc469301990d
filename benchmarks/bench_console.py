"""What the incident console costs to render (``python benchmarks/bench_console.py``).

With 500 incidents in the SQLite store (a day of evaluations in the SLI series), the time of one
page or live fragment, against the incidents API's JSON listing of the same page of incidents
(``GET /api/incidents?limit=500``), timed round-robin in the same run: the ratio says what the
HTML costs on top of reading the store. Pages render on a worker thread (the engine's loop only
awaits), so this is a cost to the machine and to the viewer's wait, never to the engine's loop.
"""
from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from _common import fmt_ns, header, interleaved_medians

from aphrodite_sla.config import SLAConfig
from aphrodite_sla.console.mount import attach_console
from aphrodite_sla.context import MonitorContext
from aphrodite_sla.incidents.config import parse_incident_config
from aphrodite_sla.incidents.model import IncidentSeverity, IncidentType
from aphrodite_sla.recovery.api_routing import ApiRequest
from aphrodite_sla.sla.evaluation_history import DEFAULT_POINTS, quantile_key

INCIDENTS = 500


def main() -> None:
    header(f"console rendering, {INCIDENTS} incidents in SQLite, a day of SLI points")
    with tempfile.TemporaryDirectory() as tmp:
        context = MonitorContext.build(SLAConfig(api_token="t"))
        incidents = context.attach_incidents(config=replace(parse_incident_config({}), store_path=str(Path(tmp) / "i.db")))
        severities = list(IncidentSeverity)
        ids = []
        for k in range(INCIDENTS):
            inc = incidents.manager.create_manual(title=f"incident {k} <b>", severity=severities[k % 4], incident_type=IncidentType.ERROR_BURST,
                                                  description="", by="bench", labels={"component": "api" if k % 2 else "engine"})
            ids.append(inc.incident_id)
        incidents.refresh_view()
        app = attach_console(context)
        assert app is not None and app.sources.series is not None
        history = app.sources.series
        now = context.manager.clock()
        for key in [quantile_key("request_latency_ms", q) for q in (0.5, 0.95, 0.99)] + ["error_rate_percent", "tokens_per_second"]:
            for i in range(DEFAULT_POINTS, 0, -1):  # a day of points
                history.put(key, now - 5.0 * i, 100.0 + i % 7)

        def page(path: str, **query: str):
            request = ApiRequest("GET", "/console" + path, query, {}, b"")
            return lambda: app.handle(request)

        api_request = ApiRequest("GET", "/api/incidents/", {"limit": "500"}, {}, b"")
        loops = {
            "baseline: GET /api/incidents?limit=500 (JSON)": (lambda: incidents.api.handle(api_request), 1),
            "overview page": (page("/"), 1),
            "incidents page (500 rows)": (page("/incidents"), 1),
            "incidents fragment, ?severity=critical": (page("/fragment/incidents", severity="critical"), 1),
            "incident page (charts over a day of points)": (page(f"/incidents/{ids[-1]}"), 1),
            "incident fragment (live refresh)": (page(f"/fragment/incident/{ids[-1]}"), 1),
        }
        medians = interleaved_medians(loops, rounds=9, warmup=1)
        base = medians["baseline: GET /api/incidents?limit=500 (JSON)"]
        for name, ns in medians.items():
            print(f"   {name:<48} {fmt_ns(ns):>10}   {ns / base:5.2f}x baseline")
        incidents.stop()


if __name__ == "__main__":
    main()
