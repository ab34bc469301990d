"""Screenshots of the incident console's main pages for the README (docs/screenshots/*.png).

Runs the monitor with incidents and recovery (a recording stand-in for the engine), opens a few
incidents (one with a pending risky action, one resolved with its post-mortem), feeds SLI points
around them, and photographs each page in headless Chromium. Rerun after changing the pages:
    PYTHONPATH=. python scripts/console_screenshots.py
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aphrodite_sla.incidents.model import IncidentSeverity, IncidentType  # noqa: E402
from tests.browser import headless_chromium  # noqa: E402
from tests.console_fixture import TOKEN, start_console  # noqa: E402

OUT = ROOT / "docs" / "screenshots"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        live = start_console(Path(tmp), refresh_s=30.0)
        m = live.incidents.manager
        critical = m.create_manual(title="p95 request latency 2.3x over its bound", severity=IncidentSeverity.CRITICAL,
                                   incident_type=IncidentType.PERFORMANCE_DEGRADATION, description="request_latency_p95 violated for 5 min",
                                   by="monitor", labels={"component": "api", "sla": "request_latency_p95"})
        m.create_manual(title="KV-cache usage above 95%", severity=IncidentSeverity.HIGH, incident_type=IncidentType.MEMORY_EXHAUSTION,
                        description="", by="monitor", labels={"component": "engine"})
        done = m.create_manual(title="error burst on /v1/chat/completions", severity=IncidentSeverity.MEDIUM,
                               incident_type=IncidentType.ERROR_BURST, description="", by="monitor", labels={"component": "api"})
        m.acknowledge(done.incident_id, "alice")
        live.incidents.resolve(done.incident_id, "alice", "reset the prefix cache; errors back under 0.1%")
        _evaluate(live.context.manager)
        live.incidents.refresh_view()
        series = live.app.sources.series
        assert series is not None
        _feed(series, critical.detected_at)
        driver = headless_chromium(1200, 900)
        try:
            driver.get(live.url + "/sign-in")
            driver.find_element("name", "who").send_keys("alice")
            driver.find_element("name", "token").send_keys(TOKEN)
            driver.find_element("css selector", "form.signin button[type=submit]").click()
            driver.get(live.url + f"/incidents/{critical.incident_id}")
            from selenium.webdriver.support.ui import Select

            Select(driver.find_element("name", "action")).select_by_value("service_restart")
            driver.find_element("xpath", "//button[normalize-space()='Mitigate']").click()
            time.sleep(1.0)
            shots = {"overview": "/", "incidents": "/incidents?status=active", "timeline": "/timeline", "metrics": "/metrics",
                     "components": "/components", "incident": f"/incidents/{critical.incident_id}"}
            for name, path in shots.items():
                driver.get(live.url + path)
                height = min(1500, driver.execute_script("return document.body.scrollHeight"))  # small files for the README
                driver.set_window_size(1200, max(700, height))
                driver.save_screenshot(str(OUT / f"console-{name}.png"))
                print(f"docs/screenshots/console-{name}.png")
            driver.set_window_size(1200, 2400)
            driver.get(live.url + f"/incidents/{done.incident_id}")
            driver.find_element("css selector", ".markdown").screenshot(str(OUT / "console-postmortem.png"))
            print("docs/screenshots/console-postmortem.png")
            driver.set_window_size(390, 844)  # a phone
            driver.get(live.url + f"/incidents/{critical.incident_id}")
            driver.save_screenshot(str(OUT / "console-incident-phone.png"))
            print("docs/screenshots/console-incident-phone.png")
        finally:
            driver.quit()
            live.stop()
    return 0


def _evaluate(manager: object) -> None:
    """A few evaluations of the default SLAs on generated samples (TTFT over its 2 s bound)."""
    import numpy as np

    rng = np.random.default_rng(1)
    for _ in range(4):
        manager.record_batch("ttft_ms", rng.lognormal(np.log(2600), 0.2, 200))  # type: ignore[attr-defined]
        manager.record_batch("tpot_ms", rng.lognormal(np.log(40), 0.2, 200))  # type: ignore[attr-defined]
        manager.record_batch("request_error_percent", np.where(rng.random(200) < 0.001, 100.0, 0.0))  # type: ignore[attr-defined]
        manager.evaluate()  # type: ignore[attr-defined]
        time.sleep(0.3)


def _feed(series: object, detected_at: float) -> None:
    """SLI points around the incident, as the monitor's snapshots would leave them."""
    import math

    from aphrodite_sla.sla.evaluation_history import EvaluationHistory, quantile_key

    assert isinstance(series, EvaluationHistory)
    put = series.put
    series._points.clear()  # type: ignore[attr-defined]  # only the pictured incident's series (a day is not rebuilt for a picture)
    onset = detected_at - 90
    for k in range(-120, 60):
        at = detected_at + 5 * k
        bad = at >= onset
        wobble = 1 + 0.05 * math.sin(k / 3)
        for q, base in ((0.5, 900), (0.95, 2400), (0.99, 3600)):
            put(quantile_key("request_latency_ms", q), at, base * wobble * (2.3 if bad else 1))
            put(quantile_key("ttft_ms", q), at, base / 60 * wobble * (1.6 if bad else 1))
        put("error_rate_percent", at, (0.4 if bad else 0.05) * wobble)
        put("kv_cache_usage_percent", at, (91 if bad else 62) * wobble)
        put("tokens_per_second", at, (2300 if bad else 4100) * wobble)


if __name__ == "__main__":
    raise SystemExit(main())
