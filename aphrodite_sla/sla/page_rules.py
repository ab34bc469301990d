"""The fast page rules' settings (data only; ``sla.pages`` applies them).

What a page is, and what it is not:

* a **page** wakes a person now: the engine stopped (``stall``), the SLA's statistic is far beyond
  its bound right now (``severe_breach``), or the error budget burns so fast that it is gone in
  days (``burn_rate_page``). Severity CRITICAL.
* a **ticket** asks for a look within the working day: the budget burns steadily faster than it
  can last (``burn_rate_ticket``). Severity MAJOR.
* a **violation** (the seed's sustained rule, 80% of a 5-minute window beyond the bound) is the
  SLA being broken; its severity follows how far beyond (minor/major/critical).
* a **warning** (an anomaly score, a regression) says something changed; it never pages and never
  starts recovery.

Every default below comes with its reason; all are settable in the ``[page_rules]`` table of the
configuration file. Why these rules beside the sustained one: the sustained rule needs four
minutes of a five-minute window beyond the bound, so a severe fault pages after four minutes at
the earliest; these rules page within one or two evaluations, and their minimum counts keep one
slow request at 3 a.m. from paging anyone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aphrodite_sla.sla.rules_table import check_scalar_fields, table_from_mapping


@dataclass(frozen=True)
class PageRulesConfig:
    """Settings of the fast page rules. Invalid values raise ``ValueError`` naming the field."""

    # All fast rules on or off (the stall detector's page is the stall detector's: ``stall_after_s``).
    enabled: bool = True

    # -- severe breach: the SLA breached (its own window), and far beyond its bound over a short one
    severe_breach: bool = True
    # 2x the bound: calibrated bounds sit ~10% beyond the worst healthy 5-minute window, so healthy
    # traffic does not reach twice that even over a short window; latency x3 or 5% errors do.
    severe_factor: float = 2.0
    # 60 s: long enough that a p95 is backed by many requests, short enough that it crosses within
    # seconds of a severe fault (a p95 needs 5% of the window beyond: 3 s of a 60 s window).
    severe_window_s: float = 60.0
    # The window must hold at least this many samples (and the SLA's own ``min_samples``).
    severe_min_samples: int = 20
    # ...and for a quantile q at least this many samples must stand behind the breach: the
    # window needs min_beyond / (1 - q) samples (p95: 100, p99: 500), so the quantile is not one
    # outlier.
    severe_min_beyond: int = 5
    # Relative line for quantile SLAs (latency): the short window's statistic at least this many
    # times its recent healthy level (``sla.recent_level``) pages too, when the SLA is breached
    # over its own window. "Latency tripled" is relative: at night a p99 sits far below the bound
    # the busy hour set, and latency x3 reached ~1.7x the bound, short of the 2x line, and paged
    # through the burn rate after 135 s. 2.5: x3 crosses it with room for noise; a healthy burst
    # that lifts a minute's p95 2.5x must also breach the SLA's 5-minute window, which calibrated
    # bounds put at once in 30 days. 0 turns it off.
    severe_relative_factor: float = 2.5
    # the level: an exponential average over about an hour of healthy evaluations ...
    severe_relative_level_s: float = 3600.0
    # ... used once it has watched 10 minutes of them (after a start, only the absolute line pages)
    severe_relative_min_history_s: float = 600.0
    # Low traffic (fewer samples than that, but at least ``severe_min_samples``): the window's
    # median stands in for its quantile. A median beyond the line means half the samples are; were
    # the SLA's p95 within the line, a sample would be beyond it less than 5% of the time, and 10 of
    # 20 such samples have P ~ 1e-8 -- far stronger evidence than the high-traffic rule's. At
    # 0.4 requests/s a 60 s window holds ~24 requests, never the 100 a p95 needs, and latency x3
    # at night paged only through the burn rate, after 135 s.
    severe_low_traffic_median: bool = True
    # An SLA with an error budget (a mean of 0/100 outcomes, e.g. error_rate_percent) pages on a
    # one-sided binomial test instead (``sla.error_evidence``): over the short window or the SLA's
    # own window, the bad outcomes are at least ``severe_min_bad``, the window's rate is
    # ``severe_factor`` x the bound, and so many bad outcomes at the healthy rate (the last
    # ``error_baseline_window_s`` before the window, shrunk toward the objective's rate) have a
    # probability below ``severe_error_p_value`` (split between the two windows).
    # 1e-4 (5e-5 a window): were healthy errors exactly at the estimated baseline rate, a day's
    # ~1,440 independent minutes and ~288 five-minute windows would page at most ~0.09 times a
    # day; in practice far less (the test is discrete and conservative, the prior errs high, the
    # floor below): bench_false_pages replays 24 h at 0.05-0.45% errors and pages 0 times.
    severe_error_p_value: float = 1e-4
    # 3: errors come in small clusters (one client retrying a failing request), which a binomial
    # does not model; one or two are never a page whatever the test says.
    severe_min_bad: int = 3
    # an hour: long enough to hold thousands of requests at moderate traffic, short enough to
    # follow the service's own error rate through the day.
    error_baseline_window_s: float = 3600.0

    # -- multi-window burn rates (Google SRE workbook ch. 5, as the fleet Prometheus rules) -------
    burn_rate: bool = True
    # page: 2% of a 30-day budget spent in 1 h (14.4x), confirmed by the last 5 minutes
    page_burn_factor: float = 14.4
    page_long_window_s: float = 3600.0
    page_short_window_s: float = 300.0
    # ticket: 5% of the budget in 6 h (6x), confirmed by the last 30 minutes
    ticket: bool = True
    ticket_burn_factor: float = 6.0
    ticket_long_window_s: float = 21600.0
    ticket_short_window_s: float = 1800.0
    # Low traffic: the long window must hold one sample a minute on average (the fleet rules'
    # guard) and the short window this many bad samples, so a few bad requests among a handful do
    # not page; at zero traffic the rate is undefined and nothing fires.
    burn_min_events_per_minute: float = 1.0
    burn_min_bad: int = 5

    # -- episodes ----------------------------------------------------------------------------------
    # A page resolves once its condition has been clear this long (one page per episode, not one
    # per flap). Severe breach is clear when the short window's statistic is back inside the SLA's
    # recovery bound; a burn rate when the short window burns below the factor.
    resolve_after_s: float = 60.0
    # SLAs that never page (by name): e.g. a gauge whose breach is a ticket at most.
    excluded_slas: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_scalar_fields(self, "page_rules")
        if not isinstance(self.excluded_slas, (tuple, list)) or not all(isinstance(s, str) for s in self.excluded_slas):
            raise ValueError(f"page_rules.excluded_slas: must be a list of SLA names, got {self.excluded_slas!r}")
        object.__setattr__(self, "excluded_slas", tuple(self.excluded_slas))
        for name in ("severe_factor", "page_burn_factor", "ticket_burn_factor"):
            if getattr(self, name) <= 1.0:
                raise ValueError(f"page_rules.{name}: must be > 1 (a page beyond the ordinary bound), got {getattr(self, name)!r}")
        if self.severe_relative_factor != 0.0 and self.severe_relative_factor <= 1.0:
            raise ValueError(f"page_rules.severe_relative_factor: must be > 1, or 0 (off), got {self.severe_relative_factor!r}")
        if not 0.0 < self.severe_error_p_value <= 0.5:
            raise ValueError(f"page_rules.severe_error_p_value: must be in (0, 0.5], got {self.severe_error_p_value!r}")
        for name in ("severe_window_s", "severe_relative_level_s", "error_baseline_window_s", "page_long_window_s", "page_short_window_s",
                     "ticket_long_window_s", "ticket_short_window_s"):
            if not 1.0 <= getattr(self, name) <= 7 * 86400.0:
                raise ValueError(f"page_rules.{name}: must be in [1, 604800] seconds, got {getattr(self, name)!r}")
        if not 0.0 <= self.severe_relative_min_history_s <= 7 * 86400.0:
            raise ValueError(f"page_rules.severe_relative_min_history_s: must be in [0, 604800] seconds, got {self.severe_relative_min_history_s!r}")
        for long, short in (("page_long_window_s", "page_short_window_s"), ("ticket_long_window_s", "ticket_short_window_s")):
            if getattr(self, short) > getattr(self, long):
                raise ValueError(f"page_rules.{short}: must not be longer than {long} ({getattr(self, short):g} > {getattr(self, long):g})")

    @classmethod
    def from_mapping(cls, raw: Any) -> PageRulesConfig:
        """From the configuration file's ``[page_rules]`` table; an unknown key is an error."""
        return table_from_mapping(cls, raw, "page_rules")

    @property
    def longest_window_s(self) -> float:
        """The longest window the error budgets must keep history for (0: none): the burn
        windows and the error test's baseline."""
        if not self.enabled:
            return 0.0
        longest = self.error_baseline_window_s if self.severe_breach else 0.0
        if self.burn_rate:
            longest = max(longest, self.ticket_long_window_s if self.ticket else self.page_long_window_s)
        return longest


__all__ = ["PageRulesConfig"]
