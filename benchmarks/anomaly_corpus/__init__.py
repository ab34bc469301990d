"""A labelled corpus of operational metric series, generated in-project, for ``bench_anomaly.py``.

Why generated: the detector must be judged on many kinds of behaviour with exact ground truth,
reproducibly and without shipping data. Why this shape: each *family* imitates one kind of real
operational metric with the nastiness real ones have (heavy tails, autocorrelation, daily and
weekly seasonality, regime switches, sawtooth garbage collection, quantisation, sparse counts,
irregular sampling, benign outliers), because a detector tuned on clean textbook noise fails on
production data. Anomalies of many kinds (``KINDS``) are injected into the generating model, not
painted on the output, so that e.g. a flattened daily pattern still carries the series' own noise.

Everything is deterministic: series ``k`` of family ``f`` is drawn from
``numpy.random.default_rng((SEED_BASE, f_index, k))``; about a third of the series then lose a few
stretches of samples (missing data: a scraper restart, a partition), drawn from a stream of their
own, ``(SEED_BASE, f_index, k, 1)``, by the same rule in both halves. The development / held-out
split is fixed here (``split_of``): by series, alternating within each family, so both halves
cover every family and kind; tuning reads only ``split="dev"``. (The corpus grew from 4 to 8
series per family, the hourly KPI family and missing data before the held-out half of the larger
corpus was first scored; series 0-3 of the first 12 families are the same as before, except for
their gaps. Two families have two variants each — small integers: a queue length or a replica
count; process memory: a collector that stops or not — chosen by pairs of series so that each
variant is in both halves; until 2026-11-28 they were chosen by the split rule itself, which put
each variant in one half only.)

On 2026-11-28 the corpus grew again, from 8 to 24 series per family (156 a half), before any of
the new series was scored: new development series drawn by the same rule scored 64.8 where the 52
development series the detector had been tuned on scored 70.1, so that half had become a tuning
set, not a measure, and both halves' 90% resampling intervals were ~10 points wide.
``corpus(split, first=8)`` gives the corpus as it was, for comparison.
"""
from __future__ import annotations

from anomaly_corpus.families import FAMILIES, healthy_long
from anomaly_corpus.model import KINDS, Anomaly, LabelledSeries

__all__ = [
    "FAMILIES",
    "KINDS",
    "SERIES_PER_FAMILY",
    "Anomaly",
    "LabelledSeries",
    "corpus",
    "healthy_long",
    "split_of",
]

SERIES_PER_FAMILY = 24
SEED_BASE = 20_240_614


def split_of(index: int) -> str:
    """The fixed split: even-numbered series of each family are development, odd ones held out."""
    return "dev" if index % 2 == 0 else "heldout"


def corpus(split: str | None = None, first: int = SERIES_PER_FAMILY) -> list[LabelledSeries]:
    """All labelled series (``split`` None), or one half ("dev" or "heldout"); ``first``: only
    the first series of each family (8: the corpus before it grew)."""
    if split not in (None, "dev", "heldout"):
        raise ValueError(f"split must be None, 'dev' or 'heldout', got {split!r}")
    if not 1 <= first <= SERIES_PER_FAMILY:
        raise ValueError(f"first must be in [1, {SERIES_PER_FAMILY}], got {first}")
    out = []
    for f_index, (family, make) in enumerate(FAMILIES.items()):
        for k in range(first):
            s = split_of(k)
            if split is not None and s != split:
                continue
            out.append(make(f"{family}_{k}", (SEED_BASE, f_index, k), s))
    return out
