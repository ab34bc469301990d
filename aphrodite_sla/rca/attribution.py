"""Graph-aware attribution: which anomalous node is the root cause (CIRCA-like).

Each node is regressed on its observed parents over the baseline; its incident score is what the
parents do not explain (the residual's robust deviation). A cause candidate must be anomalous, be
able to act as a cause (``Role.CAUSE``), and have a path of anomalous nodes to the violated SLI.
Among candidates the root-most wins: a candidate with an anomalous candidate ancestor is
discounted (the ancestor explains it) unless it made half of its move clearly before that
ancestor did (an effect does not precede its cause; the graph has no edge back from slower steps
to the batch they grow). Events (deployments, configuration changes) are scored by the changes of
their children that started with the event (a child that stayed at its baseline after the event
changed for another reason) and that no other anomalous cause explains (a child's residual when
other causes moved too). Symptoms are never candidates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aphrodite_sla.rca.frame import Frame
from aphrodite_sla.rca.graph import NODES, Agg, Role, ancestors, children_of
from aphrodite_sla.rca.scoring import Deviation, deviation, robust_scale

ANOMALY_THRESHOLD = 3.0
DESCENDANT_DISCOUNT = 0.25
EVENT_LEAD_BINS = 24  # an event up to this many bins before the onset can explain it
# An event explains a change only if the change starts with it: a metric that stayed at its
# baseline for QUIET_BINS bins after the event (EVENT_LAG_BINS allowed for the effect to show)
# changed for another reason (a harmless deployment two minutes before an error burst).
EVENT_LAG_BINS = 2
# A descendant that crossed its threshold this many bins before an anomalous ancestor was not
# caused by it (the ancestor does not dominate it).
LEAD_BINS = 2
QUIET_BINS = 4
# A cause moves before its symptom (a stall before the TTFT of the requests it held; a surge
# before the queue it builds): the incident window of every metric starts this many bins before
# the SLI's onset, and the baseline ends there. It also absorbs an onset estimated late.
GUARD_BINS = 6


@dataclass(frozen=True)
class NodeScore:
    name: str
    deviation: Deviation | None
    residual: float
    score: float  # the attribution score (after graph discounting)
    anomalous: bool
    candidate: bool
    dominated: bool = False  # an anomalous ancestor cause explains it


def _residual(name: str, frame: Frame, onset: int, end: int, dev: Deviation, anomalous: set[str]) -> float:
    node = NODES[name]
    parents = [p for p in node.parents if p in frame.values and NODES[p].agg is not Agg.EVENT and p in anomalous]
    if not parents:
        return dev.total
    y = frame.values[name]
    X = np.column_stack([frame.values[p] for p in parents])
    base = slice(0, onset)
    rows = np.isfinite(y[base]) & np.all(np.isfinite(X[base]), axis=1)
    if rows.sum() < len(parents) + 3:
        return dev.total
    A = np.column_stack([X[base][rows], np.ones(int(rows.sum()))])
    coef, *_ = np.linalg.lstsq(A, y[base][rows], rcond=None)
    res_base = y[base][rows] - A @ coef
    inc = slice(onset, end)
    Xi = X[inc]
    ok = np.isfinite(y[inc]) & np.all(np.isfinite(Xi), axis=1)
    if ok.sum() < 2:
        return dev.total
    pred = np.column_stack([Xi[ok], np.ones(int(ok.sum()))]) @ coef
    scale = robust_scale(res_base, node.floor)
    signed = node.bad * (y[inc][ok] - pred - np.median(res_base)) / scale
    return float(np.percentile(signed, 75.0))


def _reaches(start: str, target: str, anomalous: set[str], frame: Frame) -> bool:
    """A directed path from ``start`` to ``target`` through anomalous (or unobserved) nodes."""
    if start == target:
        return True
    stack, seen = [start], {start}
    while stack:
        for child in children_of(stack.pop()):
            if child == target:
                return True
            if child not in seen and (child in anomalous or child not in frame.values):
                seen.add(child)
                stack.append(child)
    return False


def _quiet_after(frame: Frame, event: str, child: str, onset: int, end: int) -> bool:
    """Did ``child`` stay at its baseline for a while after the latest ``event`` before the onset
    (then the event is not what changed it)? Events after the onset are never ruled out this way."""
    counts = np.nan_to_num(frame.values[event][max(0, onset - EVENT_LEAD_BINS):end])
    hits = np.nonzero(counts > 0)[0] + max(0, onset - EVENT_LEAD_BINS)
    before = hits[hits < onset]
    if len(before) == 0:
        return False
    e = int(before[-1])
    values = frame.values[child]
    after = values[e + 1 + EVENT_LAG_BINS:onset]
    if np.isfinite(after).sum() < QUIET_BINS:
        return False
    dev = deviation(NODES[child], values[:e], after)
    return dev is not None and dev.total < ANOMALY_THRESHOLD


def _first_crossing(values: np.ndarray, dev: Deviation | None, bad: int, onset: int, end: int) -> int | None:
    """The first incident bin where the metric made half of its move (from the baseline median to
    the incident median, and at least ANOMALY_THRESHOLD baseline scales in the bad direction): a
    busy burst before the onset that nudged it past 3 scales is not when a 50-scale change happened."""
    if dev is None:
        return None
    z = bad * (values[onset:end] - dev.baseline) / dev.scale
    level = max(ANOMALY_THRESHOLD, 0.5 * bad * (dev.incident - dev.baseline) / dev.scale)
    hit = np.nonzero(np.nan_to_num(z, nan=-np.inf) > level)[0]
    return int(onset + hit[0]) if len(hit) else None


def _leads(first: dict[str, int | None], name: str, ancestor: str) -> bool:
    """Did ``name`` cross its threshold at least LEAD_BINS before ``ancestor`` did?"""
    mine, theirs = first.get(name), first.get(ancestor)
    return mine is not None and theirs is not None and mine + LEAD_BINS <= theirs


def attribute(frame: Frame, sli: str, onset: int, end: int) -> dict[str, NodeScore]:
    """Scores every node of ``frame``; ``end`` is one past the last incident bin."""
    onset = max(3, onset - GUARD_BINS)
    devs: dict[str, Deviation | None] = {}
    for name, values in frame.values.items():
        node = NODES.get(name)
        if node is None or node.agg is Agg.EVENT:  # a series outside the graph is only correlated
            continue
        devs[name] = deviation(node, values[:onset], values[onset:end])
    anomalous = {n for n, d in devs.items() if d is not None and d.total >= ANOMALY_THRESHOLD}
    events = {n for n, v in frame.values.items() if n in NODES and NODES[n].agg is Agg.EVENT
              and np.nansum(v[max(0, onset - EVENT_LEAD_BINS):end]) > 0}
    anomalous |= events
    causes = {n for n in anomalous if NODES[n].role is Role.CAUSE}
    out: dict[str, NodeScore] = {}
    for name, dev in devs.items():
        resid = _residual(name, frame, onset, end, dev, anomalous) if dev is not None else 0.0
        out[name] = NodeScore(name, dev, resid, 0.0, name in anomalous, False)
    # causes that their own parents do not explain (a residual still anomalous)
    unexplained = {n for n in causes if n in out and out[n].residual >= ANOMALY_THRESHOLD}
    # events: the changes of their children that started with the event, as far as no other
    # unexplained cause explains them
    for ev in events:
        best = 0.0
        for child in children_of(ev):
            cs = out.get(child)
            if cs is None or cs.deviation is None:
                continue
            if _quiet_after(frame, ev, child, onset, end):
                continue
            others = (ancestors(child) & unexplained) - {ev}
            if not others:
                best = max(best, abs(cs.deviation.score))
            elif cs.residual >= ANOMALY_THRESHOLD:
                # other causes moved too, but they do not explain this child (a deployment made every
                # step slower; the batch then outgrew the KV cache and preemptions followed)
                best = max(best, cs.residual)
        out[ev] = NodeScore(ev, None, best, best, best >= ANOMALY_THRESHOLD, False)
    # a cause whose anomalous parents explain it (its residual is normal) is not a root: the change
    # came from above (e.g. a KV cache filled by a batch that grew because every step got slower)
    candidates = {n for n in causes if out[n].anomalous and out[n].residual >= ANOMALY_THRESHOLD
                  and _reaches(n, sli, anomalous, frame)}
    own: dict[str, float] = {}
    for name in candidates:
        ns = out[name]
        own[name] = ns.residual if NODES[name].agg is Agg.EVENT else max(
            0.0, min(ns.deviation.total if ns.deviation else 0.0, ns.residual))
    first = {name: _first_crossing(frame.values[name], out[name].deviation, NODES[name].bad, onset, end)
             for name in candidates if NODES[name].agg is not Agg.EVENT}
    final: dict[str, NodeScore] = {}
    for name, ns in out.items():
        if name in candidates:
            base = own[name]
            # the root-most wins: a descendant ranks below every anomalous ancestor cause, unless it
            # moved clearly before that ancestor (an effect does not precede its cause: slower steps
            # that grew the batch until preemptions began are not explained by those preemptions)
            above = {a for a in ancestors(name) & candidates if not _leads(first, name, a)}
            if above:  # the root-most wins: a descendant ranks below every anomalous ancestor cause
                base = min(base * DESCENDANT_DISCOUNT, DESCENDANT_DISCOUNT * min(own[a] for a in above))
            final[name] = NodeScore(name, ns.deviation, ns.residual, base, True, True, dominated=bool(above))
        else:
            weak = ns.deviation.total if (ns.deviation is not None and NODES[name].role is Role.CAUSE) else 0.0
            final[name] = NodeScore(name, ns.deviation, ns.residual, min(weak, ANOMALY_THRESHOLD) * 0.01, ns.anomalous, False)
    return final


def robust_ranking(frame: Frame, onset: int, end: int) -> list[str]:
    """Plain robust scoring without the graph (BARO): cause nodes by their signed deviation (a
    baseline in the benchmark; events cannot be scored this way)."""
    onset = max(3, onset - GUARD_BINS)
    scored = []
    for name, values in frame.values.items():
        node = NODES.get(name)
        if node is None or node.agg is Agg.EVENT or node.role is not Role.CAUSE:
            continue
        dev = deviation(node, values[:onset], values[onset:end])
        scored.append((dev.total if dev is not None else -np.inf, name))
    return [name for _, name in sorted(scored, reverse=True)]
