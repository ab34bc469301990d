"""Ring buffer: append, wrap-around, time order, window selection, eviction accounting."""
import math
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aphrodite_sla.store.ring import Rejected, RingBuffer, logical_range


def test_append_and_window_before_wrap():
    buf = RingBuffer(8)
    for i in range(5):
        buf.append(float(i), float(i * 10))
    times, values = buf.window(0.5, 3.0)
    assert times.tolist() == [1.0, 2.0, 3.0]
    assert values.tolist() == [10.0, 20.0, 30.0]
    assert len(buf) == 5 and buf.count == 5


def test_wrap_keeps_newest_capacity_samples():
    buf = RingBuffer(4)
    for i in range(10):
        buf.append(float(i), float(i))
    times, values = buf.window(-math.inf, math.inf)
    assert values.tolist() == [6.0, 7.0, 8.0, 9.0]
    assert len(buf) == 4 and buf.count == 10


def test_late_sample_within_tolerance_is_stored_at_newest_time():
    buf = RingBuffer(8, late_tolerance_s=5.0)
    buf.append(100.0, 1.0)
    buf.append(97.0, 2.0)  # 3 s late: kept, moved to t=100
    times, values = buf.window(-math.inf, math.inf)
    assert times.tolist() == [100.0, 100.0]
    assert values.tolist() == [1.0, 2.0]


def test_sample_far_out_of_order_is_rejected():
    buf = RingBuffer(8, late_tolerance_s=5.0)
    buf.append(100.0, 1.0)
    with pytest.raises(Rejected) as err:
        buf.append(90.0, 2.0)
    assert err.value.reason == "out_of_order"
    assert buf.count == 1


def test_batch_equals_single_appends_including_wrap():
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.random(50))
    v = rng.random(50)
    one = RingBuffer(16)
    many = RingBuffer(16)
    for ti, vi in zip(t, v):
        one.append(ti, vi)
    for chunk in np.array_split(np.arange(50), 7):
        many.append_batch(t[chunk], v[chunk])
    assert np.array_equal(one.window(-math.inf, math.inf)[1], many.window(-math.inf, math.inf)[1])
    assert np.array_equal(one.window(-math.inf, math.inf)[0], many.window(-math.inf, math.inf)[0])


def test_batch_larger_than_capacity_keeps_newest():
    buf = RingBuffer(4, window_s=1e9)
    buf.append_batch(np.arange(10.0), np.arange(10.0) * 2)
    assert buf.window(-math.inf, math.inf)[1].tolist() == [12.0, 14.0, 16.0, 18.0]
    assert buf.evicted_in_window == 6


def test_batch_rejects_far_late_and_clamps_near_late():
    buf = RingBuffer(16, late_tolerance_s=5.0)
    buf.append(100.0, 0.0)
    rejected = buf.append_batch(np.array([101.0, 90.0, 99.0, 102.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert rejected == 1
    times, values = buf.window(-math.inf, math.inf)
    assert values.tolist() == [0.0, 1.0, 3.0, 4.0]
    assert times.tolist() == [100.0, 101.0, 101.0, 102.0]


def test_eviction_inside_window_is_counted_only_for_in_window_samples():
    buf = RingBuffer(4, window_s=10.0)
    for i in range(4):
        buf.append(float(i), 1.0)
    buf.append(100.0, 1.0)  # overwrites t=0, which is outside (100-10, 100]
    assert buf.evicted_in_window == 0
    for i in range(4):
        buf.append(101.0 + i, 1.0)  # overwrites t=1,2,3 (out of window) then t=100 (in window)
    assert buf.evicted_in_window == 1


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 60),
    cap=st.integers(1, 20),
    a=st.floats(-5, 65),
    width=st.floats(0, 70),
)
def test_window_matches_bruteforce(n, cap, a, width):
    buf = RingBuffer(cap)
    for i in range(n):
        buf.append(float(i), float(i) + 0.5)
    kept = np.arange(max(0, n - cap), n, dtype=float)
    expected = kept[(kept > a) & (kept <= a + width)]
    times, values = buf.window(a, a + width)
    assert times.tolist() == expected.tolist()
    assert values.tolist() == (expected + 0.5).tolist()
    lo, hi = logical_range(buf.snapshot(), a, a + width)
    assert hi - lo == expected.size


def test_concurrent_writers_lose_nothing():
    buf = RingBuffer(100_000)
    per_thread = 5000

    def writer(k):
        for _ in range(per_thread):
            buf.append(1.0, float(k))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    _, values = buf.window(-math.inf, math.inf)
    assert values.size == 4 * per_thread
    assert sorted(np.bincount(values.astype(int)).tolist()) == [per_thread] * 4


def test_reader_never_sees_torn_window_while_writer_laps():
    """A reader racing a writer gets only samples that belong together: value == time."""
    buf = RingBuffer(256)
    stop = threading.Event()

    def writer():
        t = 0.0
        while not stop.is_set():
            t += 1.0
            buf.append(t, t)

    th = threading.Thread(target=writer)
    th.start()
    try:
        for _ in range(300):
            times, values = buf.window(-math.inf, math.inf)
            assert np.array_equal(times, values)
            assert np.all(np.diff(times) > 0)
    finally:
        stop.set()
        th.join()


def test_grow_keeps_samples_and_logical_order_including_wrapped():
    buf = RingBuffer(5)
    for i in range(13):
        buf.append(float(i), float(i))
    buf.grow(11, window_s=100.0)
    assert buf.capacity == 11
    assert buf.window(-math.inf, math.inf)[1].tolist() == [8.0, 9.0, 10.0, 11.0, 12.0]
    for i in range(13, 20):
        buf.append(float(i), float(i))
    assert buf.window(-math.inf, math.inf)[1].tolist() == [float(i) for i in range(9, 20)]


def test_grow_while_writing_loses_nothing():
    buf = RingBuffer(64)
    n = 20000

    def writer():
        for i in range(n):
            buf.append(float(i), float(i))

    th = threading.Thread(target=writer)
    th.start()
    for cap in range(100, 30000, 1000):
        buf.grow(cap, window_s=math.inf)
    buf.grow(n, window_s=math.inf)
    th.join()
    values = buf.window(-math.inf, math.inf)[1]
    assert values[-1] == n - 1
    assert np.array_equal(np.diff(values), np.ones(values.size - 1))
