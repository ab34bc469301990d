"""The incident CLI (on the store and against a running server), the full chain in the simulator
from an injected fault to a post-mortem, and the incidents API inside the engine's app."""
from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from aphrodite_sla.cli import main
from aphrodite_sla.events import IncidentChanged
from aphrodite_sla.incidents.store import IncidentStore
from tests.tools import start_simulator, stop_process

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aphrodite_sla.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_on_the_store_with_exit_codes(tmp_path, capsys):
    store = ["--store", str(tmp_path / "i.db")]
    code, out, _ = run(capsys, "incidents", "create", *store, "--title", "KV cache thrashing", "--severity", "high",
                       "--type", "memory_exhaustion", "--json", "--by", "alice")
    assert code == 0
    incident_id = json.loads(out)["id"]
    code, out, _ = run(capsys, "incidents", "list", *store, "--json", "--status", "open")
    assert code == 0 and [i["id"] for i in json.loads(out)["incidents"]] == [incident_id]
    assert run(capsys, "incidents", "acknowledge", incident_id, *store, "--by", "bob")[0] == 0
    code, _, err = run(capsys, "incidents", "close", incident_id, *store)
    assert code == 1 and "cannot go from acknowledged to closed" in err  # not allowed now: 1
    assert run(capsys, "incidents", "get", "INC-missing", *store)[0] == 1
    assert run(capsys, "incidents", "list", *store, "--severity", "urgent")[0] == 2  # bad input: 2
    assert run(capsys, "incidents", "list", *store, "--since", "yesterday")[0] == 2
    assert run(capsys, "incidents", "update", incident_id, *store, "--status", "mitigating", "--message", "evicting")[0] == 0
    assert run(capsys, "incidents", "mitigate", incident_id, *store, "--list-actions")[0] == 0
    assert run(capsys, "incidents", "resolve", incident_id, *store, "--notes", "raised gpu_memory_utilization")[0] == 0
    target = tmp_path / "pm.md"
    assert run(capsys, "incidents", "postmortem", incident_id, *store, "--output", str(target))[0] == 0
    assert "## Root cause" in target.read_text() and "raised gpu_memory_utilization" in target.read_text()
    code, out, _ = run(capsys, "incidents", "get", incident_id, *store, "--json", "--full")
    got = json.loads(out)
    me = getpass.getuser()
    assert [(a["action"], a["actor"]) for a in got["audit"]] == [("opened", "system"), ("acknowledged", "bob"), ("status", me), ("resolved", me)]
    assert got["acknowledged_by"] == "bob" and got["status"] == "resolved" and got["mtta_minutes"] is not None
    code, out, _ = run(capsys, "incidents", "stats", *store, "--json")
    assert code == 0 and json.loads(out)["resolved"] == 1
    assert run(capsys, "incidents", "timeline", incident_id, *store)[0] == 0
    # detection rules: change, persist, test (exit 0 fires, 1 does not)
    assert run(capsys, "rules", "update", "error_burst", *store, "--threshold", "20")[0] == 0
    assert run(capsys, "rules", "test", "error_burst", *store, "--events", "12", "--over", "60")[0] == 1
    assert run(capsys, "rules", "test", "error_burst", *store, "--events", "25", "--over", "60")[0] == 0
    assert run(capsys, "rules", "disable", "low_disk", *store)[0] == 0
    code, out, _ = run(capsys, "rules", "list", *store, "--json")
    rules = {r["name"]: r for r in json.loads(out)}
    assert rules["error_burst"]["threshold"] == 20 and rules["low_disk"]["enabled"] is False
    assert run(capsys, "rules", "create", "kv_evictions", *store, "--event-kind", "kv_eviction", "--threshold", "3", "--window", "60",
               "--severity", "medium", "--type", "memory_exhaustion")[0] == 0
    assert run(capsys, "rules", "update", "error_burst", *store, "--threshold", "0")[0] == 2
    assert "kv_evictions" in IncidentStore.at_path(tmp_path / "i.db").rules()


def test_cli_against_a_running_server_with_its_token(tmp_path):
    env = {**os.environ, "APHRODITE_SLA_API_TOKEN": "tok-123", "PYTHONPATH": str(ROOT)}
    sim, url, output = start_simulator("--scenario", "steady", "--speed", "30", "--duration", "3000", "--no-live",
                                       "--incidents-db", str(tmp_path / "server.db"), env=env)
    try:
        made = cli("incidents", "create", "--server", url, "--title", "from the CLI", "--severity", "critical", "--json",
                   env={"APHRODITE_SLA_API_TOKEN": "tok-123"})
        assert made.returncode == 0, made.stderr
        incident_id = json.loads(made.stdout)["id"]
        listed = cli("incidents", "list", "--server", url, "--json")
        assert listed.returncode == 0 and incident_id in listed.stdout
        denied = cli("incidents", "acknowledge", incident_id, "--server", url, "--token", "wrong")
        assert denied.returncode == 3 and "invalid token" in denied.stderr
        acked = cli("incidents", "acknowledge", incident_id, "--server", url, "--token", "tok-123", "--json")
        assert acked.returncode == 0 and json.loads(acked.stdout)["status"] == "acknowledged"
        esc = httpx.get(f"{url}/api/auto-recovery/escalation/status", timeout=10).json()
        assert [lv["timeout_minutes"] for lv in esc["levels"]] == [15, 30, 45, 60, 90]
        assert "/api/incidents/{id}/resolve" in httpx.get(f"{url}/openapi.json", timeout=10).json()["paths"]
    finally:
        stop_process(sim)
    gone = cli("incidents", "list", "--server", url)
    assert gone.returncode == 3  # unreachable


def test_full_chain_in_the_simulator_from_fault_to_postmortem(tmp_path):
    from aphrodite_sla.sim import get_scenario
    from aphrodite_sla.sim.scenarios import parse_fault
    from aphrodite_sla.simulate import run_simulation

    scenario = get_scenario("steady").with_(faults=(parse_fault("latency_spike@300+240x4"),), duration_s=1500.0)
    lines: list[str] = []
    db = tmp_path / "chain.db"
    result = run_simulation(scenario, incidents_db=str(db), out=lines.append, print_summary=False)
    assert any(r.detected for r in result.faults)
    store = IncidentStore.at_path(db)
    incidents = store.all_incidents()
    assert incidents, "\n".join(lines)
    perf = [i for i in incidents if i.incident_type.value == "performance_degradation"]
    assert perf, [i.title for i in incidents]
    first = perf[0]
    kinds = {t.kind for t in first.timeline}
    assert {"detected", "stage", "acknowledged", "resolved"} <= kinds, kinds
    assert first.status.value == "resolved" and first.mttd_minutes is not None and first.mttr_minutes is not None
    for incident in incidents:  # a post-mortem per incident, in the store and as a file
        assert store.postmortem(incident.incident_id) is not None
        assert (tmp_path / "postmortems" / f"{incident.incident_id}.md").exists()
    assert any(f"incidents: {len(incidents)} in {db}" in line for line in lines)


def test_incidents_api_in_the_engines_app_runs_off_the_loop(tmp_path):
    import asyncio

    from aphrodite_sla.clock import ManualClock
    from aphrodite_sla.config import SLAConfig
    from aphrodite_sla.context import MonitorContext
    from aphrodite_sla.integrations.asgi import SLAMiddleware

    ctx = MonitorContext.build(SLAConfig(api_token="t", incident_response={"store_path": str(tmp_path / "a.db")}), clock=ManualClock())
    ctx.attach_incidents().start()
    changes: list[IncidentChanged] = []
    ctx.manager.subscribe(changes.append, IncidentChanged, name="t")

    async def app(scope, receive, send):  # the engine's app: must not see our routes
        raise AssertionError(f"the engine got {scope['path']}")

    mw = SLAMiddleware(app, context=ctx)

    async def go():
        transport = httpx.ASGITransport(app=mw)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            made = await c.post("/api/incidents", json={"title": "t", "severity": "high"}, headers={"authorization": "Bearer t"})
            listed = await c.get("/api/incidents")
            status = await c.get("/api/auto-recovery/escalation/status")
            return made, listed, status

    made, listed, status = asyncio.run(go())
    assert made.status_code == 201 and listed.json()["total"] == 1 and status.status_code == 200
    ctx.events.drain()
    assert [c.change for c in changes] == ["opened"] and changes[0].incident_id == made.json()["id"]
