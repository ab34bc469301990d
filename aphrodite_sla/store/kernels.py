"""numba kernels over a ring buffer's logical range: exact quantiles by selection, and moments.

Why numba: an exact p99 over 60k raw samples must cost about as much as reading them once, not a
sort (numpy's ``percentile`` partitions a copy per call and is 5-8x slower here).

The kernels read the ring in place (two contiguous segments when the range wraps), release the GIL
(``nogil=True``) so the engine's thread keeps running, and are compiled lazily with ``cache=True``.
Nothing here runs at import: ``warm_up_in_background()`` compiles or loads them off the caller's
thread. Importing this module imports numba, so the rest of the package imports it lazily.

Quantiles use numpy's default ("linear", Hyndman–Fan type 7) definition, with numpy's exact
virtual-index and interpolation formulas, so results equal ``np.percentile`` bit for bit in the
cases we test.
"""
from __future__ import annotations

import math
import threading

import numpy as np
from numba import njit

# Below this many samples the whole window is copied and selected directly.
_DIRECT_SELECT_MAX = 2048
# Sample size used to choose the Floyd–Rivest bracketing pivots.
_PIVOT_SAMPLE = 1024
# Bracket half-width in binomial standard deviations: a miss only costs a fallback, never accuracy.
_BRACKET_SIGMAS = 4.0
# Let LLVM reorder sums so the moments loop vectorises; no "no-NaN/no-inf" assumptions, since the
# bounds passed in may be infinite.
_REASSOCIATE = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, nogil=True)
def _select_inplace(a, left, right, k):  # pragma: no cover - compiled
    """Wirth's selection on a[left..right] (inclusive): afterwards a[k] holds the k-th smallest and
    a[left..k-1] <= a[k] <= a[k+1..right]."""
    while left < right:
        # median of three as pivot guards against sorted and reversed inputs
        mid = (left + right) >> 1
        x0, x1, x2 = a[left], a[mid], a[right]
        if x0 > x1:
            x0, x1 = x1, x0
        if x1 > x2:
            x1 = x2
            if x0 > x1:
                x1 = x0
        x = x1
        i = left
        j = right
        while i <= j:
            while a[i] < x:
                i += 1
            while x < a[j]:
                j -= 1
            if i <= j:
                t = a[i]
                a[i] = a[j]
                a[j] = t
                i += 1
                j -= 1
        if j < k:
            left = i
        if k < i:
            right = j
    return a[k]


@njit(cache=True, nogil=True)
def _copy_range(values, cap, lo, hi, out):  # pragma: no cover - compiled
    m = 0
    for idx in range(lo, hi):
        out[m] = values[idx % cap]
        m += 1
    return m


@njit(cache=True, nogil=True)
def _virtual_index(n, q):  # pragma: no cover - compiled
    # numpy's virtual index for method="linear": (n - 1) * q, same operation order.
    return (n - 1.0) * q


@njit(cache=True, nogil=True)
def _lerp(a, b, t):  # pragma: no cover - compiled
    # numpy's _lerp: symmetric form keeps monotonicity and exact endpoints.
    d = b - a
    if t >= 0.5:
        return b - d * (1.0 - t)
    return a + d * t


@njit(cache=True, nogil=True)
def _bisect_right(times, cap, lo, hi, t):  # pragma: no cover - compiled
    while lo < hi:
        mid = (lo + hi) >> 1
        if times[mid % cap] <= t:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def window_bounds(times, cap, first, count, t_start, t_end, out):  # pragma: no cover - compiled
    """Logical [lo, hi) of the samples with t_start < time <= t_end in ring ``times`` (sorted in
    logical order over [first, count)): two binary searches, written to ``out[0:2]``."""
    lo = _bisect_right(times, cap, first, count, t_start)
    out[0] = lo
    out[1] = _bisect_right(times, cap, lo, count, t_end)


@njit(cache=True, nogil=True)
def window_quantiles(values, cap, lo, hi, qs, scratch, out):  # pragma: no cover - compiled
    """Exact quantiles ``qs`` (each in [0, 1], ascending) of ring ``values`` over logical [lo, hi).

    Floyd–Rivest in one pass: pivots chosen from a strided sample bracket every needed rank with
    high probability; one pass counts what lies below the low pivot and collects what lies between
    the pivots into ``scratch`` (len >= hi - lo); selection then runs on that small set. If a rank
    falls outside the bracket the whole window is copied and selected: slower, never wrong.
    Returns how many samples were in the window; writes NaN into ``out`` for an empty window.
    """
    n = hi - lo
    nq = qs.shape[0]
    if n <= 0:
        for j in range(nq):
            out[j] = np.nan
        return 0
    r_lo = np.empty(nq, dtype=np.int64)
    gam = np.empty(nq, dtype=np.float64)
    for j in range(nq):
        h = _virtual_index(float(n), qs[j])
        f = math.floor(h)
        if f < 0.0:
            f = 0.0
        if f > n - 1:
            f = float(n - 1)
        r_lo[j] = int(f)
        gam[j] = h - math.floor(h)
    rmin = r_lo[0]
    rmax = min(r_lo[nq - 1] + 1, n - 1)

    base = 0  # rank offset of scratch[0]
    m = 0
    direct = n <= _DIRECT_SELECT_MAX
    if not direct:
        s = _PIVOT_SAMPLE
        sample = np.empty(s, dtype=np.float64)
        step = n / s
        for j in range(s):
            sample[j] = values[(lo + int(j * step)) % cap]
        sample.sort()
        p_lo = rmin / (n - 1.0)
        p_hi = rmax / (n - 1.0)
        d_lo = _BRACKET_SIGMAS * math.sqrt(s * p_lo * (1.0 - p_lo)) + 2.0
        d_hi = _BRACKET_SIGMAS * math.sqrt(s * p_hi * (1.0 - p_hi)) + 2.0
        i_lo = int(math.floor(p_lo * (s - 1) - d_lo))
        i_hi = int(math.ceil(p_hi * (s - 1) + d_hi))
        low_pivot = sample[i_lo] if i_lo >= 0 else -np.inf
        high_pivot = sample[i_hi] if i_hi < s else np.inf
        below = 0
        first_len = min(n, cap - lo % cap)
        for seg in range(2):
            # contiguous views indexed from 0 let LLVM drop negative-index checks
            part = values[lo % cap : lo % cap + first_len] if seg == 0 else values[0 : n - first_len]
            for idx in range(part.size):
                v = part[idx]
                if v < low_pivot:
                    below += 1
                elif v <= high_pivot:
                    scratch[m] = v
                    m += 1
        if below <= rmin and rmax < below + m:
            base = below
        else:
            direct = True
    if direct:
        m = _copy_range(values, cap, lo, hi, scratch)
        base = 0

    # Select the needed ranks in ascending order; each selection leaves the array partitioned, so
    # the next one only searches to the right of the previous rank.
    left = 0
    for j in range(nq):
        k = r_lo[j] - base
        lower = _select_inplace(scratch, left, m - 1, k)
        if r_lo[j] + 1 <= n - 1 and gam[j] > 0.0:
            # the next order statistic is the minimum of what lies right of k
            upper = scratch[k + 1]
            for idx in range(k + 2, m):
                if scratch[idx] < upper:
                    upper = scratch[idx]
            out[j] = _lerp(lower, upper, gam[j])
        else:
            out[j] = lower
        left = k
    return n


@njit(cache=True, nogil=True, fastmath=_REASSOCIATE)
def window_moments(values, cap, lo, hi, lower_bound, upper_bound, out):  # pragma: no cover - compiled
    """One vectorised pass over ring ``values`` logical [lo, hi): out = [n, sum, mean, std (ddof 0),
    count > upper_bound, count < lower_bound]. Sums are shifted by the first value for stability.
    (Min and max are quantiles 0 and 1; tracking them here would stop the loop vectorising.)"""
    n = hi - lo
    if n <= 0:
        out[0] = 0.0
        out[1] = 0.0
        out[2] = np.nan
        out[3] = np.nan
        out[4] = 0.0
        out[5] = 0.0
        return 0
    shift = values[lo % cap]
    s1 = 0.0
    s2 = 0.0
    above = 0
    below = 0
    first_len = min(n, cap - lo % cap)
    for seg in range(2):
        part = values[lo % cap : lo % cap + first_len] if seg == 0 else values[0 : n - first_len]
        for idx in range(part.size):
            v = part[idx]
            d = v - shift
            s1 += d
            s2 += d * d
            above += v > upper_bound
            below += v < lower_bound
    mean_d = s1 / n
    var = s2 / n - mean_d * mean_d
    if var < 0.0:
        var = 0.0
    out[0] = n
    out[1] = s1 + shift * n
    out[2] = mean_d + shift
    out[3] = math.sqrt(var)
    out[4] = above
    out[5] = below
    return n


@njit(cache=True, nogil=True)
def window_stats(times, values, cap, first, count, t_start, t_fresh, t_end, qs, need_moments, scratch, out):  # pragma: no cover - compiled
    """Everything one evaluation needs from one series, in one call (the per-call overhead of
    several small kernels cost more than the work): for the window (t_start, t_end] and its newest
    part (t_fresh, t_end], ``out`` gets [lo, hi, then per part: n, sum, mean, quantiles qs...]."""
    nq = qs.shape[0]
    bounds = np.empty(2, dtype=np.int64)
    moments = np.empty(6, dtype=np.float64)
    q_out = np.empty(max(nq, 1), dtype=np.float64)
    window_bounds(times, cap, first, count, t_start, t_end, bounds)
    lo = bounds[0]
    hi = bounds[1]
    out[0] = lo
    out[1] = hi
    fresh_lo = _bisect_right(times, cap, lo, hi, t_fresh)
    for part in range(2):
        a = lo if part == 0 else fresh_lo
        base = 2 + part * (3 + nq)
        out[base] = hi - a
        if need_moments:
            window_moments(values, cap, a, hi, -np.inf, np.inf, moments)
            out[base + 1] = moments[1]
            out[base + 2] = moments[2]
        else:
            out[base + 1] = np.nan
            out[base + 2] = np.nan
        if nq > 0:
            window_quantiles(values, cap, a, hi, qs, scratch, q_out)
            for j in range(nq):
                out[base + 3 + j] = q_out[j]


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel, with the argument types used in production."""
    values = np.linspace(1.0, 2.0, 4096)
    scratch = np.empty_like(values)
    out = np.empty(6, dtype=np.float64)
    window_quantiles(values, values.size, 10, 4000, np.array([0.5, 0.99]), scratch, out)
    window_moments(values, values.size, 10, 4000, 0.0, 1.5, out)
    bounds = np.empty(2, dtype=np.int64)
    window_bounds(values, values.size, 0, 4000, 1.2, 1.8, bounds)
    stats_out = np.empty(2 + 2 * (3 + 2))
    window_stats(values, values, values.size, 0, 4000, 1.1, 1.5, 1.9, np.array([0.5, 0.99]), True, scratch, stats_out)
    window_stats(values, values, values.size, 0, 4000, 1.1, 1.5, 1.9, np.empty(0), True, scratch, stats_out[:8])


_warm_lock = threading.Lock()
_warm_thread: threading.Thread | None = None


def warm_up_in_background() -> threading.Thread:
    """Start ``warm_up`` on a daemon thread once per process, so no caller's thread ever compiles."""
    global _warm_thread
    with _warm_lock:
        if _warm_thread is None:
            _warm_thread = threading.Thread(target=warm_up, name="aphrodite-sla-numba-warmup", daemon=True)
            _warm_thread.start()
        return _warm_thread
