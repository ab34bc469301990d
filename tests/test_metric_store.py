"""Bad input never raises: every refused sample is counted by metric and reason."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aphrodite_sla import DropReason, ManualClock, MetricSpec, MetricStore
from aphrodite_sla.store import metric_store


@pytest.fixture
def store():
    s = MetricStore(ManualClock(1000.0), late_tolerance_s=5.0, max_future_s=60.0)
    s.register(MetricSpec("lat", window_seconds=60, sample_rate_hz=10, max_value=1e6))
    s.register(MetricSpec("delta", window_seconds=60, sample_rate_hz=10, allow_negative=True))
    return s


@pytest.mark.parametrize(
    "value, reason",
    [
        (float("nan"), DropReason.NAN),
        (float("inf"), DropReason.INFINITE),
        (float("-inf"), DropReason.INFINITE),
        (-1.0, DropReason.NEGATIVE),
        (2e6, DropReason.OUT_OF_RANGE),
        ("12.5", DropReason.NOT_A_NUMBER),
        (b"1", DropReason.NOT_A_NUMBER),
        (None, DropReason.NOT_A_NUMBER),
        (object(), DropReason.NOT_A_NUMBER),
        ([1.0], DropReason.NOT_A_NUMBER),
        (10**400, DropReason.NOT_A_NUMBER),
    ],
)
def test_bad_values_are_dropped_and_counted(store, value, reason):
    assert store.record("lat", value) is False
    assert store.dropped() == {("lat", reason): 1}
    assert store.buffer("lat").count == 0


def test_good_values_of_many_types_are_kept(store):
    for v in (1, 2.5, np.float32(3.0), np.int64(4), True, 0):
        assert store.record("lat", v) is True
    assert store.buffer("lat").count == 6
    assert store.dropped() == {}


def test_negative_allowed_where_the_spec_says(store):
    assert store.record("delta", -3.0) is True


def test_unknown_metric_counted_and_bounded(store):
    for i in range(metric_store.MAX_UNKNOWN_NAMES + 20):
        assert store.record(f"nope{i}", 1.0) is False
    drops = store.dropped()
    assert sum(drops.values()) == metric_store.MAX_UNKNOWN_NAMES + 20
    assert len(drops) == metric_store.MAX_UNKNOWN_NAMES + 1
    assert drops[(metric_store.OTHER_UNKNOWN, DropReason.UNKNOWN_METRIC)] == 20


@pytest.mark.parametrize("ts", [float("nan"), float("inf"), 1000.0 + 61, "soon", None])
def test_bad_timestamps(store, ts):
    ok = store.record("lat", 1.0, timestamp=ts)
    if ts is None:
        assert ok
    else:
        assert not ok
        assert store.dropped() == {("lat", DropReason.BAD_TIMESTAMP): 1}


def test_out_of_order_beyond_tolerance(store):
    assert store.record("lat", 1.0, timestamp=1000.0)
    assert store.record("lat", 2.0, timestamp=996.0)  # 4 s late: kept
    assert not store.record("lat", 3.0, timestamp=990.0)  # 10 s late: refused
    assert store.dropped() == {("lat", DropReason.OUT_OF_ORDER): 1}


def test_batch_counts_each_reason_and_keeps_the_rest(store):
    values = [1.0, float("nan"), -2.0, float("inf"), 3.0, 5e6, 4.0]
    assert store.record_batch("lat", values) == 3
    assert store.dropped() == {
        ("lat", DropReason.NAN): 1,
        ("lat", DropReason.NEGATIVE): 1,
        ("lat", DropReason.INFINITE): 1,
        ("lat", DropReason.OUT_OF_RANGE): 1,
    }
    assert store.buffer("lat").window(-math.inf, math.inf)[1].tolist() == [1.0, 3.0, 4.0]


def test_batch_with_per_sample_timestamps(store):
    n = store.record_batch("lat", [1.0, 2.0, 3.0], [999.0, float("nan"), 2000.0])
    assert n == 1
    assert store.dropped() == {("lat", DropReason.BAD_TIMESTAMP): 2}


def test_batch_of_garbage(store):
    assert store.record_batch("lat", ["a", "b"]) == 0
    assert store.record_batch("lat", [1.0, 2.0], [1.0, 2.0, 3.0]) == 0
    assert store.record_batch("nope", [1.0, 2.0]) == 0
    d = store.dropped()
    assert d[("lat", DropReason.NOT_A_NUMBER)] == 2
    assert d[("lat", DropReason.BAD_TIMESTAMP)] == 2
    assert d[("nope", DropReason.UNKNOWN_METRIC)] == 2


def test_register_grows_and_keeps_samples(store):
    for i in range(20):
        store.record("lat", float(i), timestamp=990.0 + i * 0.5)
    old_cap = store.buffer("lat").capacity
    store.register(MetricSpec("lat", window_seconds=600, sample_rate_hz=10))
    assert store.buffer("lat").capacity > old_cap
    assert store.buffer("lat").window(-math.inf, math.inf)[1].tolist() == [float(i) for i in range(20)]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(name="", window_seconds=1), "name"),
        (dict(name="x", window_seconds=-1), "window_seconds"),
        (dict(name="x", window_seconds=1, sample_rate_hz=0), "sample_rate_hz"),
        (dict(name="x", window_seconds=float("nan")), "window_seconds"),
    ],
)
def test_invalid_spec_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MetricSpec(**kwargs)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(),
            st.text(max_size=3),
            st.none(),
            st.booleans(),
        ),
        max_size=30,
    )
)
def test_record_never_raises_and_loses_nothing(values):
    store = MetricStore(ManualClock(0.0))
    store.register(MetricSpec("m", window_seconds=10, sample_rate_hz=10))
    kept = sum(store.record("m", v) for v in values)
    assert kept + store.dropped_total("m") == len(values)
    assert store.buffer("m").count == kept


def test_batches_count_every_refused_value_and_parse_no_strings():
    """record_batch(generator) counted one drop for many values, and parsed "1.5" that record()
    refuses."""
    store = MetricStore(ManualClock(100.0))
    store.register(MetricSpec("x", 60.0, 10.0))
    assert store.record_batch("x", (v for v in [1.0, 2.0, 3.0])) == 3
    assert store.record_batch("x", ["1.5", 2.0, b"3", None, 4.0]) == 2
    assert store.record("x", "1.5") is False
    assert store.dropped() == {("x", DropReason.NOT_A_NUMBER): 4}
    assert store.record_batch("y", (v for v in range(7))) == 0
    assert store.dropped()[("y", DropReason.UNKNOWN_METRIC)] == 7
    # per-value timestamps stay aligned with the values that were kept
    store.register(MetricSpec("z", 60.0, 10.0))
    assert store.record_batch("z", ["a", 5.0, 6.0], [99.0, 99.5, 99.7]) == 2
    times, vals = store.buffer("z").window(-1e9, 1e9)
    assert vals.tolist() == [5.0, 6.0] and times.tolist() == [99.5, 99.7]


def test_wall_clock_timestamps_are_converted_by_age_and_the_future_is_now():
    """A sample stamped 59 s ahead used to hold its series for ~54 s: later ones looked late."""
    import time

    from aphrodite_sla.clock import system_clock

    store = MetricStore()
    assert store.clock is system_clock and store.wall_clock is time.time
    store.register(MetricSpec("x", 60.0, 10.0))
    assert store.record("x", 1.0, time.time() + 59)  # ahead: stored at the present
    assert store.record("x", 2.0, time.time() - 1)  # one second old: kept, not "out of order"
    assert store.record("x", 3.0)
    assert store.dropped() == {}
    times, _ = store.buffer("x").window(-1e18, 1e18)
    assert times.max() <= system_clock()
