"""numba kernels over a ring buffer's logical range: exact quantiles by selection, and moments.

Why numba: an exact p99 over 60k raw samples must cost about as much as reading them once, not a
sort (numpy's ``percentile`` partitions a copy per call and is 5-8x slower here).

The kernels read the ring in place (two contiguous segments when the range wraps), release the GIL
(``nogil=True``) so the engine's thread keeps running, and are compiled lazily and cached on disk
where a writable directory exists (``CACHE``; in memory otherwise).
Nothing here runs at import: the evaluator thread calls ``warm_up()`` before its first evaluation.
Importing this module imports numba, so the rest of the package imports it lazily.

Quantiles use numpy's default ("linear", Hyndman–Fan type 7) definition, with numpy's exact
virtual-index and interpolation formulas, so results equal ``np.percentile`` bit for bit in the
cases we test.
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
from typing import Any

import numpy as np
from numba import carray, njit, types
from numba.extending import intrinsic

logger = logging.getLogger(__name__)


def _cache_probe(x):  # pragma: no cover - only decorated, never called
    return x


def _cache_setting() -> bool:
    """Whether numba can cache the compiled kernels, and where. In order: the directory named by
    ``APHRODITE_SLA_NUMBA_CACHE_DIR`` (or numba's own ``NUMBA_CACHE_DIR``); beside this module or
    in the user's cache directory (numba's defaults); a directory in the system's temp dir. With
    none writable (a read-only container with no writable home), the kernels compile in memory
    at every start: slower to start, never blind. Why a probe: numba raises "cannot cache function
    ... no locator available" when the decorator runs, which would stop every evaluation."""
    import numba.core.config

    numba_config: Any = numba.core.config  # CACHE_DIR is set at run time (untyped module)
    configured = os.environ.get("APHRODITE_SLA_NUMBA_CACHE_DIR", "")
    if configured:
        numba_config.CACHE_DIR = configured
    if _cache_works():
        return True
    if not configured and not numba_config.CACHE_DIR:
        numba_config.CACHE_DIR = os.path.join(tempfile.gettempdir(), f"aphrodite-sla-numba-{os.getuid()}")
        if _cache_works():
            logger.info("aphrodite-sla: numba caches kernels in %s (the package directory is read-only)", numba_config.CACHE_DIR)
            return True
        numba_config.CACHE_DIR = ""
    logger.warning(
        "aphrodite-sla: no writable directory for numba's cache (set APHRODITE_SLA_NUMBA_CACHE_DIR); "
        "kernels compile in memory at each start"
    )
    return False


def _cache_works() -> bool:
    try:
        njit(cache=True)(_cache_probe)
        return True
    except Exception:
        return False


CACHE = _cache_setting()

# Below this many samples the whole window is copied and selected directly.
_DIRECT_SELECT_MAX = 2048
# Sample size used to choose the Floyd–Rivest bracketing pivots.
_PIVOT_SAMPLE = 2048
# Bracket half-width in binomial standard deviations: a miss only costs a fallback, never accuracy.
_BRACKET_SIGMAS = 3.5
# Let LLVM reorder sums so the moments loop vectorises; no "no-NaN/no-inf" assumptions, since the
# bounds passed in may be infinite.
_REASSOCIATE = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=CACHE, nogil=True)
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


@njit(cache=CACHE, nogil=True)
def _copy_range(values, cap, lo, hi, out):  # pragma: no cover - compiled
    m = 0
    for idx in range(lo, hi):
        out[m] = values[idx % cap]
        m += 1
    return m


@njit(cache=CACHE, nogil=True)
def _virtual_index(n, q):  # pragma: no cover - compiled
    # numpy's virtual index for method="linear": (n - 1) * q, same operation order.
    return (n - 1.0) * q


@njit(cache=CACHE, nogil=True)
def _lerp(a, b, t):  # pragma: no cover - compiled
    # numpy's _lerp: symmetric form keeps monotonicity and exact endpoints.
    d = b - a
    if t >= 0.5:
        return b - d * (1.0 - t)
    return a + d * t


@njit(cache=CACHE, nogil=True)
def _bisect_right(times, cap, lo, hi, t):  # pragma: no cover - compiled
    while lo < hi:
        mid = (lo + hi) >> 1
        if times[mid % cap] <= t:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=CACHE, nogil=True)
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


@njit(cache=CACHE, nogil=True)
def _ranks(n, qs):  # pragma: no cover - compiled
    """numpy's linear method: the lower order statistic of each quantile and its interpolation weight."""
    nq = qs.shape[0]
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
    return r_lo, gam


@njit(cache=CACHE, nogil=True)
def _brackets(values, cap, lo, n, r_lo):  # pragma: no cover - compiled
    """Value brackets around the needed ranks, from a strided sample of the window: for each rank
    the sample ranks +- ``_BRACKET_SIGMAS`` binomial sd (Floyd–Rivest); brackets that (nearly)
    overlap are merged. Returns (count, low pivots, high pivots, share of values below each)."""
    nq = r_lo.shape[0]
    s = _PIVOT_SAMPLE
    sample = np.empty(s, dtype=np.float64)
    step = n / s
    for j in range(s):
        sample[j] = values[(lo + int(j * step)) % cap]
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
    share = np.empty(nseg, dtype=np.float64)
    left = 0
    for k in range(nseg):
        share[k] = max(seg_a[k], 0) / s
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
            share[w] = share[k]
    return w + 1, low_pv, high_pv, share


@njit(cache=CACHE, nogil=True)
def _collect_one_bracket(values, cap, lo, n, low, high, share_below, out_v, bounded):  # pragma: no cover - compiled
    """One pass over ring ``values`` logical [lo, lo + n): count the values below ``low`` and copy
    those in [low, high] to ``out_v``; ``bounded``: ``out_v`` may be shorter than the window, and
    copying stops when it is full. Returns (below, copied, overflowed)."""
    below = 0
    m = 0
    room = out_v.shape[0]
    first_len = min(n, cap - lo % cap)
    predictable = share_below <= _PREDICTABLE_SHARE or share_below >= 1.0 - _PREDICTABLE_SHARE
    for seg in range(2):
        # contiguous views indexed from 0 let LLVM drop negative-index checks
        part = values[lo % cap : lo % cap + first_len] if seg == 0 else values[0 : n - first_len]
        if bounded:
            for idx in range(part.size):
                v = part[idx]
                if v < low:
                    below += 1
                elif v <= high:
                    if m >= room:
                        return below, m, True
                    out_v[m] = v
                    m += 1
        elif predictable:
            for idx in range(part.size):
                v = part[idx]
                if v < low:
                    below += 1
                elif v <= high:
                    out_v[m] = v
                    m += 1
        else:
            for idx in range(part.size):
                v = part[idx]
                below += v < low
                out_v[m] = v
                m += (v >= low) & (v <= high)
    return below, m, False


@njit(cache=CACHE, nogil=True)
def _locate(r_lo, n, below, start, length, nseg, k_lo, region_start, region_end):  # pragma: no cover - compiled
    """Map each needed rank (with its upper neighbour) into the bracket region holding it: bracket
    k holds global ranks [below[k], below[k] + length[k]) at region [start[k], start[k] + length[k]).
    False if some rank lies outside every bracket."""
    for j in range(r_lo.shape[0]):
        r = r_lo[j]
        r_next = min(r + 1, n - 1)
        found = -1
        for k in range(nseg):
            if below[k] <= r and r_next < below[k] + length[k]:
                found = k
                break
        if found < 0:
            return False
        k_lo[j] = start[found] + r - below[found]
        region_start[j] = start[found]
        region_end[j] = start[found] + length[found]
    return True


@njit(cache=CACHE, nogil=True)
def _select_ranks(scratch, k_lo, region_start, region_end, r_lo, gam, n, out):  # pragma: no cover - compiled
    """Select the needed ranks in ascending order; each selection leaves its region partitioned, so
    the next rank in the same region only searches to the right of the previous one."""
    left = 0
    for j in range(r_lo.shape[0]):
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


@njit(cache=CACHE, nogil=True)
def _select_all(values, cap, lo, hi, r_lo, gam, scratch, out):  # pragma: no cover - compiled
    """The fallback: copy the whole window and select (slower, never wrong)."""
    n = hi - lo
    nq = r_lo.shape[0]
    m = _copy_range(values, cap, lo, hi, scratch)
    k_lo = r_lo.copy()
    region_start = np.zeros(nq, dtype=np.int64)
    region_end = np.full(nq, m, dtype=np.int64)
    _select_ranks(scratch, k_lo, region_start, region_end, r_lo, gam, n, out)


@njit(cache=CACHE, nogil=True)
def window_quantiles(values, cap, lo, hi, qs, scratch, out):  # pragma: no cover - compiled
    """Exact quantiles ``qs`` (each in [0, 1], ascending) of ring ``values`` over logical [lo, hi).

    Floyd–Rivest with one bracket per needed rank: pivots chosen from a strided sample bracket
    each rank with high probability (brackets that overlap are merged); one pass per bracket
    counts what lies below it and collects what lies inside into ``scratch`` (len >= hi - lo),
    and selection runs on those few percent. p50, p95 and p99 together cost about two passes,
    not a selection over half the window. If a rank falls outside every bracket the whole window
    is copied and selected: slower, never wrong. Returns how many samples were in the window;
    writes NaN for an empty window.
    """
    n = hi - lo
    nq = qs.shape[0]
    if n <= 0:
        for j in range(nq):
            out[j] = np.nan
        return 0
    r_lo, gam = _ranks(n, qs)
    if n <= _DIRECT_SELECT_MAX:
        _select_all(values, cap, lo, hi, r_lo, gam, scratch, out)
        return n
    nseg, low_pv, high_pv, share = _brackets(values, cap, lo, n, r_lo)
    below = np.empty(nseg, dtype=np.int64)
    start = np.zeros(nseg, dtype=np.int64)
    length = np.zeros(nseg, dtype=np.int64)
    offset = 0
    for k in range(nseg):
        start[k] = offset
        below[k], length[k], _ = _collect_one_bracket(values, cap, lo, n, low_pv[k], high_pv[k], share[k], scratch[offset:], False)
        offset += length[k]
    k_lo = np.empty(nq, dtype=np.int64)
    region_start = np.empty(nq, dtype=np.int64)
    region_end = np.empty(nq, dtype=np.int64)
    if _locate(r_lo, n, below, start, length, nseg, k_lo, region_start, region_end):
        _select_ranks(scratch, k_lo, region_start, region_end, r_lo, gam, n, out)
    else:
        _select_all(values, cap, lo, hi, r_lo, gam, scratch, out)
    return n


# -- incremental windows -----------------------------------------------------------------------------
# Between two evaluations a window gains the samples recorded since and loses those that aged out:
# a few percent of it. An incremental window keeps, per bracket, the count of values below its low
# pivot and the values inside it *sorted*, and updates both from those two ranges only (the aged-out
# and arrived members of a bracket are sorted and merged in, in one pass); a quantile is then read
# off its bracket by index, with no selection at all. Its sum is kept the same way
# (Neumaier-compensated). It is rebuilt from a full pass when a needed rank leaves its bracket, when
# a bracket outgrows its storage, when the aged-out samples were already overwritten, when more
# than half the window changed, and every ``INC_MAX_AGE`` evaluations.
INC_KMAX = 4
INC_MAX_AGE = 720
S_VALID, S_LO, S_HI, S_NSEG, S_AGE = 0, 1, 2, 3, 4
S_BELOW = 5
S_LEN = S_BELOW + INC_KMAX
INC_INTS = S_LEN + INC_KMAX
F_SUM, F_COMP = 0, 1
F_LOW = 2
F_HIGH = F_LOW + INC_KMAX
INC_FLOATS = F_HIGH + INC_KMAX


@njit(cache=CACHE, nogil=True)
def _neumaier(total, comp, x):  # pragma: no cover - compiled
    t = total + x
    if abs(total) >= abs(x):
        comp += (total - t) + x
    else:
        comp += (x - t) + total
    return t, comp


@njit(cache=CACHE, nogil=True)
def _inc_quantiles(st, set_v, room, r_lo, gam, n, q_out):  # pragma: no cover - compiled
    """Quantiles read off the sorted bracket sets (bracket k's set is set_v[k * room:]). False if a
    needed rank (or its upper neighbour) lies outside every bracket."""
    nseg = st[S_NSEG]
    for j in range(r_lo.shape[0]):
        r = r_lo[j]
        r_next = min(r + 1, n - 1)
        found = -1
        for k in range(nseg):
            below = st[S_BELOW + k]
            if below <= r and r_next < below + st[S_LEN + k]:
                found = k
                break
        if found < 0:
            return False
        at = found * room + r - st[S_BELOW + found]
        lower = set_v[at]
        if r + 1 <= n - 1 and gam[j] > 0.0:
            q_out[j] = _lerp(lower, set_v[at + 1], gam[j])
        else:
            q_out[j] = lower
    return True


@njit(cache=CACHE, nogil=True)
def _inc_rebuild(values, cap, lo, hi, r_lo, gam, moments, st, fs, set_v, scratch, q_out):  # pragma: no cover - compiled
    """Full pass: new brackets, their sorted sets and below-counts, the sum; then the quantiles."""
    n = hi - lo
    nq = r_lo.shape[0]
    st[S_VALID] = 0
    if moments:
        total = 0.0
        comp = 0.0
        for idx in range(lo, hi):
            total, comp = _neumaier(total, comp, values[idx % cap])
        fs[F_SUM] = total
        fs[F_COMP] = comp
    valid = True
    if nq > 0:
        nseg, low_pv, high_pv, share = _brackets(values, cap, lo, n, r_lo)
        room = set_v.shape[0] // INC_KMAX
        valid = nseg <= INC_KMAX
        for k in range(nseg if valid else 0):
            region = set_v[k * room : (k + 1) * room]
            below, m, overflow = _collect_one_bracket(values, cap, lo, n, low_pv[k], high_pv[k], share[k], region, True)
            if overflow:
                valid = False
                break
            region[:m].sort()
            st[S_BELOW + k] = below
            st[S_LEN + k] = m
            fs[F_LOW + k] = low_pv[k]
            fs[F_HIGH + k] = high_pv[k]
        st[S_NSEG] = nseg
        if valid and not _inc_quantiles(st, set_v, room, r_lo, gam, n, q_out):
            valid = False  # a rank outside its bracket: rebuild next time, select directly now
        if not valid:
            _select_all(values, cap, lo, hi, r_lo, gam, scratch, q_out)
    if valid:
        st[S_VALID] = 1
        st[S_LO] = lo
        st[S_HI] = hi
        st[S_AGE] = 0


@njit(cache=CACHE, nogil=True)
def _bracket_members(values, cap, a, b, low, high):  # pragma: no cover - compiled
    """The values of logical [a, b) inside [low, high], sorted, and how many were below ``low``."""
    members = np.empty(b - a, dtype=np.float64)
    m = 0
    below = 0
    for idx in range(a, b):
        v = values[idx % cap]
        if v < low:
            below += 1
        elif v <= high:
            members[m] = v
            m += 1
    out = members[:m].copy()
    out.sort()
    return out, below


@njit(cache=CACHE, nogil=True)
def _inc_update(values, cap, first, lo, hi, r_lo, gam, moments, st, fs, set_v, scratch, q_out):  # pragma: no cover - compiled
    """Update from the samples that aged out ([old lo, lo)) and arrived ([old hi, hi)); False when
    the window must be rebuilt instead (the state is then stale: the caller rebuilds it)."""
    old_lo = st[S_LO]
    old_hi = st[S_HI]
    n = hi - lo
    if (st[S_VALID] == 0 or lo < old_lo or hi < old_hi or old_lo < first or st[S_AGE] >= INC_MAX_AGE
            or (lo - old_lo) + (hi - old_hi) > n // 2 or n <= _DIRECT_SELECT_MAX):
        return False
    st[S_VALID] = 0  # until the update completes
    if moments:
        total = fs[F_SUM]
        comp = fs[F_COMP]
        for idx in range(old_lo, lo):
            total, comp = _neumaier(total, comp, -values[idx % cap])
        for idx in range(old_hi, hi):
            total, comp = _neumaier(total, comp, values[idx % cap])
        fs[F_SUM] = total
        fs[F_COMP] = comp
    nseg = st[S_NSEG] if r_lo.shape[0] > 0 else 0
    room = set_v.shape[0] // INC_KMAX
    for k in range(nseg):
        low = fs[F_LOW + k]
        high = fs[F_HIGH + k]
        gone, gone_below = _bracket_members(values, cap, old_lo, lo, low, high)
        came, came_below = _bracket_members(values, cap, old_hi, hi, low, high)
        length = st[S_LEN + k]
        new_length = length - gone.shape[0] + came.shape[0]
        if new_length > room:
            return False  # the bracket outgrew its storage
        # one merge pass: the set minus one occurrence of each aged-out value, plus the arrivals
        region = set_v[k * room : (k + 1) * room]
        i = 0
        g = 0
        c = 0
        m = 0
        while i < length:
            v = region[i]
            if g < gone.shape[0] and gone[g] == v:
                g += 1
                i += 1
                continue
            if c < came.shape[0] and came[c] < v:
                scratch[m] = came[c]
                c += 1
            else:
                scratch[m] = v
                i += 1
            m += 1
        if g != gone.shape[0]:
            return False  # an aged-out member was not in the set: the state cannot be trusted
        while c < came.shape[0]:
            scratch[m] = came[c]
            c += 1
            m += 1
        region[:m] = scratch[:m]
        st[S_LEN + k] = m
        st[S_BELOW + k] += came_below - gone_below
    if nseg and not _inc_quantiles(st, set_v, room, r_lo, gam, n, q_out):
        return False
    st[S_VALID] = 1
    st[S_LO] = lo
    st[S_HI] = hi
    st[S_AGE] += 1
    return True


@njit(cache=CACHE, nogil=True, fastmath=_REASSOCIATE)
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


# Columns of one row of ``evaluate_windows``' output: the window's logical range, the number of
# newly classified samples and the lowest logical index read, then per part (window, then its
# newest interval): n, sum, mean and the quantiles.
ROW_LO, ROW_HI, ROW_NEW, ROW_READ_FROM = 0, 1, 2, 3
ROW_PARTS = 4
PART_N, PART_SUM, PART_MEAN, PART_Q = 0, 1, 2, 3
FLAG_MOMENTS = 1
FLAG_FRESH = 2


@njit(cache=CACHE, nogil=True)
def evaluate_windows(addr_times, addr_values, ring, span, q_ptr, qs, flags, count_from, b_ptr, b_bounds, b_upper,
                     inc_i, inc_f, addr_set_v, set_room, scratch, out, b_out):  # pragma: no cover - compiled
    """Everything one evaluation needs from every window, in one call (per-call overhead of many
    small kernels cost more than the work). Window g reads the ring whose times and values arrays
    live at ``addr_times[g]`` / ``addr_values[g]`` (the caller keeps those arrays alive), with
    ``ring[g] = (capacity, first, count)`` and ``span[g] = (t_start, t_fresh, t_end)``:

    * row g of ``out``: [lo, hi, new, read_from] then, for (t_start, t_end] and, when
      ``flags & FLAG_FRESH``, for its newest part (t_fresh, t_end]: [n, sum, mean, quantiles
      qs[q_ptr[g]:q_ptr[g + 1]]...] (sum and mean only with ``flags & FLAG_MOMENTS``);
    * error-budget classification of the samples new since ``count_from[g]`` (-1: since the
      window's start): ``new`` is how many, and ``b_out[i]`` for each objective bound
      ``b_bounds[i]`` (i in b_ptr[g]:b_ptr[g + 1]) how many of them were beyond it;
    * with ``set_room[g] >= 0`` the window is incremental (see above): its state is ``inc_i[g]`` /
      ``inc_f[g]`` and its sorted bracket sets the array (``set_room[g]`` long, INC_KMAX equal
      regions) at ``addr_set_v[g]``; -1: computed in full every time.
      ``read_from`` then tells the caller from which logical index the ring must have been intact.
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
        read_from = lo
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
        need_moments = (flags[g] & FLAG_MOMENTS) != 0
        base = ROW_PARTS
        n = hi - lo
        out[g, base + PART_N] = n
        out[g, base + PART_SUM] = np.nan
        out[g, base + PART_MEAN] = np.nan
        if set_room[g] >= 0 and n > _DIRECT_SELECT_MAX:
            st = inc_i[g]
            fs = inc_f[g]
            set_v = carray(_f64_array_at(addr_set_v[g]), (set_room[g],))
            r_lo, gam = _ranks(n, qs_g)
            old_lo = st[S_LO]
            if _inc_update(values, cap, first, lo, hi, r_lo, gam, need_moments, st, fs, set_v, scratch, q_out):
                read_from = old_lo
            else:
                _inc_rebuild(values, cap, lo, hi, r_lo, gam, need_moments, st, fs, set_v, scratch, q_out)
            if need_moments:
                total = fs[F_SUM] + fs[F_COMP]
                out[g, base + PART_SUM] = total
                out[g, base + PART_MEAN] = total / n
            for j in range(nq):
                out[g, base + PART_Q + j] = q_out[j]
        else:
            if set_room[g] >= 0:
                inc_i[g, S_VALID] = 0
            if need_moments and n > 0:
                window_moments(values, cap, lo, hi, -np.inf, np.inf, moments)
                out[g, base + PART_SUM] = moments[1]
                out[g, base + PART_MEAN] = moments[2]
            if nq > 0:
                window_quantiles(values, cap, lo, hi, qs_g, scratch, q_out)
                for j in range(nq):
                    out[g, base + PART_Q + j] = q_out[j]
        out[g, ROW_READ_FROM] = read_from
        if flags[g] & FLAG_FRESH:
            a = _bisect_right(times, cap, lo, hi, span[g, 1])
            base = ROW_PARTS + width
            out[g, base + PART_N] = hi - a
            if need_moments:
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
    set_v = np.empty(4096)
    inc_i = np.zeros((1, INC_INTS), dtype=np.int64)
    inc_f = np.zeros((1, INC_FLOATS))
    for t_end in (1.9, 1.95):  # a rebuild, then an incremental update
        evaluate_windows(
            addr, addr, np.array([[values.size, 0, 4000]], dtype=np.int64), np.array([[t_end - 0.8, t_end - 0.4, t_end]]),
            np.array([0, 2], dtype=np.int64), np.array([0.5, 0.99]), np.array([FLAG_MOMENTS | FLAG_FRESH], dtype=np.int64),
            np.array([-1], dtype=np.int64), np.array([0, 1], dtype=np.int64), np.array([1.5]), np.array([True]),
            inc_i, inc_f, np.array([set_v.ctypes.data], dtype=np.int64), np.array([set_v.size], dtype=np.int64),
            scratch, rows, np.empty(1),
        )
