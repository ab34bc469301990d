"""numba kernels over a ring buffer's logical range: exact quantiles by selection, and moments.

Why numba: an exact p99 over 60k raw samples must cost about as much as reading them once, not a
sort (numpy's ``percentile`` partitions a copy per call and is 5-8x slower here).

The kernels read the ring in place (two contiguous segments when the range wraps), release the GIL
(``nogil=True``) so the engine's thread keeps running, and are compiled lazily with ``cache=True``.
Nothing here runs at import: the evaluator thread calls ``warm_up()`` before its first evaluation.
Importing this module imports numba, so the rest of the package imports it lazily.

Quantiles use numpy's default ("linear", Hyndman–Fan type 7) definition, with numpy's exact
virtual-index and interpolation formulas, so results equal ``np.percentile`` bit for bit in the
cases we test.
"""
from __future__ import annotations

import math

import numpy as np
from numba import carray, njit, types
from numba.extending import intrinsic

# Below this many samples the whole window is copied and selected directly.
_DIRECT_SELECT_MAX = 2048
# Sample size used to choose the Floyd–Rivest bracketing pivots.
_PIVOT_SAMPLE = 2048
# Bracket half-width in binomial standard deviations: a miss only costs a fallback, never accuracy.
_BRACKET_SIGMAS = 3.5
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


# Brackets closer than this share of the window are merged: one pass over the window costs about
# as much as selecting among ~5% of it.
_MERGE_GAP = 0.05
# A bracket whose share of values below it is outside this band is tested with branches (they
# are well predicted); inside it, without (a p50 bracket's "below?" would be mispredicted half the time).
_PREDICTABLE_SHARE = 0.15


@njit(cache=True, nogil=True)
def _collect_one_bracket(values, cap, lo, n, first_len, low, high, share_below, scratch):  # pragma: no cover - compiled
    """One pass over ring ``values`` logical [lo, lo + n): count the values below ``low`` and copy
    those in [low, high] to ``scratch``. Returns (below, copied)."""
    below = 0
    m = 0
    predictable = share_below <= _PREDICTABLE_SHARE or share_below >= 1.0 - _PREDICTABLE_SHARE
    for seg in range(2):
        # contiguous views indexed from 0 let LLVM drop negative-index checks
        part = values[lo % cap : lo % cap + first_len] if seg == 0 else values[0 : n - first_len]
        if predictable:
            for idx in range(part.size):
                v = part[idx]
                if v < low:
                    below += 1
                elif v <= high:
                    scratch[m] = v
                    m += 1
        else:
            for idx in range(part.size):
                v = part[idx]
                below += v < low
                scratch[m] = v
                m += (v >= low) & (v <= high)
    return below, m


@njit(cache=True, nogil=True)
def window_quantiles(values, cap, lo, hi, qs, scratch, out):  # pragma: no cover - compiled
    """Exact quantiles ``qs`` (each in [0, 1], ascending) of ring ``values`` over logical [lo, hi).

    Floyd–Rivest with one bracket per needed rank: pivots chosen from a strided sample bracket
    each rank with high probability (brackets that overlap are merged); one pass counts what lies
    below, between and above the brackets and collects what lies inside them into ``scratch``
    (len >= hi - lo). The brackets are disjoint value ranges, so a rank inside bracket k is the
    (rank - below - gaps before k)-th smallest of everything collected, and selection runs on that
    small set. p50, p95 and p99 together cost about one pass, not a selection over half the
    window. If a rank falls outside every bracket the whole window is copied and selected: slower,
    never wrong. Returns how many samples were in the window; writes NaN for an empty window.
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
    k_lo = np.empty(nq, dtype=np.int64)  # scratch index of each needed order statistic r_lo[j]
    region_start = np.zeros(nq, dtype=np.int64)  # the scratch region (bracket) holding it
    region_end = np.empty(nq, dtype=np.int64)
    m = 0
    direct = n <= _DIRECT_SELECT_MAX
    if not direct:
        s = _PIVOT_SAMPLE
        sample = np.empty(s, dtype=np.float64)
        step = n / s
        for j in range(s):
            sample[j] = values[(lo + int(j * step)) % cap]
        # bracket k: sample ranks [a_k, b_k] around each needed rank; merged where they (nearly) overlap
        seg_a = np.empty(nq, dtype=np.int64)
        seg_b = np.empty(nq, dtype=np.int64)
        nseg = 0
        for j in range(nq):
            r_top = min(r_lo[j] + 1, n - 1)
            p_lo = r_lo[j] / (n - 1.0)
            p_hi = r_top / (n - 1.0)
            d_lo = _BRACKET_SIGMAS * math.sqrt(s * p_lo * (1.0 - p_lo)) + 2.0
            d_hi = _BRACKET_SIGMAS * math.sqrt(s * p_hi * (1.0 - p_hi)) + 2.0
            a = int(math.floor(p_lo * (s - 1) - d_lo))
            b = int(math.ceil(p_hi * (s - 1) + d_hi))
            if nseg > 0 and a - seg_b[nseg - 1] <= _MERGE_GAP * s:
                seg_b[nseg - 1] = max(seg_b[nseg - 1], b)
            else:
                seg_a[nseg] = a
                seg_b[nseg] = b
                nseg += 1
        # pivot values: the sample's order statistics at the bracket ends (ascending selections)
        low_pv = np.empty(nseg, dtype=np.float64)
        high_pv = np.empty(nseg, dtype=np.float64)
        left = 0
        for k in range(nseg):
            if seg_a[k] < 0:
                low_pv[k] = -np.inf
            else:
                low_pv[k] = _select_inplace(sample, left, s - 1, seg_a[k])
                left = seg_a[k]
            if seg_b[k] >= s:
                high_pv[k] = np.inf
            else:
                high_pv[k] = _select_inplace(sample, left, s - 1, seg_b[k])
                left = seg_b[k]
        # equal pivots can make neighbouring value ranges touch: merge them too
        w = 0
        for k in range(1, nseg):
            if low_pv[k] <= high_pv[w]:
                high_pv[w] = max(high_pv[w], high_pv[k])
            else:
                w += 1
                low_pv[w] = low_pv[k]
                high_pv[w] = high_pv[k]
                seg_a[w] = seg_a[k]
        nseg = w + 1
        # one pass per bracket, each with the cheaper loop for its position; bracket k's values
        # land in scratch[offset[k]:offset[k + 1]]
        below = np.empty(nseg, dtype=np.int64)
        offset = np.zeros(nseg + 1, dtype=np.int64)
        first_len = min(n, cap - lo % cap)
        for k in range(nseg):
            below[k], inside = _collect_one_bracket(
                values, cap, lo, n, first_len, low_pv[k], high_pv[k], seg_a[k] / s, scratch[offset[k]:]
            )
            offset[k + 1] = offset[k] + inside
        m = offset[nseg]
        # each needed rank (and its upper neighbour when interpolating) must lie in one bracket
        for j in range(nq):
            r = r_lo[j]
            r_next = min(r + 1, n - 1)
            found = -1
            for k in range(nseg):
                inside = offset[k + 1] - offset[k]
                if below[k] <= r and r_next < below[k] + inside:
                    found = k
                    break
            if found < 0:
                direct = True
                break
            k_lo[j] = offset[found] + r - below[found]
            region_start[j] = offset[found]
            region_end[j] = offset[found + 1]
    if direct:
        m = _copy_range(values, cap, lo, hi, scratch)
        for j in range(nq):
            k_lo[j] = r_lo[j]
            region_start[j] = 0
            region_end[j] = m

    # Select the needed ranks in ascending order; each selection leaves its region partitioned,
    # so the next rank in the same region only searches to the right of the previous one.
    left = 0
    for j in range(nq):
        k = k_lo[j]
        end = region_end[j]
        left = max(left, region_start[j])
        lower = _select_inplace(scratch, left, end - 1, k)
        if r_lo[j] + 1 <= n - 1 and gam[j] > 0.0:
            # the next order statistic is the minimum of what lies right of k in its bracket
            upper = scratch[k + 1]
            for idx in range(k + 2, end):
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


@intrinsic
def _f64_array_at(typingctx, address):  # pragma: no cover - compiled
    """A float64 pointer from an integer address (what ``carray`` needs to view a ring in place)."""
    sig = types.CPointer(types.float64)(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.float64)))

    return sig, codegen


# Columns of one row of ``evaluate_windows``' output: the window's logical range and the number of
# newly classified samples, then per part (window, then its newest interval): n, sum, mean and the
# quantiles.
ROW_LO, ROW_HI, ROW_NEW = 0, 1, 2
ROW_PARTS = 3
PART_N, PART_SUM, PART_MEAN, PART_Q = 0, 1, 2, 3
FLAG_MOMENTS = 1
FLAG_FRESH = 2


@njit(cache=True, nogil=True)
def evaluate_windows(addr_times, addr_values, ring, span, q_ptr, qs, flags, count_from, b_ptr, b_bounds, b_upper,
                     scratch, out, b_out):  # pragma: no cover - compiled
    """Everything one evaluation needs from every window, in one call (per-call overhead of many
    small kernels cost more than the work). Window g reads the ring whose times and values arrays
    live at ``addr_times[g]`` / ``addr_values[g]`` (the caller keeps those arrays alive), with
    ``ring[g] = (capacity, first, count)`` and ``span[g] = (t_start, t_fresh, t_end)``:

    * row g of ``out``: [lo, hi, new] then, for (t_start, t_end] and, when ``flags & FLAG_FRESH``,
      for its newest part (t_fresh, t_end]: [n, sum, mean, quantiles qs[q_ptr[g]:q_ptr[g + 1]]...]
      (sum and mean only with ``flags & FLAG_MOMENTS``);
    * error-budget classification of the samples new since ``count_from[g]`` (-1: since the
      window's start): ``new`` is how many, and ``b_out[i]`` for each objective bound
      ``b_bounds[i]`` (i in b_ptr[g]:b_ptr[g + 1]) how many of them were beyond it.
    """
    n_windows = ring.shape[0]
    width = (out.shape[1] - ROW_PARTS) // 2
    bounds = np.empty(2, dtype=np.int64)
    moments = np.empty(6, dtype=np.float64)
    q_out = np.empty(max(qs.shape[0], 1), dtype=np.float64)
    for g in range(n_windows):
        cap = ring[g, 0]
        first = ring[g, 1]
        count = ring[g, 2]
        times = carray(_f64_array_at(addr_times[g]), (cap,))  # type: ignore[call-arg]
        values = carray(_f64_array_at(addr_values[g]), (cap,))
        window_bounds(times, cap, first, count, span[g, 0], span[g, 2], bounds)
        lo = bounds[0]
        hi = bounds[1]
        out[g, ROW_LO] = lo
        out[g, ROW_HI] = hi
        # error budget: classify the samples new since the last evaluation
        start = count_from[g] if count_from[g] >= 0 else lo
        if start < first:
            start = first
        new = hi - start if hi > start else 0
        out[g, ROW_NEW] = new
        for i in range(b_ptr[g], b_ptr[g + 1]):
            bound = b_bounds[i]
            upper = b_upper[i]
            bad = 0
            for idx in range(start, start + new):
                v = values[idx % cap]
                if (v > bound) if upper else (v < bound):
                    bad += 1
            b_out[i] = bad
        qs_g = qs[q_ptr[g] : q_ptr[g + 1]]
        nq = qs_g.shape[0]
        parts = 2 if flags[g] & FLAG_FRESH else 1
        fresh_lo = _bisect_right(times, cap, lo, hi, span[g, 1])
        for part in range(parts):
            a = lo if part == 0 else fresh_lo
            base = ROW_PARTS + part * width
            out[g, base + PART_N] = hi - a
            if flags[g] & FLAG_MOMENTS:
                window_moments(values, cap, a, hi, -np.inf, np.inf, moments)
                out[g, base + PART_SUM] = moments[1]
                out[g, base + PART_MEAN] = moments[2]
            else:
                out[g, base + PART_SUM] = np.nan
                out[g, base + PART_MEAN] = np.nan
            if nq > 0:
                window_quantiles(values, cap, a, hi, qs_g, scratch, q_out)
                for j in range(nq):
                    out[g, base + PART_Q + j] = q_out[j]


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel, with the argument types used in production."""
    values = np.linspace(1.0, 2.0, 4096)
    scratch = np.empty_like(values)
    out = np.empty(6, dtype=np.float64)
    window_quantiles(values, values.size, 10, 4000, np.array([0.5, 0.99]), scratch, out)
    window_moments(values, values.size, 10, 4000, 0.0, 1.5, out)
    bounds = np.empty(2, dtype=np.int64)
    window_bounds(values, values.size, 0, 4000, 1.2, 1.8, bounds)
    addr = np.array([values.ctypes.data], dtype=np.int64)
    rows = np.empty((1, ROW_PARTS + 2 * (PART_Q + 2)))
    evaluate_windows(
        addr, addr, np.array([[values.size, 0, 4000]], dtype=np.int64), np.array([[1.1, 1.5, 1.9]]),
        np.array([0, 2], dtype=np.int64), np.array([0.5, 0.99]), np.array([FLAG_MOMENTS | FLAG_FRESH], dtype=np.int64),
        np.array([-1], dtype=np.int64), np.array([0, 1], dtype=np.int64), np.array([1.5]), np.array([True]),
        scratch, rows, np.empty(1),
    )
