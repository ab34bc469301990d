"""The incident console in a real headless Chromium: pages load without console errors, filters
from the URL, a script-carrying title shown as text, acknowledge / mitigate with approval /
resolve from the browser changing the store and the timeline, nothing done without the token, and
a fault injected in the simulator appearing as an incident within one refresh."""
from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aphrodite_sla.incidents.model import IncidentSeverity, IncidentStatus, IncidentType
from tests.browser import console_errors, headless_chromium
from tests.console_fixture import TOKEN, LiveConsole, start_console

XSS_TITLE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">latency up'


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = headless_chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(autouse=True)
def _waits_for_pages(browser: Any) -> None:
    browser.implicitly_wait(5)  # find_element waits for the page a click navigated to


@pytest.fixture()
def live(tmp_path: Path) -> Iterator[LiveConsole]:
    console = start_console(tmp_path)
    try:
        yield console
    finally:
        console.stop()


def _create(live: LiveConsole, title: str, severity: str = "high", **labels: str) -> str:
    inc = live.incidents.manager.create_manual(title=title, severity=IncidentSeverity(severity), incident_type=IncidentType.ERROR_BURST,
                                               description="made by the test", by="test", labels=labels)
    return str(inc.incident_id)


def _wait(predicate: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _click_and_load(browser: Any, element: Any) -> None:
    """Click a submit button and wait until the page it posts to has replaced this one."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old = browser.find_element(By.TAG_NAME, "html")
    for _ in range(5):
        try:
            (element() if callable(element) else element).click()
            break
        except StaleElementReferenceException:  # the live refresh replaced it: find it again
            if not callable(element):
                raise
    WebDriverWait(browser, 10).until(expected_conditions.staleness_of(old))
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")


def _sign_in(browser: Any, live: LiveConsole, who: str = "alice", token: str = TOKEN) -> None:
    from selenium.webdriver.common.by import By

    browser.get(live.url + "/sign-in")
    browser.find_element(By.NAME, "who").send_keys(who)
    browser.find_element(By.NAME, "token").send_keys(token)
    _click_and_load(browser, browser.find_element(By.CSS_SELECTOR, "form.signin button[type=submit]"))


def test_pages_load_without_console_errors(browser: Any, live: LiveConsole) -> None:
    from selenium.webdriver.common.by import By

    incident_id = _create(live, "p95 latency over bound", "critical", component="api")
    browser.get_log("browser")  # start clean
    for path, heading in (("/", "Overview"), ("/incidents", "Incidents"), ("/timeline", "Timeline"), ("/metrics", "Metrics"),
                          ("/components", "Components"), (f"/incidents/{incident_id}", incident_id), ("/sign-in", "Sign in")):
        browser.get(live.url + path)
        assert heading in browser.find_element(By.TAG_NAME, "h1").text, path
        assert console_errors(browser) == [], path
    # times are shown in the viewer's zone, with UTC on hover
    browser.get(live.url + f"/incidents/{incident_id}")
    stamp = browser.find_element(By.CSS_SELECTOR, "time.ts")
    assert stamp.get_attribute("title").endswith("UTC")
    assert "UTC" not in stamp.text  # rewritten by console.js in the browser's zone
    assert console_errors(browser) == []


def test_script_carrying_title_is_shown_as_text(browser: Any, live: LiveConsole) -> None:
    from selenium.webdriver.common.by import By

    incident_id = _create(live, XSS_TITLE, "critical", component='"><script>window.__pwned=3</script>')
    for path in ("/incidents", f"/incidents/{incident_id}", "/timeline"):
        browser.get(live.url + path)
        assert browser.execute_script("return window.__pwned === undefined"), path
        assert "<script>window.__pwned = 1</script>" in browser.find_element(By.TAG_NAME, "main").text, path
    browser.implicitly_wait(0)  # absent elements: no waiting
    assert not browser.find_elements(By.CSS_SELECTOR, "main img")


def test_filters_from_the_url(browser: Any, live: LiveConsole) -> None:
    from selenium.webdriver.common.by import By

    browser.implicitly_wait(0)  # absent rows: no waiting
    critical = _create(live, "critical api outage", "critical", component="api")
    low = _create(live, "low disk note", "low", component="disk")
    live.incidents.manager.resolve(low, "test", "done")

    def listed(query: str) -> set[str]:
        browser.get(live.url + "/incidents?" + query)
        browser.find_element(By.ID, "live")
        return {a.text for a in browser.find_elements(By.CSS_SELECTOR, "table.incidents tbody td:first-child a")}

    assert listed("severity=critical") == {critical}
    assert listed("component=api") == {critical}
    assert listed("status=active") == {critical}
    assert listed("status=resolved") == {low}
    assert listed("since=1h") == {critical, low}
    assert listed("severity=low&component=api") == set()
    assert "No incidents match these filters" in browser.find_element(By.ID, "live").text
    browser.get(live.url + "/incidents?severity=bogus")
    assert "severity 'bogus' is not one of" in browser.find_element(By.TAG_NAME, "main").text
    # sorted by a column, bookmarkable
    browser.get(live.url + "/incidents?sort=severity&order=asc")
    ids = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "table.incidents tbody td:first-child a")]
    assert ids == [low, critical]


def test_acknowledge_mitigate_with_approval_and_resolve_from_the_browser(browser: Any, live: LiveConsole) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    incident_id = _create(live, "error burst on /v1/chat", "high", component="api")
    store = live.incidents.store
    _sign_in(browser, live, "alice")
    browser.get(live.url + f"/incidents/{incident_id}")
    _click_and_load(browser, browser.find_element(By.XPATH, "//button[normalize-space()='Acknowledge']"))
    assert "acknowledged by alice" in browser.find_element(By.CSS_SELECTOR, ".flash").text
    inc = _wait(lambda: store.get(incident_id).acknowledged_at and store.get(incident_id), what="the acknowledgement")
    assert inc.acknowledged_by == "alice" and inc.status is IncidentStatus.ACKNOWLEDGED

    Select(browser.find_element(By.NAME, "action")).select_by_value("service_restart")
    _click_and_load(browser, browser.find_element(By.XPATH, "//button[normalize-space()='Mitigate']"))
    assert "waits for approval" in browser.find_element(By.CSS_SELECTOR, ".flash").text
    assert store.get(incident_id).status is IncidentStatus.MITIGATING
    # the approval step shows up on the page by itself (live refresh, no reload)
    browser.execute_script("window.__still_here = true")
    _wait(lambda: browser.find_elements(By.XPATH, "//button[starts-with(normalize-space(), 'Approve service_restart')]"),
                    timeout=15, what="the approval step")
    assert browser.execute_script("return window.__still_here === true")
    _click_and_load(browser, lambda: browser.find_element(By.XPATH, "//button[starts-with(normalize-space(), 'Approve service_restart')]"))
    assert "approved" in browser.find_element(By.CSS_SELECTOR, ".flash").text
    recovery = live.context.recovery
    assert recovery is not None
    assert not recovery.engine.approvals.pending()
    timeline = [(t.kind, t.actor, t.message) for t in store.get(incident_id).timeline]
    assert any(k == "mitigation" and a == "alice" and "service_restart" in m for k, a, m in timeline)
    assert any(k == "approval" and a == "alice" and "approved by alice" in m for k, a, m in timeline)

    browser.find_element(By.NAME, "notes").send_keys("restarted serving; <b>fine</b> now")
    _click_and_load(browser, browser.find_element(By.XPATH, "//button[normalize-space()='Resolve']"))
    inc = _wait(lambda: (i := store.get(incident_id)).status is IncidentStatus.RESOLVED and i, what="the resolution")
    assert inc.status is IncidentStatus.RESOLVED and inc.resolved_by == "alice"
    assert inc.resolution_notes == "restarted serving; <b>fine</b> now"
    main = browser.find_element(By.TAG_NAME, "main").text
    assert "Resolution notes: restarted serving; <b>fine</b> now" in main
    browser.implicitly_wait(0)
    assert "Post-mortem" in main and not browser.find_elements(By.CSS_SELECTOR, ".markdown b")
    assert any(a.actor == "alice" for a in inc.audit)
    assert console_errors(browser) == []


def test_without_the_token_no_action_succeeds(browser: Any, live: LiveConsole) -> None:
    from selenium.webdriver.common.by import By

    incident_id = _create(live, "unowned incident", "medium")
    browser.delete_all_cookies()
    browser.get(live.url + f"/incidents/{incident_id}")
    assert "Sign in with the API token" in browser.find_element(By.TAG_NAME, "main").text
    browser.implicitly_wait(0)
    assert not browser.find_elements(By.XPATH, "//button[normalize-space()='Acknowledge']")
    browser.implicitly_wait(5)
    assert "Sign in with the API token" in browser.find_element(By.TAG_NAME, "main").text
    _sign_in(browser, live, "mallory", token="not-the-token")
    assert "not this server's API token" in browser.find_element(By.CSS_SELECTOR, ".flash").text
    assert not [c for c in browser.get_cookies() if c["name"] == "aphrodite_sla_console"]
    # a form posted straight at the console, without a session, and with a session but no CSRF token
    request = urllib.request.Request(live.url + f"/incidents/{incident_id}/acknowledge", data=b"csrf=x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 401
    _sign_in(browser, live, "alice")
    cookie = next(c for c in browser.get_cookies() if c["name"] == "aphrodite_sla_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    request = urllib.request.Request(live.url + f"/incidents/{incident_id}/acknowledge", data=b"csrf=forged", method="POST",
                                     headers={"Cookie": f"aphrodite_sla_console={cookie['value']}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 403
    # no action by GET
    browser.get(live.url + f"/incidents/{incident_id}/acknowledge")
    inc = live.incidents.store.get(incident_id)
    assert inc.acknowledged_at is None and inc.status is IncidentStatus.DETECTED


def test_fault_in_the_simulator_appears_within_one_refresh(browser: Any, tmp_path: Path) -> None:
    """The simulator's engine (error burst at 60 s engine time, 10x real time) with incidents; the
    open incident list in the browser shows the incident within one refresh of it being stored."""
    from dataclasses import replace

    from selenium.webdriver.common.by import By

    from aphrodite_sla.console.app import ConsoleApp
    from aphrodite_sla.console.mount import console_of
    from aphrodite_sla.console.server import ConsoleServer
    from aphrodite_sla.sim import get_scenario
    from aphrodite_sla.sim.scenarios import parse_fault
    from aphrodite_sla.simulate import _stat_logger, run_simulation

    refresh_s = 2.0
    started: dict[str, Any] = {}
    ready = threading.Event()
    stop = threading.Event()

    def step_logger(runtime: Any) -> Any:
        base = console_of(runtime.context)
        assert base is not None
        app = ConsoleApp(base.sources, replace(base.settings, refresh_interval_s=refresh_s))
        started["server"] = ConsoleServer(app, 0).start()
        started["context"] = runtime.context
        ready.set()
        inner = _stat_logger(runtime)

        def log(sched: Any, it: Any) -> None:
            if stop.is_set():
                raise KeyboardInterrupt
            inner(sched, it)
        return log

    scenario = get_scenario("steady").with_(faults=(parse_fault("error_burst@60+600x0.3"),))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_simulation(scenario, duration_s=400, speed=10.0, port=None, live=False, recovery="advisory",
                           incidents_db=str(tmp_path / "sim.db"), step_logger=step_logger, out=lambda s: None)
        except KeyboardInterrupt:
            pass
        except BaseException as err:  # reported below
            errors.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert ready.wait(60), "the simulation did not start"
        server = started["server"]
        store = started["context"].incidents.store
        browser.implicitly_wait(0)  # the timing below is the page's, not the driver's
        browser.get_log("browser")  # only this test's entries below
        browser.get(server.url + "incidents?status=active")
        browser.execute_script("window.__no_reload = true")
        assert not store.open_incidents()
        opened = _wait(store.open_incidents, timeout=90, what="the simulator's incident")
        stored_at = time.monotonic()
        incident_id = opened[0].incident_id
        _wait(lambda: browser.find_elements(By.LINK_TEXT, incident_id), timeout=refresh_s + 1.5, what="the incident on the page")
        assert time.monotonic() - stored_at <= refresh_s + 1.5
        assert browser.execute_script("return window.__no_reload === true")  # a live update, not a reload
        assert console_errors(browser) == []
    finally:
        stop.set()
        thread.join(60)
        if "server" in started:
            started["server"].stop()
    assert not errors, errors


def test_keyboard_only_and_phone_width(browser: Any, live: LiveConsole) -> None:
    """Acknowledging with the keyboard alone (Tab to the button, Enter), and every page readable
    at a phone's width without sideways scrolling of the page itself."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    incident_id = _create(live, "keyboard " + "long-title-" * 12, "critical", component="api")
    _sign_in(browser, live, "kim")
    browser.get(live.url + f"/incidents/{incident_id}")
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Skip to content"
    for _ in range(200):
        active = browser.switch_to.active_element
        if active.tag_name == "button" and active.text == "Acknowledge":
            break
        active.send_keys(Keys.TAB)
    else:
        raise AssertionError("the Acknowledge button is not reachable with Tab")
    old = browser.find_element(By.TAG_NAME, "html")
    active.send_keys(Keys.ENTER)
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(expected_conditions.staleness_of(old))
    assert _wait(lambda: live.incidents.store.get(incident_id).acknowledged_by == "kim", what="the keyboard acknowledgement")
    browser.set_window_size(390, 844)
    try:
        for path in ("/", "/incidents", "/timeline", "/metrics", "/components", f"/incidents/{incident_id}"):
            browser.get(live.url + path)
            overflow = browser.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 1, (path, overflow)
    finally:
        browser.set_window_size(1280, 900)
    assert console_errors(browser) == []
