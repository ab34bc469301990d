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


def test_warm_up_in_background_runs_once():
    t1 = kernels.warm_up_in_background()
    t2 = kernels.warm_up_in_background()
    assert t1 is t2
    t1.join(120)
    assert not t1.is_alive()


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 60), cap=st.integers(1, 20), a=st.floats(-5, 65), width=st.floats(0, 70))
def test_window_bounds_match_the_python_search(n, cap, a, width):
    from aphrodite_sla.store.ring import RingBuffer, logical_range

    buf = RingBuffer(cap)
    for i in range(n):
        buf.append(float(i // 2), 1.0)  # ties too
    snap = buf.snapshot()
    out = np.empty(2, dtype=np.int64)
    kernels.window_bounds(snap.times, snap.capacity, snap.first, snap.count, a, a + width, out)
    assert tuple(out) == logical_range(snap, a, a + width)
