"""numba kernels against numpy: exact quantiles (numpy's linear method) and moments, with wrap-around."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aphrodite_sla.store import kernels

QS = np.array([0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0])


def ring_of(window: np.ndarray, cap: int, lo: int) -> np.ndarray:
    """A ring of ``cap`` slots whose logical range [lo, lo+len(window)) holds ``window``."""
    ring = np.full(cap, np.nan)  # NaN outside the range: any read outside it would show
    idx = (lo + np.arange(window.size)) % cap
    ring[idx] = window
    return ring


def quantiles(window, cap, lo, qs=QS):
    ring = ring_of(window, cap, lo)
    out = np.empty(qs.size)
    scratch = np.empty(cap)
    n = kernels.window_quantiles(ring, cap, lo, lo + window.size, qs, scratch, out)
    assert n == window.size
    return out


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(window=arrays(np.float64, st.integers(1, 300), elements=finite), extra=st.integers(0, 50), lo=st.integers(0, 1000))
def test_quantiles_equal_numpy_small(window, extra, lo):
    cap = window.size + extra
    expected = np.quantile(window, QS)
    assert np.array_equal(quantiles(window, cap, lo), expected)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2049, 30_000),
    seed=st.integers(0, 2**32 - 1),
    shape=st.sampled_from(["lognormal", "sorted", "reversed", "ties", "bimodal"]),
    lo=st.integers(0, 100_000),
)
def test_quantiles_equal_numpy_large_floyd_rivest_path(n, seed, shape, lo):
    rng = np.random.default_rng(seed)
    w = rng.lognormal(4.0, 0.8, n)
    if shape == "sorted":
        w.sort()
    elif shape == "reversed":
        w = np.sort(w)[::-1].copy()
    elif shape == "ties":
        w = rng.integers(0, 5, n).astype(float)
    elif shape == "bimodal":
        w = np.where(rng.random(n) < 0.97, w, w * 50)
    cap = n + 17
    assert np.array_equal(quantiles(w, cap, lo), np.quantile(w, QS))


def test_empty_window_gives_nan():
    out = np.empty(2)
    assert kernels.window_quantiles(np.zeros(8), 8, 3, 3, np.array([0.5, 0.9]), np.empty(8), out) == 0
    assert np.isnan(out).all()
    m = np.empty(6)
    assert kernels.window_moments(np.zeros(8), 8, 3, 3, 0.0, 1.0, m) == 0
    assert m[0] == 0 and np.isnan(m[2])


@settings(max_examples=200, deadline=None)
@given(
    window=arrays(np.float64, st.integers(1, 400), elements=st.floats(0, 1e5)),
    extra=st.integers(0, 30),
    lo=st.integers(0, 500),
    bounds=st.tuples(st.floats(0, 1e5), st.floats(0, 1e5)),
)
def test_moments_equal_numpy(window, extra, lo, bounds):
    lower, upper = sorted(bounds)
    cap = window.size + extra
    ring = ring_of(window, cap, lo)
    out = np.empty(6)
    kernels.window_moments(ring, cap, lo, lo + window.size, lower, upper, out)
    assert out[0] == window.size
    np.testing.assert_allclose(out[1], window.sum(), rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(out[2], window.mean(), rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(out[3], window.std(), rtol=1e-6, atol=1e-5)
    assert out[4] == np.count_nonzero(window > upper)
    assert out[5] == np.count_nonzero(window < lower)


def test_moments_are_stable_for_large_offsets():
    w = 1e9 + np.array([1.0, 2.0, 3.0, 4.0])
    out = np.empty(6)
    kernels.window_moments(w, 4, 0, 4, -np.inf, np.inf, out)
    assert out[3] == pytest.approx(np.std([1.0, 2.0, 3.0, 4.0]), rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2049, 40_000),
    seed=st.integers(0, 2**32 - 1),
    qs=st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0]), min_size=1, max_size=4, unique=True),
    shape=st.sampled_from(["lognormal", "ties", "bimodal", "sorted"]),
)
def test_quantiles_with_separate_brackets_equal_numpy(n, seed, qs, shape):
    """Quantiles far apart get one bracket (and one pass) each; each rank maps into its own."""
    rng = np.random.default_rng(seed)
    w = rng.lognormal(4.0, 0.8, n)
    if shape == "ties":
        w = rng.integers(0, 7, n).astype(float)
    elif shape == "bimodal":
        w = np.where(rng.random(n) < 0.9, w, w * 50)
    elif shape == "sorted":
        w.sort()
    q = np.array(sorted(qs))
    assert np.array_equal(quantiles(w, n + 5, int(rng.integers(0, 10_000)), q), np.quantile(w, q))


def test_evaluate_windows_matches_numpy_for_every_window_in_one_call():
    """Several rings (wrapped, partly filled, one empty) with their window, newest part, moments,
    quantiles and error-budget counts, against numpy on the same slices."""
    rng = np.random.default_rng(3)
    rings = []
    for cap, count, rate in ((5000, 12_345, 10.0), (300, 120, 1.0), (64, 0, 1.0), (20_000, 20_000, 50.0)):
        times = np.zeros(cap)
        values = np.zeros(cap)
        idx = np.arange(count)
        times[idx % cap] = idx / rate
        values[idx % cap] = rng.lognormal(3, 1, count)
        rings.append((times, values, cap, max(0, count - cap), count))
    now = [r[0][(r[4] - 1) % r[2]] if r[4] else 0.0 for r in rings]
    end = max(now)
    spans = np.array([[end - 120.0, end - 5.0, end], [end - 60.0, end - 5.0, end], [end - 10, end - 5, end], [end - 300.0, end - 5.0, end]])
    qsets = [(0.5, 0.99), (), (0.95,), (0.5, 0.95, 0.99)]
    q_ptr = np.cumsum([0] + [len(q) for q in qsets]).astype(np.int64)
    flags = np.array([kernels.FLAG_MOMENTS | kernels.FLAG_FRESH, kernels.FLAG_MOMENTS, kernels.FLAG_FRESH, kernels.FLAG_FRESH], dtype=np.int64)
    bounds = [(30.0, True), (10.0, False)]  # ring 0 has two objective SLAs
    b_ptr = np.array([0, 2, 2, 2, 2], dtype=np.int64)
    width = kernels.PART_Q + 3
    out = np.full((4, kernels.ROW_PARTS + 2 * width), np.nan)
    b_out = np.zeros(2)
    kernels.evaluate_windows(
        np.array([r[0].ctypes.data for r in rings], dtype=np.int64), np.array([r[1].ctypes.data for r in rings], dtype=np.int64),
        np.array([(r[2], r[3], r[4]) for r in rings], dtype=np.int64), spans, q_ptr,
        np.array([q for qs in qsets for q in qs], dtype=np.float64), flags, np.array([-1, -1, -1, -1], dtype=np.int64),
        b_ptr, np.array([b for b, _ in bounds]), np.array([u for _, u in bounds]),
        np.zeros((4, kernels.INC_INTS), dtype=np.int64), np.zeros((4, kernels.INC_FLOATS)), np.zeros(4, dtype=np.int64),
        np.full(4, -1, dtype=np.int64), np.empty(20_000), out, b_out,
    )
    for g, (times, values, cap, first, count) in enumerate(rings):
        idx = np.arange(first, count) % cap
        t, v = times[idx], values[idx]
        window = v[(t > spans[g, 0]) & (t <= spans[g, 2])]
        fresh = v[(t > spans[g, 1]) & (t <= spans[g, 2])]
        row = out[g]
        base = kernels.ROW_PARTS
        assert row[base + kernels.PART_N] == window.size
        if qsets[g] and window.size:
            assert np.array_equal(row[base + kernels.PART_Q : base + kernels.PART_Q + len(qsets[g])], np.quantile(window, qsets[g]))
        if flags[g] & kernels.FLAG_MOMENTS and window.size:
            assert row[base + kernels.PART_SUM] == pytest.approx(window.sum(), rel=1e-12)
            assert row[base + kernels.PART_MEAN] == pytest.approx(window.mean(), rel=1e-12)
        if flags[g] & kernels.FLAG_FRESH:
            fb = base + width
            assert row[fb + kernels.PART_N] == fresh.size
            if qsets[g] and fresh.size:
                assert np.array_equal(row[fb + kernels.PART_Q : fb + kernels.PART_Q + len(qsets[g])], np.quantile(fresh, qsets[g]))
        assert row[kernels.ROW_NEW] == window.size  # nothing classified before: the whole window is new
    window0 = rings[0][1][np.arange(rings[0][3], rings[0][4]) % rings[0][2]][
        (rings[0][0][np.arange(rings[0][3], rings[0][4]) % rings[0][2]] > spans[0, 0])]
    assert b_out.tolist() == [np.count_nonzero(window0 > 30.0), np.count_nonzero(window0 < 10.0)]


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 60), cap=st.integers(1, 20), a=st.floats(-5, 65), width=st.floats(0, 70))
def test_window_bounds_match_the_python_search(n, cap, a, width):
    from aphrodite_sla.store.ring import RingBuffer, logical_range

    buf = RingBuffer(cap)
    for i in range(n):
        buf.append(float(i // 2), 1.0)  # ties too
    snap = buf.snapshot()
    out = np.empty(2, dtype=np.int64)
    kernels.window_bounds(snap.times, snap.capacity, snap.first, snap.end, a, a + width, out)
    assert tuple(out) == logical_range(snap, a, a + width)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rate=st.sampled_from([50.0, 400.0, 2000.0]),
    qs=st.lists(st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0]), min_size=0, max_size=3, unique=True),
    moments=st.booleans(),
    steps=st.lists(st.tuples(st.floats(0.5, 40.0), st.sampled_from(["steady", "shift", "burst", "ties", "quiet"])),
                   min_size=3, max_size=25),
)
def test_incremental_windows_match_numpy_at_every_evaluation(seed, rate, qs, moments, steps):
    """A window evaluated again and again through the plan (incremental updates, rebuilds when a
    rank leaves its bracket or the ring was lapped, late samples, idle gaps): every evaluation
    equals numpy on the window's exact contents."""
    from aphrodite_sla.sla.window_plan import WindowPlan
    from aphrodite_sla.store.metric_store import MetricStore
    from aphrodite_sla.store.spec import MetricSpec

    rng = np.random.default_rng(seed)
    now = {"t": 1000.0}
    store = MetricStore(lambda: now["t"])
    store.register(MetricSpec("x", 120.0, rate / 2))  # ring for 60 s at `rate`: bursts lap it
    if not qs and not moments:
        moments = True
    plan = WindowPlan(store, [], {("x", 30.0): (tuple(sorted(qs)), moments)})
    all_t: list[np.ndarray] = []
    all_v: list[np.ndarray] = []
    for dt, kind in steps:
        n = {"steady": int(rate * dt), "shift": int(rate * dt), "burst": int(4 * rate * dt), "ties": int(rate * dt), "quiet": 0}[kind]
        n = min(n, 200_000)
        t = np.sort(now["t"] + rng.random(n) * dt)
        v = {"steady": rng.lognormal(3, 0.5, n), "shift": rng.lognormal(4.5, 0.2, n), "burst": rng.lognormal(3, 1.5, n),
             "ties": rng.integers(0, 4, n).astype(float), "quiet": np.empty(0)}[kind]
        now["t"] += dt
        store.record_batch("x", v, t)
        all_t.append(t)
        all_v.append(v)
        window = plan.compute(now["t"], 5.0).windows[("x", 30.0)]
        buf = store.buffer("x")
        held_t, held_v = buf.window(now["t"] - 30.0, now["t"])
        assert window.samples == held_v.size
        if held_v.size:
            for q in qs:
                assert window.quantiles[q] == np.quantile(held_v, q), (q, kind)
            if moments:
                assert window.mean == pytest.approx(held_v.mean(), rel=1e-9, abs=1e-9)
                assert window.rate == pytest.approx(held_v.sum() / 30.0, rel=1e-9, abs=1e-9)
