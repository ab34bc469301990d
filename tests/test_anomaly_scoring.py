"""Tests of the window-based (NAB-style) scoring in ``benchmarks/bench_anomaly.py`` and of the
corpus it scores: if these rules were wrong, every number the benchmark prints would be too."""
from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import bench_anomaly as B  # noqa: E402
from anomaly_corpus import KINDS, Anomaly, LabelledSeries, corpus, split_of  # noqa: E402

from aphrodite_sla.sla.anomaly import AnomalyDetectorConfig  # noqa: E402


def series(n: int = 1000, onsets: tuple[int, ...] = (400, 800)) -> LabelledSeries:
    return LabelledSeries("s", "test", "dev", np.arange(n, dtype=float), np.zeros(n),
                          tuple(Anomaly(o, o + 1, "spike") for o in onsets))


def total(*outcomes: B.Outcome) -> B.Outcome:
    out = B.Outcome()
    for o in outcomes:
        out.add(o)
    return out


def test_windows_are_centred_on_onsets_and_share_ten_percent():
    s = series()
    wins = B.windows_of(s)
    assert wins == [(375, 424), (775, 824)]  # 0.1 * 1000 / 2 = 50 samples each
    assert B.windows_of(series(onsets=(400, 410))) == [(375, 434)]  # overlapping windows merge


def test_null_detector_scores_zero_and_perfect_scores_hundred():
    s = series()
    assert B.score_series(s, np.array([], dtype=np.int64)).score == pytest.approx(0.0)
    perfect = np.array([w0 for w0, _ in B.windows_of(s)])
    assert B.score_series(s, perfect).score == pytest.approx(100.0)


def test_earlier_detection_scores_more_and_onset_detection_earns_most_of_a_window():
    s = series()
    at = {d: B.score_series(s, np.array([400 + d, 800 + d])).score for d in (-25, 0, 10, 24)}
    assert at[-25] > at[0] > at[10] > at[24] > 0.0
    assert 80.0 < at[0] < 95.0  # a causal detector at the onset: the middle of the window
    o = B.score_series(s, np.array([400]))
    assert o.detected == 1 and o.windows == 2 and o.delays == [0]


def test_false_positives_cost_a_tenth_of_a_miss_less_just_after_a_window():
    s = series()
    base = B.score_series(s, np.array([400, 800]))
    far = B.score_series(s, np.array([400, 600, 800]))  # 175 samples after the first window
    near = B.score_series(s, np.array([400, 430, 800]))  # just after it
    assert far.raw == pytest.approx(base.raw - B.A_FP, abs=1e-3)
    assert base.raw - B.A_FP < near.raw < base.raw
    early = B.score_series(s, np.array([100, 400, 800]))  # in the learning period: ignored
    assert early.raw == pytest.approx(base.raw) and early.false_pos == 0
    assert far.false_pos == 1 and far.fp_per_1000 == pytest.approx(1000.0 / far.outside)


def test_only_the_first_detection_in_a_window_counts():
    s = series()
    one = B.score_series(s, np.array([400]))
    many = B.score_series(s, np.array([400, 401, 410, 420]))
    assert many.raw == pytest.approx(one.raw)


def test_outcomes_sum_over_series_before_normalising():
    s = series()
    a = B.score_series(s, np.array([400, 800]))
    b = B.score_series(s, np.array([], dtype=np.int64))
    assert total(a, b).score == pytest.approx((a.score + b.score) / 2.0)


def test_alert_stream_is_one_alert_per_episode():
    scores = np.array([0.1, 0.6, 0.7, 0.4, 0.55, 0.2, 0.9, 0.1, 0.3, 0.51])
    assert B.alert_stream(scores).tolist() == [1, 6, 9]
    assert B.raw_detections(scores).tolist() == [1, 2, 4, 6, 9]


def test_sigmoid_matches_nab():
    assert B.scaled_sigmoid(-1.0) == pytest.approx(2.0 / (1.0 + math.exp(-5.0)) - 1.0)
    assert B.scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert B.scaled_sigmoid(5.0) == -1.0


def test_corpus_is_deterministic_large_and_split_by_series():
    dev, held = corpus("dev"), corpus("heldout")
    assert len(dev) + len(held) >= 40
    assert {s.family for s in dev} == {s.family for s in held}  # every family in both halves
    assert len({s.family for s in dev}) >= 8
    assert sum(len(s.anomalies) for s in dev + held) >= 100
    assert {a.kind for s in dev + held for a in s.anomalies} == set(KINDS)
    assert {s.name for s in dev}.isdisjoint({s.name for s in held})
    assert all(s.split == split_of(int(s.name.rsplit("_", 1)[1])) for s in dev + held)
    again = corpus("dev")
    for a, b in zip(dev, again):
        np.testing.assert_array_equal(a.values, b.values)
        assert a.anomalies == b.anomalies
    for s in dev + held:
        n = len(s.values)
        assert np.all(np.isfinite(s.values)) and np.all(np.diff(s.timestamps) > 0)
        assert all(B.PROBATION * n < a.onset < n for a in s.anomalies)


def test_corpus_before_it_grew_is_its_first_series():
    """``first=8`` is the corpus the earlier figures were measured on: the same series, and the
    grown corpus only adds series after them (so old and new figures compare)."""
    old, grown = corpus("heldout", first=8), corpus("heldout")
    assert [s.name for s in old] == [s.name for s in grown if int(s.name.rsplit("_", 1)[1]) < 8]
    by_name = {s.name: s for s in grown}
    for s in old:
        np.testing.assert_array_equal(s.values, by_name[s.name].values)
    assert len(grown) == 3 * len(old)
    with pytest.raises(ValueError, match="first"):
        corpus("dev", first=0)
    first = B.first_series([(s.name, B.score_series(s, np.array([], dtype=np.int64))) for s in grown], 8)
    assert first.windows == sum(len(B.windows_of(s)) for s in old)


def test_bootstrap_interval_brackets_the_score_and_is_zero_when_every_series_agrees():
    s = series()
    perfect = B.score_series(s, np.array([375, 775]))
    missed = B.score_series(s, np.array([], dtype=np.int64))
    same = [("a", perfect), ("b", perfect), ("c", perfect)]
    assert B.bootstrap_interval(same) == pytest.approx((100.0, 100.0))
    mixed = [(str(i), perfect if i % 2 else missed) for i in range(20)]
    lo, hi = B.bootstrap_interval(mixed)
    assert lo < total(*(o for _, o in mixed)).score < hi  # 50: half the windows caught perfectly
    assert 0.0 < lo and hi < 100.0
    assert B.bootstrap_interval(mixed) == (lo, hi)  # a fixed seed: the same run prints the same


def test_set_reads_config_fields_as_json_and_refuses_what_the_config_refuses():
    """``--set``: a variant is measured with exactly the fields named, or not at all."""
    assert B.detector_config([]) == AnomalyDetectorConfig()
    cfg = B.detector_config(["spike_z=4.75", "log_transform=true", "season_seconds=null"])
    assert cfg == AnomalyDetectorConfig(spike_z=4.75, log_transform=True, season_seconds=None)
    for bad in (["spike_zz=5"], ["spike_z"], ["spike_z=five"], ["spike_z=-1"], ["warmup=1"], ['spike_z="5"']):
        with pytest.raises(ValueError):
            B.detector_config(bad)
    with pytest.raises(SystemExit):  # the command line says why and exits before any scoring
        B.main(["--dev", "--set", "nope=1"])
