"""Fast page rules (``sla.pages``): each rule fires and resolves once per episode, the minimum
counts hold at low traffic, healthy simulated traffic never pages, pages reach subscribers as
violations, are exported, and the configuration is checked."""
from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from aphrodite_sla import ManualClock, SLAManager, SLAThreshold, Statistic
from aphrodite_sla.config import ConfigError, load_config
from aphrodite_sla.events import PageRaised, PageResolved, StallDetected, ViolationRaised, ViolationResolved
from aphrodite_sla.export.collector import SLACollector
from aphrodite_sla.integrations.stall import StallDetector
from aphrodite_sla.sla.page_rules import PageRulesConfig
from aphrodite_sla.sla.pages import is_page
from aphrodite_sla.sla.recent_level import RecentLevel
from aphrodite_sla.sla.threshold import ViolationRule, ViolationSeverity

T0 = 1_700_000_000.0


def latency_sla(**kw) -> SLAThreshold:
    base = dict(statistic=Statistic.P95, source_metric="lat", min_samples=5, sample_rate_hz=100.0)
    base.update(kw)
    return SLAThreshold("lat_p95", 100.0, 20.0, 5, **base)  # bound 120 ms


def error_sla() -> SLAThreshold:
    return SLAThreshold("errors", 0.1, 400.0, 5, statistic=Statistic.MEAN, source_metric="outcome", objective_percent=99.9,
                        sample_rate_hz=100.0)  # bound 0.5%


class Harness:
    """A manager on a manual clock, fed ``rate`` samples a second, evaluated every 5 s; collects
    every violation and page event."""

    def __init__(self, *thresholds: SLAThreshold, config: PageRulesConfig | None = None) -> None:
        self.clock = ManualClock(T0)
        self.mgr = SLAManager(thresholds, clock=self.clock, anomaly_detection=False, regression_interval_s=math.inf,
                              page_rules=config)
        self.events: list = []
        self.mgr.subscribe(self.events.append, ViolationRaised, ViolationResolved, name="test")

    def run(self, seconds: float, rate: float, value) -> None:
        """``value(i)`` is the i-th sample of a second (a function of the sample index)."""
        for _ in range(int(seconds)):
            self.clock.advance(1.0)
            now = self.clock()
            n = int(rate)
            for i in range(n):
                for name in self.mgr.thresholds:
                    src = self.mgr.thresholds[name].source
                    self.mgr.record_measurement(src, value(src, i), now - 1.0 + (i + 1) / (n + 1))
            if int(now - T0) % 5 == 0:
                self.mgr.evaluate()

    def pages(self, rule: str | None = None) -> list[PageRaised]:
        return [e for e in self.events if isinstance(e, PageRaised) and (rule is None or e.rule == rule)]

    def resolved_pages(self) -> list[PageResolved]:
        return [e for e in self.events if isinstance(e, PageResolved)]

    def sustained(self) -> list[ViolationRaised]:
        return [e for e in self.events if type(e) is ViolationRaised]


def healthy(src: str, i: int) -> float:
    return 0.0 if src == "outcome" else 60.0 + (i % 10)


def test_severe_breach_pages_within_seconds_and_resolves_once():
    h = Harness(latency_sla(), config=PageRulesConfig(burn_rate=False))
    h.run(120, 20, healthy)
    assert h.pages() == [] and h.sustained() == []
    onset = h.clock()
    h.run(60, 20, lambda src, i: 300.0)  # 2.5x the bound
    severe = h.pages("severe_breach")
    assert len(severe) == 1
    page = severe[0]
    assert page.occurred_at - onset <= 10.0  # the first or second evaluation after the onset
    assert page.violation.rule is ViolationRule.SEVERE_BREACH and page.violation.severity is ViolationSeverity.CRITICAL
    assert is_page(page.violation) and "severe-breach" in page.violation.message
    assert h.sustained() == []  # the seed's rule needs 80% of its 5-minute window: not yet
    h.run(240, 20, lambda src, i: 300.0)
    assert len(h.pages("severe_breach")) == 1  # one page per episode, however long it lasts
    assert len(h.sustained()) == 1
    h.run(400, 20, healthy)
    resolved = [e for e in h.resolved_pages() if e.rule == "severe_breach"]
    assert len(resolved) == 1 and resolved[0].episode == page.episode
    assert h.mgr.snapshot().pages == ()


def test_a_short_blip_that_leaves_the_sla_window_within_its_bound_does_not_page():
    # 10 s at 3x the bound: the 60 s p95 is far beyond (17% of its samples), the 5-minute p95 is not (3%)
    h = Harness(latency_sla(), config=PageRulesConfig(burn_rate=False))
    h.run(300, 20, healthy)
    h.run(10, 20, lambda src, i: 360.0)
    assert h.mgr.snapshot().window("lat", 60.0).quantiles[0.95] >= 2 * 120.0  # severe over the short window
    assert not h.mgr.get_status()["lat_p95"].breached  # ...but not over the SLA's own
    h.run(60, 20, healthy)
    assert h.pages() == [] and h.sustained() == []


def test_a_breach_short_of_the_severe_factor_does_not_page():
    h = Harness(latency_sla(), config=PageRulesConfig(burn_rate=False))
    h.run(60, 20, healthy)
    h.run(400, 20, lambda src, i: 200.0)  # 1.67x the bound: a violation, not a page
    assert h.pages() == [] and len(h.sustained()) == 1


def test_severe_breach_needs_enough_samples_behind_the_quantile():
    # 1 request a second: 60 samples in the 60 s window, fewer than the 100 a p95 needs for 5 beyond
    # it (the low-traffic median rule off: see the next test)
    h = Harness(latency_sla(), config=PageRulesConfig(burn_rate=False, severe_low_traffic_median=False))
    h.run(60, 1, healthy)
    h.run(120, 1, lambda src, i: 500.0)
    assert h.pages() == []
    # the same breach at 2 requests a second (120 samples): it pages
    h2 = Harness(latency_sla(), config=PageRulesConfig(burn_rate=False))
    h2.run(60, 2, healthy)
    h2.run(60, 2, lambda src, i: 500.0)
    assert len(h2.pages("severe_breach")) == 1


def test_at_low_traffic_the_median_stands_in_for_the_quantile():
    """At 1 request a second the 60 s window never holds the 100 samples a p95 needs: the window's
    median beyond 2x the bound pages instead (half the requests beyond the line), a third of the
    requests beyond it does not, and too few samples for the median do not either."""
    h = Harness(latency_sla(), config=PageRulesConfig(burn_rate=False))
    h.run(300, 1, healthy)
    h.run(180, 1, lambda src, i: 600.0 if int(h.clock()) % 3 == 0 else healthy(src, i))  # a third at 5x
    assert h.mgr.get_status()["lat_p95"].breached  # the SLA's p95 is far beyond, and yet
    assert h.pages() == []  # ...the median is not: no page
    h.run(300, 1, healthy)
    onset = h.clock()
    h.run(120, 1, lambda src, i: 600.0)  # every request at 5x the bound
    severe = h.pages("severe_breach")
    assert len(severe) == 1
    assert 30.0 <= severe[0].occurred_at - onset <= 40.0  # half the 60 s window, and the next evaluation
    assert "median" in severe[0].violation.message and "too few for the p95" in severe[0].violation.message
    few = Harness(latency_sla(), config=PageRulesConfig(burn_rate=False, severe_min_samples=61))
    few.run(60, 1, healthy)
    few.run(120, 1, lambda src, i: 600.0)
    assert few.pages() == []


def test_latency_tripled_pages_against_its_recent_level_short_of_twice_the_bound():
    """At night a latency sits far below the bound the busy hour set: here its p95 is ~69 ms
    against a 120 ms bound. x3 (~207 ms) is short of the 2x line (240 ms) but 3x its recent
    healthy level: a page within seconds. x2 (~133 ms) breaches the SLA without paging, and before
    the level has watched 10 healthy minutes only the absolute line pages."""
    h = Harness(latency_sla(), config=PageRulesConfig(burn_rate=False))
    h.run(700, 20, healthy)
    onset = h.clock()
    h.run(60, 20, lambda src, i: 3.0 * healthy(src, i))
    severe = h.pages("severe_breach")
    # the SLA's own 5-minute p95 breaches once 5% of it is slow (15 s), the next evaluation pages
    assert len(severe) == 1 and severe[0].occurred_at - onset <= 20.0
    message = severe[0].violation.message
    assert "recent healthy level" in message and "2.5x the level" in message, message
    assert severe[0].violation.bound == pytest.approx(2.5 * 69.0, rel=0.02)  # the line it crossed

    double = Harness(latency_sla(), config=PageRulesConfig(burn_rate=False))
    double.run(700, 20, healthy)
    double.run(300, 20, lambda src, i: 2.0 * healthy(src, i))
    assert double.pages() == [] and len(double.sustained()) == 1  # a breach, not a page

    early = Harness(latency_sla(), config=PageRulesConfig(burn_rate=False))
    early.run(300, 20, healthy)  # 5 minutes of history: the level is not used yet
    early.run(60, 20, lambda src, i: 3.0 * healthy(src, i))
    assert early.pages() == []
    off = Harness(latency_sla(), config=PageRulesConfig(burn_rate=False, severe_relative_factor=0.0))
    off.run(700, 20, healthy)
    off.run(60, 20, lambda src, i: 3.0 * healthy(src, i))
    assert off.pages() == []


def test_recent_level_is_a_time_weighted_mean_of_healthy_evaluations_only():
    level = RecentLevel(3600.0)
    level.observe(0.0, 100.0, healthy=True)  # the first evaluation starts the clock
    for t in range(5, 305, 5):
        level.observe(float(t), 50.0 if t <= 150 else 70.0, healthy=True)
    assert level.value == pytest.approx(60.0, rel=0.01)  # half the time at each: a mean, not the first value
    assert level.watched_s == 300.0 and level.ready(300.0) and not level.ready(301.0)
    for t in range(305, 605, 5):
        level.observe(float(t), 500.0, healthy=False)  # a breach teaches nothing, its time neither
    level.observe(605.0, math.nan, healthy=True)  # nor an unjudged window
    assert level.value == pytest.approx(60.0, rel=0.01) and level.watched_s == 300.0
    level.observe(610.0, 60.0, healthy=True)  # the clock restarts: no time folded in across the breach
    assert level.watched_s == 300.0
    old = RecentLevel(60.0)
    for t in range(0, 3605, 5):
        old.observe(float(t), 10.0 if t < 1800 else 40.0, healthy=True)
    assert old.value == pytest.approx(40.0, rel=0.01)  # an hour-old level is forgotten at a 60 s constant


def test_error_burst_pages_on_errors_not_on_one_error_at_night():
    # low traffic: one error among a handful of requests is far beyond 2x a 0.5% bound, but it is one error
    h = Harness(error_sla())
    h.run(300, 1, healthy)
    h.run(60, 1, lambda src, i: 100.0 if int(h.clock()) % 60 == 0 else 0.0)
    assert h.pages() == []
    # busy: 5% of 40 requests a second fail
    h2 = Harness(error_sla())
    h2.run(300, 40, healthy)
    onset = h2.clock()
    h2.run(120, 40, lambda src, i: 100.0 if i % 20 == 0 else 0.0)
    severe = h2.pages("severe_breach")
    assert len(severe) == 1 and severe[0].occurred_at - onset <= 30.0
    assert "beyond the bound" in severe[0].violation.message


def test_burn_rate_page_and_ticket_with_both_windows():
    cfg = PageRulesConfig(severe_breach=False)
    h = Harness(error_sla(), config=cfg)
    h.run(600, 20, healthy)
    assert h.pages() == []
    # 2% errors: 20x the 0.1% budget. With 10 min of clean history, the 6 h (all history) and 30 min
    # windows cross 6x after ~5 min (a ticket), the 1 h window 14.4x after ~25 min (a page).
    h.run(2400, 20, lambda src, i: 100.0 if (i + int(h.clock())) % 50 == 0 else 0.0)
    ticket, page = h.pages("burn_rate_ticket"), h.pages("burn_rate_page")
    assert len(ticket) == 1 and len(page) == 1 and ticket[0].occurred_at < page[0].occurred_at
    assert page[0].violation.severity is ViolationSeverity.CRITICAL and "burning" in page[0].violation.message
    assert ticket[0].violation.severity is ViolationSeverity.MAJOR and not is_page(ticket[0].violation)
    h.run(600, 20, healthy)  # the 5-minute window clears first: the page resolves, the ticket stays
    assert [e.rule for e in h.resolved_pages()] == ["burn_rate_page"]
    h.run(1800, 20, healthy)
    assert [e.rule for e in h.resolved_pages()] == ["burn_rate_page", "burn_rate_ticket"]
    assert len(h.pages()) == 2  # no page again while the long windows still remember the burst


def test_burn_rate_needs_traffic():
    # 1 request every 2 minutes for an hour, all bad: 100% errors, but 30 samples in the long window (< 60)
    h = Harness(error_sla(), config=PageRulesConfig(severe_breach=False))
    for _ in range(30):
        h.clock.advance(120.0)
        h.mgr.record_measurement("outcome", 100.0)
        h.mgr.evaluate()
    assert h.pages() == []


def test_zero_traffic_never_pages():
    h = Harness(latency_sla(), error_sla())
    for _ in range(200):
        h.clock.advance(5.0)
        h.mgr.evaluate()
    assert h.events == []


def test_disabled_rules_do_not_fire():
    h = Harness(latency_sla(), error_sla(), config=PageRulesConfig(enabled=False))
    h.run(60, 40, healthy)
    h.run(600, 40, lambda src, i: 100.0 if src == "outcome" else 1000.0)
    assert h.pages() == [] and len(h.sustained()) == 2
    excluded = Harness(latency_sla(), config=PageRulesConfig(excluded_slas=("lat_p95",)))
    excluded.run(60, 40, lambda src, i: 1000.0)
    assert excluded.pages() == []


def test_pages_reach_subscribers_and_the_seed_callback_as_violations():
    h = Harness(latency_sla())
    seen: list = []
    h.mgr.register_violation_callback(seen.append)
    resolved: list = []
    h.mgr.register_resolution_callback(lambda name, at: resolved.append(name))
    h.run(60, 20, healthy)
    h.run(30, 20, lambda src, i: 400.0)
    h.mgr.evaluate()
    assert any(v.rule is ViolationRule.SEVERE_BREACH for v in seen)
    assert any(v.rule is ViolationRule.SEVERE_BREACH for v in h.mgr.active_violations())


def test_pages_are_exported():
    h = Harness(latency_sla())
    h.run(60, 20, healthy)
    registry = CollectorRegistry()
    registry.register(SLACollector(h.mgr.snapshot, model_name="m"))
    text = generate_latest(registry).decode()
    assert 'sla_page_active{model_name="m",rule="severe_breach",sla="lat_p95"} 0.0' in text
    h.run(30, 20, lambda src, i: 400.0)
    text = generate_latest(registry).decode()
    assert 'sla_page_active{model_name="m",rule="severe_breach",sla="lat_p95"} 1.0' in text
    assert 'sla_pages_total{model_name="m",rule="severe_breach",sla="lat_p95"} 1.0' in text
    assert h.mgr.snapshot().page_counts[("lat_p95", "severe_breach")] == 1


def test_a_stall_is_a_page():
    clock = ManualClock(T0)
    mgr = SLAManager([], clock=clock)
    det = StallDetector(mgr, stall_after_s=10.0, clock=clock)
    got: list = []
    mgr.subscribe(got.append, PageRaised, name="pages")
    det.on_record(clock(), 3, 5)
    clock.advance(11.0)
    det.check()
    assert len(got) == 1 and isinstance(got[0], StallDetected) and got[0].rule == "stall" and is_page(got[0].violation)


def test_page_rules_configuration(tmp_path):
    path = tmp_path / "slas.toml"
    path.write_text("[page_rules]\nsevere_factor = 3.0\nexcluded_slas = [\"kv\"]\n")
    cfg = load_config({"APHRODITE_SLA_CONFIG": str(path)})
    assert cfg.page_rules.severe_factor == 3.0 and cfg.page_rules.excluded_slas == ("kv",) and cfg.page_rules.enabled
    assert not load_config({"APHRODITE_SLA_CONFIG": str(path), "APHRODITE_SLA_PAGE_RULES": "false"}).page_rules.enabled
    path.write_text("[page_rules]\nsevere_factr = 3.0\n")
    with pytest.raises(ConfigError, match="severe_factr"):
        load_config({"APHRODITE_SLA_CONFIG": str(path)})
    for bad in ({"severe_factor": 1.0}, {"severe_min_samples": 0}, {"resolve_after_s": math.nan}, {"enabled": "yes"},
                {"page_short_window_s": 7200.0}):
        with pytest.raises(ValueError, match="page_rules"):
            PageRulesConfig(**bad)
    with pytest.raises(ConfigError, match="APHRODITE_SLA_PAGE_RULES"):
        load_config({"APHRODITE_SLA_PAGE_RULES": "maybe"})
