"""The anomaly warning policy (``sla.warning_policy``, settings in ``sla.warning_rules``): a change
toward the bound warns once it holds for most of a minute, a burst that drains does not, an SLA
warns once per ``min_interval_s``, unsigned changes hold by their score, and the settings are
checked and read from the configuration file."""
from __future__ import annotations

import math

import numpy as np
import pytest

from aphrodite_sla import ManualClock, SLAManager
from aphrodite_sla.config import ConfigError, load_config
from aphrodite_sla.events import AnomalyDetected, SnapshotPublished
from aphrodite_sla.sla.anomaly import AnomalyExplanation
from aphrodite_sla.sla.warning_policy import WarningPhase, WarningPolicy, onset_line
from aphrodite_sla.sla.warning_rules import WarningRulesConfig
from tests.test_manager import latency_sla, run

T0 = 1_700_000_000.0


def manager(rules: WarningRulesConfig | None = None) -> tuple[SLAManager, ManualClock, list, list]:
    """An SLA with a bound of 120 (p95 over a minute), learned on 80 +- 1 for 20 minutes."""
    clock = ManualClock(T0)
    mgr = SLAManager([latency_sla()], clock=clock, regression_interval_s=math.inf, warning_rules=rules)
    warnings: list[AnomalyDetected] = []
    scores: list[float] = []
    mgr.subscribe(warnings.append, AnomalyDetected, name="warnings")
    mgr.subscribe(lambda e: scores.append(e.snapshot.statuses["lat_p95"].anomaly_score or 0.0), SnapshotPublished, name="scores")
    rng = np.random.default_rng(5)
    run(mgr, clock, 1200, lambda t: 80.0 + rng.normal(0, 1.0))
    mgr.events.drain()
    return mgr, clock, warnings, scores


def test_a_change_that_holds_warns_within_the_confirmation_period():
    mgr, clock, warnings, _ = manager()
    rng = np.random.default_rng(6)
    onset = clock()
    run(mgr, clock, 120, lambda t: 110.0 + rng.normal(0, 1.0))  # 3/4 of the headroom, for good
    mgr.events.drain()
    assert len(warnings) == 1
    assert 25.0 <= warnings[0].occurred_at - onset <= 65.0  # 7 of a minute's 13 evaluations held
    assert warnings[0].score >= 0.5  # the score the change reached, not the decayed one at confirmation
    assert not mgr.get_status()["lat_p95"].violated


def test_a_burst_that_drains_in_seconds_is_scored_but_warns_nobody():
    mgr, clock, warnings, scores = manager()
    rng = np.random.default_rng(7)
    run(mgr, clock, 15, lambda t: 112.0 + rng.normal(0, 1.0))  # a queue for 15 s ...
    run(mgr, clock, 120, lambda t: 80.0 + rng.normal(0, 1.0))  # ... that drained
    mgr.events.drain()
    assert max(scores) >= 0.5  # the onset was seen
    assert warnings == []
    assert mgr._evaluator.states["lat_p95"].warning.dropped == 1
    # without the policy the same burst warns at its onset (the behaviour before it)
    mgr2, clock2, warnings2, _ = manager(WarningRulesConfig(enabled=False))
    rng = np.random.default_rng(7)
    run(mgr2, clock2, 15, lambda t: 112.0 + rng.normal(0, 1.0))
    mgr2.events.drain()
    assert len(warnings2) == 1


def test_one_warning_per_sla_within_the_minimum_interval():
    for interval, expected in ((3600.0, 1), (0.0, 2)):
        mgr, clock, warnings, _ = manager(WarningRulesConfig(min_interval_s=interval))
        rng = np.random.default_rng(8)
        for _ in range(2):  # two changes that hold, ten minutes apart, each back to normal after (the episode re-arms)
            run(mgr, clock, 90, lambda t: 110.0 + rng.normal(0, 1.0))
            run(mgr, clock, 510, lambda t: 80.0 + rng.normal(0, 1.0))
        mgr.events.drain()
        assert len(warnings) == expected, interval
        assert mgr._evaluator.states["lat_p95"].warning.suppressed == 2 - expected


def policy(**kw) -> WarningPolicy:
    return WarningPolicy(WarningRulesConfig(**kw), alert_score=0.5, evaluation_interval_s=5.0, upper=True, bound=120.0)


def test_the_policy_counts_evaluations_that_hold_and_drops_what_does_not():
    onset = AnomalyExplanation(kind="level_shift", z=6.0, value=112.0, expected=80.0)
    assert onset_line(onset, upper=True, bound=120.0, share=0.25) == 90.0
    p = policy()
    got = [p.observe(T0 + 5.0 * i, 0.9, onset, v) for i, v in enumerate([112, 95, 85, 99, 84, 97, 83, 96, 91, 93])]
    assert got[:9] == [None] * 9 and got[9] == "level_shift"  # the 7th evaluation beyond 90 warns
    assert p.phase is WarningPhase.EPISODE
    assert p.observe(T0 + 50, 0.4, onset, 112.0) is None  # the episode lasts until the score re-arms
    q = policy()
    for i, v in enumerate([112, 85, 84, 86, 83, 82, 95, 84, 85, 83, 84, 85, 86]):  # 2 of 13 held
        assert q.observe(T0 + 5.0 * i, 0.6, onset, v) is None
    assert q.dropped == 1 and q.phase is WarningPhase.EPISODE
    assert q.observe(T0 + 70, 0.1, onset, 80.0) is None and q.phase is WarningPhase.IDLE  # re-armed


def test_away_from_the_bound_never_pends_and_unsigned_changes_hold_by_their_score():
    p = policy()
    away = AnomalyExplanation(kind="level_shift", z=-6.0, value=40.0, expected=80.0)
    assert p.observe(T0, 0.9, away, 40.0) is None and p.phase is WarningPhase.IDLE
    noisy = AnomalyExplanation(kind="variance_change", z=4.0, value=80.0, expected=80.0)
    got = [p.observe(T0 + 5.0 * i, s, noisy, 80.0) for i, s in enumerate([0.8, 0.6, 0.5, 0.4, 0.3, 0.3, 0.3])]
    assert got[-1] == "variance_change" and got[:-1] == [None] * 6
    assert policy(confirm_s=0.0).observe(T0, 0.9, AnomalyExplanation(kind="spike", z=6.0, value=112.0, expected=80.0), 112.0) == "spike"


def test_warning_rules_configuration(tmp_path):
    path = tmp_path / "slas.toml"
    path.write_text("[warning_rules]\nconfirm_s = 30\nmin_interval_s = 0\n")
    cfg = load_config({"APHRODITE_SLA_CONFIG": str(path)})
    assert cfg.warning_rules.confirm_s == 30.0 and cfg.warning_rules.min_interval_s == 0.0 and cfg.warning_rules.enabled
    path.write_text("[warning_rules]\nconfirm = 30\n")
    with pytest.raises(ConfigError, match="confirm"):
        load_config({"APHRODITE_SLA_CONFIG": str(path)})
    for bad in ({"hold_share": 1.0}, {"confirm_s": -1.0}, {"confirm_s": math.inf}, {"enabled": "yes"}, {"headroom_share": math.nan},
                {"confirm_s": 7200.0}):
        with pytest.raises(ValueError, match="warning_rules"):
            WarningRulesConfig(**bad)


def test_an_expectation_already_beyond_the_bound_must_hold_beyond_the_bound():
    # a noisy 5-second p95 whose expectation (85) sits past the 5-minute window's bound (82)
    spike = AnomalyExplanation(kind="spike", z=10.0, value=640.0, expected=85.0)
    assert onset_line(spike, upper=True, bound=82.0, share=0.25) == 82.0
    p = WarningPolicy(WarningRulesConfig(), alert_score=0.5, evaluation_interval_s=5.0, upper=True, bound=82.0)
    values = [640, 73, 60, 55, 59, 56, 51, 75, 52, 62, 76, 50, 80]  # one spike, then back under the bound
    assert all(p.observe(T0 + 5.0 * i, 0.4 if i else 0.9, spike, v) is None for i, v in enumerate(values))
    assert p.dropped == 1
    low = AnomalyExplanation(kind="level_shift", z=-6.0, value=40.0, expected=50.0)
    assert onset_line(low, upper=False, bound=60.0, share=0.25) == 60.0  # a minimum: the same, mirrored


def test_a_slow_rise_is_measured_from_the_level_before_it_began():
    # KV usage in a traffic surge: calm at 25% (bound 96%), the score crosses the alert level once
    # the detector's expectation has already followed the rise to 42%; the usage holds at 51-62%
    p = WarningPolicy(WarningRulesConfig(), alert_score=0.5, evaluation_interval_s=5.0, upper=True, bound=96.0)
    for i in range(10):
        assert p.observe(T0 + 5.0 * i, 0.1, AnomalyExplanation(kind="none", z=0.5, value=25.0, expected=25.0), 25.0) is None
    values = [58.1, 51.5, 54.9, 57.3, 56.5, 51.6, 60.8, 53.6, 47.9, 55.4, 62.7, 50.4, 49.9]
    got = [p.observe(T0 + 50.0 + 5.0 * i, 0.6, AnomalyExplanation(kind="level_shift", z=5.5, value=v, expected=42.5 + i), v)
           for i, v in enumerate(values)]
    assert p.line == 25.0 + 0.25 * (96.0 - 25.0)  # from the calm level, not from the onset's 42.5 (line 55.9)
    assert "level_shift" in got and got.index("level_shift") == 6  # the 7th evaluation beyond the line


def test_a_noisier_series_warns_only_while_its_window_moves_toward_the_bound():
    noisy = AnomalyExplanation(kind="variance_change", z=4.0, value=9.0, expected=9.0)
    scores = [0.55, 0.5, 0.47, 0.48, 0.43, 0.36, 0.34, 0.33, 0.3, 0.3, 0.3, 0.3, 0.3]
    # KV usage bursty at night, its 5-minute mean flat at ~9% under a 63% bound: dropped
    night = policy()
    flat = [9.5, 9.4, 9.4, 9.3, 9.2, 9.3, 9.4, 9.3, 9.2, 9.3, 9.4, 9.3, 9.2]
    assert all(night.observe(T0 + 5.0 * i, s, noisy, 9.0, w) is None for i, (s, w) in enumerate(zip(scores, flat, strict=True)))
    assert night.dropped == 1
    # a leak: the process memory's window mean climbs while the series is noisier: it warns
    leak = policy()
    climbing = [3072.0 + 3.0 * i for i in range(13)]
    got = [leak.observe(T0 + 5.0 * i, s, noisy, 9.0, w) for i, (s, w) in enumerate(zip(scores, climbing, strict=True))]
    assert "variance_change" in got
