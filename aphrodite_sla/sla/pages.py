"""Fast page rules, evaluated by the evaluator right after the SLAs (``PageRulesConfig`` holds
the settings and says what a page is).

Per SLA, beside the seed's sustained rule (unchanged):

* ``severe_breach``: over a short window (60 s) the SLA's statistic is ``severe_factor`` x beyond
  its bound, with enough samples behind it (at low traffic: its median is), or a quantile SLA's
  statistic is ``severe_relative_factor`` x its recent healthy level (``sla.recent_level``: latency
  tripled at night, still short of 2x a bound the busy hour set) and beyond its bound; and the SLA
  is breached over its own window too. The
  latter because a minute of queueing in a traffic burst can double a short-window p95 of healthy
  traffic (the false-page benchmark saw it), while a fault that doubles it breaches the SLA's own
  window within seconds (a p95 once 5% of the window is beyond: 15 s of 5 minutes). Not for a mean
  with an error budget (an error rate): its 5-minute mean crosses only after bound/rate of the
  window (30 s for 5% errors against 0.5%): an error-rate SLA pages on a one-sided binomial test
  of its bad outcomes over the short window and over its own window against the service's healthy
  rate before them (``sla.error_evidence``), so three errors in a minute page where the service
  normally has none, and more are needed where it normally has some. The short window is one more entry of the evaluator's plan (one selection pass
  per series, shared with anything else reading it).
* ``burn_rate_page`` / ``burn_rate_ticket`` (SLAs with an objective): the error budget burns at
  14.4x over 1 h and 5 min (page) or 6x over 6 h and 30 min (ticket), read from the error-budget
  tracker's history of classified samples (two bisections each).
* stalls page through the stall detector (``StallDetected`` is a ``PageRaised``).

Each (SLA, rule) has a ``ViolationLifecycle`` of its own (one page per episode, resolved after
``resolve_after_s`` clear) that raises ``PageRaised``/``PageResolved`` on the monitor's stream: a
page is a violation, so recovery and incidents react to it as to any other. Nothing here runs on
the engine's event loop; the cost per evaluation is O(1) per SLA beyond the short window.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aphrodite_sla.events import PAGE_ALERT, MonitorEvent, PageRaised, PageResolved, fingerprint
from aphrodite_sla.sla.error_evidence import ErrorEvidence, window_evidence
from aphrodite_sla.sla.lifecycle import EvaluationPoint, ViolationLifecycle
from aphrodite_sla.sla.page_rules import PageRulesConfig
from aphrodite_sla.sla.recent_level import RecentLevel
from aphrodite_sla.sla.threshold import Direction, SLAThreshold, SLAViolation, Statistic, ViolationRule, ViolationSeverity
from aphrodite_sla.snapshot import WindowStatistics

if TYPE_CHECKING:  # pragma: no cover
    from aphrodite_sla.sla.error_budget import ErrorBudgetTracker

# the quantile that stands in for an SLA's own at low traffic (PageRulesConfig.severe_low_traffic_median)
LOW_TRAFFIC_QUANTILE = 0.5

RULE_SEVERITY = {
    ViolationRule.SEVERE_BREACH: ViolationSeverity.CRITICAL,
    ViolationRule.BURN_RATE_PAGE: ViolationSeverity.CRITICAL,
    ViolationRule.BURN_RATE_TICKET: ViolationSeverity.MAJOR,
    ViolationRule.STALL: ViolationSeverity.CRITICAL,
}


def is_page(violation: SLAViolation) -> bool:
    """A page wants a person now (CRITICAL fast rules and stalls); a ticket or a sustained
    violation does not by this definition (its severity routes it)."""
    return violation.rule is not ViolationRule.SUSTAINED and violation.severity is ViolationSeverity.CRITICAL


@dataclass
class _Figures:
    """What a rule saw at its latest evaluation (read when its lifecycle builds the violation)."""

    observed: float = math.nan
    line: float = math.nan
    window_s: float = 0.0
    samples: int = 0
    detail: str = ""


@dataclass(eq=False)
class _RuleState:
    threshold: SLAThreshold
    rule: ViolationRule
    resolve_after_s: float
    figures: _Figures = field(default_factory=_Figures)
    lifecycle: ViolationLifecycle = field(init=False)

    def __post_init__(self) -> None:
        name = self.threshold.metric_name
        self.lifecycle = ViolationLifecycle(
            name, self.resolve_after_s, self._build, alert_fingerprint=fingerprint(PAGE_ALERT, sla=name, rule=self.rule.value),
            raised=PageRaised, resolved=PageResolved,
        )

    def _build(self, first: float, raised_at: float, severity: ViolationSeverity, peak: ViolationSeverity) -> SLAViolation:
        th, f = self.threshold, self.figures
        return SLAViolation(
            metric_name=th.metric_name, source_metric=th.source, statistic=th.statistic, direction=th.direction,
            observed_value=f.observed, bound=f.line, target_value=th.target_value, severity=severity,
            window_seconds=f.window_s, first_breach_time=first, detected_at=raised_at, sustained_ratio=1.0,
            evaluation_points=1, sample_count=f.samples, peak_severity=peak, rule=self.rule, detail=f.detail,
        )

    def observe(self, now: float, breached: bool, recovered: bool) -> list[MonitorEvent]:
        severity = RULE_SEVERITY[self.rule]
        return self.lifecycle.observe(EvaluationPoint(now, breached, recovered, breached, severity if breached else None))


class FastPages:
    """The page rules of every SLA (owned by the evaluator; called under its lock)."""

    def __init__(self, config: PageRulesConfig | None = None) -> None:
        self.config = config if config is not None else PageRulesConfig()
        self._rules: dict[tuple[str, ViolationRule], _RuleState] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._levels: dict[str, RecentLevel] = {}  # quantile SLAs' recent healthy levels (relative line)

    # -- configuration -----------------------------------------------------------------------------
    def applies(self, th: SLAThreshold) -> bool:
        return self.config.enabled and th.enabled and th.metric_name not in self.config.excluded_slas

    def windows(self, thresholds: Iterable[SLAThreshold]) -> dict[tuple[str, float], tuple[tuple[float, ...], bool]]:
        """The short windows the severe-breach rule reads, for the evaluator's plan:
        (series, window s) -> (quantiles, mean/rate)."""
        out: dict[tuple[str, float], tuple[tuple[float, ...], bool]] = {}
        cfg = self.config
        if not (cfg.enabled and cfg.severe_breach):
            return out
        for th in thresholds:
            if not self.applies(th):
                continue
            key = (th.source, cfg.severe_window_s)
            quantiles, moments = out.get(key, ((), False))
            q = th.statistic.quantile
            if q is not None:
                extra = {LOW_TRAFFIC_QUANTILE} if cfg.severe_low_traffic_median else set()
                out[key] = (tuple(sorted({*quantiles, q, *extra})), moments)
            else:
                out[key] = (quantiles, True)
        return out

    def forget(self, sla: str) -> None:
        """An SLA was removed or replaced: its open pages end without an event (its settings changed)."""
        for key in [k for k in self._rules if k[0] == sla]:
            del self._rules[key]
        self._levels.pop(sla, None)

    def _state(self, th: SLAThreshold, rule: ViolationRule) -> _RuleState:
        key = (th.metric_name, rule)
        state = self._rules.get(key)
        if state is None or state.threshold is not th:
            state = self._rules[key] = _RuleState(th, rule, self.config.resolve_after_s)
        return state

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate(
        self, now: float, slas: Iterable[tuple[SLAThreshold, ErrorBudgetTracker | None, bool, float]],
        windows: Mapping[tuple[str, float], WindowStatistics],
    ) -> list[MonitorEvent]:
        """Every rule of every enabled SLA at ``now``: (threshold, error budget, breached over its
        own window at this evaluation, its statistic over that window); returns the events of
        their transitions."""
        events: list[MonitorEvent] = []
        cfg = self.config
        if not cfg.enabled:
            return events
        for th, budget, breached, value in slas:
            if not self.applies(th):
                continue
            if cfg.severe_breach:
                window = windows.get((th.source, cfg.severe_window_s))
                if th.statistic.quantile is None and budget is not None:  # an error rate: see sla.error_evidence
                    events += self._error_breach(now, th, budget, window, value)
                else:
                    level = self._level(th)
                    events += self._severe_breach(now, th, window, breached, level)
                    if level is not None:  # after the test: this evaluation does not lift its own line
                        level.observe(now, value, healthy=not breached)
            if cfg.burn_rate and budget is not None:
                page = self._state(th, ViolationRule.BURN_RATE_PAGE)
                events += self._burn(now, page, budget, cfg.page_burn_factor, cfg.page_long_window_s, cfg.page_short_window_s)
                if cfg.ticket:
                    ticket = self._state(th, ViolationRule.BURN_RATE_TICKET)
                    inhibited = page.lifecycle.violation is not None  # the page already says more
                    events += self._burn(now, ticket, budget, cfg.ticket_burn_factor, cfg.ticket_long_window_s,
                                         cfg.ticket_short_window_s, inhibited=inhibited)
        for event in events:
            if isinstance(event, PageRaised):
                key = (event.violation.metric_name, event.rule)
                self._counts[key] = self._counts.get(key, 0) + 1
        return events

    def _level(self, th: SLAThreshold) -> RecentLevel | None:
        """The SLA's recent healthy level, for quantile SLAs with the relative line on."""
        cfg = self.config
        if cfg.severe_relative_factor <= 0.0 or th.statistic.quantile is None:
            return None
        level = self._levels.get(th.metric_name)
        if level is None:
            level = self._levels[th.metric_name] = RecentLevel(cfg.severe_relative_level_s)
        return level

    def _severe_breach(self, now: float, th: SLAThreshold, window: WindowStatistics | None,
                       sla_breached: bool, level: RecentLevel | None = None) -> list[MonitorEvent]:
        cfg = self.config
        state = self._state(th, ViolationRule.SEVERE_BREACH)
        upper = th.direction is Direction.UPPER
        bound = th.bound
        value, n = math.nan, 0
        q = th.statistic.quantile
        if window is not None:
            n = window.samples
            if q is not None:
                value = window.quantiles.get(q, math.nan)
            else:
                value = window.rate if th.statistic is Statistic.RATE else window.mean
        line = bound * cfg.severe_factor if upper else bound / cfg.severe_factor
        # what must be beyond the line: the statistic itself, or at low traffic the window's median
        # (``PageRulesConfig.severe_low_traffic_median``)
        tested, stand_in = value, False
        judged = self._supported(th, n)
        if not judged and window is not None and self._low_traffic(th, n):
            tested, stand_in, judged = window.quantiles.get(LOW_TRAFFIC_QUANTILE, math.nan), True, True
        tested_name = "median" if stand_in else th.statistic.value
        judged = judged and n > 0 and math.isfinite(value) and math.isfinite(tested) and bound > 0
        far = tested >= line if upper else tested <= line
        # the relative line: the SLA's own statistic (not the median stand-in) against its recent level
        ready = level is not None and not stand_in and level.ready(cfg.severe_relative_min_history_s)
        base = level.value if ready and level is not None else math.nan
        relative = base * cfg.severe_relative_factor if upper else base / cfg.severe_relative_factor
        by_level = judged and not far and ready and th.is_beyond(tested) and (tested >= relative if upper else tested <= relative)
        breached = judged and sla_breached and (far or by_level)  # see the module docstring
        recovered = not judged or th.is_recovered(value)
        f = state.figures
        if judged:
            f.observed, f.window_s, f.samples = tested, cfg.severe_window_s, n
            head = f"{tested_name} = {tested:.4g} over the last {cfg.severe_window_s:g}s, "
            if by_level:
                f.line = relative
                f.detail = (head + f"{_ratio(tested, base, upper):.1f}x its recent healthy level {base:.4g} and beyond its "
                            f"bound {bound:.4g} (severe-breach page at {cfg.severe_relative_factor:g}x the level; {n} samples)")
            else:
                f.line = line
                f.detail = (head + f"{_ratio(tested, bound, upper):.1f}x its bound {bound:.4g} "
                            f"(severe-breach page at {cfg.severe_factor:g}x; {n} samples"
                            + (f", too few for the {th.statistic.value}: half of them beyond the line)" if stand_in else ")"))
        return state.observe(now, breached, recovered)

    def _low_traffic(self, th: SLAThreshold, n: int) -> bool:
        """Too few samples for the quantile's own rule, enough for its median to stand in (a
        quantile SLA beyond the median on its bad side: p95 upper, p5 lower)."""
        cfg = self.config
        q = th.statistic.quantile
        if not cfg.severe_low_traffic_median or q is None or n < max(cfg.severe_min_samples, th.min_samples):
            return False
        return q > LOW_TRAFFIC_QUANTILE if th.direction is Direction.UPPER else q < LOW_TRAFFIC_QUANTILE

    def _error_breach(self, now: float, th: SLAThreshold, budget: ErrorBudgetTracker, window: WindowStatistics | None,
                      sla_value: float) -> list[MonitorEvent]:
        """The severe breach of an error-rate SLA: a binomial test of the bad outcomes over the
        short window and over the SLA's own window against the healthy rate before it (see
        ``PageRulesConfig.severe_error_p_value`` and ``sla.error_evidence``)."""
        cfg = self.config
        state = self._state(th, ViolationRule.SEVERE_BREACH)
        upper = th.direction is Direction.UPPER
        bound = th.bound
        line = bound * cfg.severe_factor if upper else bound / cfg.severe_factor
        short_value = math.nan if window is None else (window.rate if th.statistic is Statistic.RATE else window.mean)
        tests = ((cfg.severe_window_s, short_value), (th.window_seconds, sla_value))
        alpha = cfg.severe_error_p_value / len(tests)  # Bonferroni over the windows tested
        baseline_total, baseline_bad = budget.window_counts(cfg.error_baseline_window_s)
        best: tuple[ErrorEvidence, float] | None = None
        breached = False
        for window_s, value in tests:
            total, bad = budget.window_counts(window_s)
            if total < max(cfg.severe_min_samples, th.min_samples) or not math.isfinite(value) or bound <= 0:
                continue
            far = value >= line if upper else value <= line
            evidence = window_evidence(window_s, total, bad, baseline_bad - bad, baseline_total - total, budget.objective,
                                       min_bad=cfg.severe_min_bad if far else total + 1)
            if best is None or evidence.p_value < best[0].p_value or (evidence.p_value == best[0].p_value and window_s == cfg.severe_window_s):
                best = (evidence, value)
            breached = breached or (far and evidence.bad >= cfg.severe_min_bad and evidence.p_value < alpha)
        recovered = not math.isfinite(short_value) or th.is_recovered(short_value)
        f = state.figures
        if best is not None:
            evidence, value = best
            f.observed, f.line, f.window_s, f.samples = value, line, evidence.window_s, evidence.samples
            f.detail = (f"{th.statistic.value} = {value:.4g} over the last {evidence.window_s:g}s, "
                        f"{_ratio(value, bound, upper):.1f}x its bound {bound:.4g} (severe-breach page at {cfg.severe_factor:g}x); "
                        f"{evidence.bad} of {evidence.samples} samples beyond the bound, "
                        f"P = {evidence.p_value:.2g} at the healthy rate {evidence.baseline:.3%} (page below {alpha:.2g})")
        return state.observe(now, breached, recovered)

    def _supported(self, th: SLAThreshold, n: int) -> bool:
        """Enough samples behind the short window's statistic (see ``PageRulesConfig``)."""
        cfg = self.config
        if n < max(cfg.severe_min_samples, th.min_samples):
            return False
        q = th.statistic.quantile
        if q is not None:
            share = (1.0 - q) if th.direction is Direction.UPPER else q
            return n * share >= cfg.severe_min_beyond
        return True

    def _burn(self, now: float, state: _RuleState, budget: ErrorBudgetTracker, factor: float, long_s: float,
              short_s: float, *, inhibited: bool = False) -> list[MonitorEvent]:
        cfg = self.config
        budget_share = 1.0 - budget.objective
        total_long, bad_long = budget.window_counts(long_s)
        total_short, bad_short = budget.window_counts(short_s)
        burn_long = bad_long / total_long / budget_share if total_long else 0.0
        burn_short = bad_short / total_short / budget_share if total_short else 0.0
        enough = total_long >= cfg.burn_min_events_per_minute * long_s / 60.0 and bad_short >= cfg.burn_min_bad
        condition = enough and burn_long >= factor and burn_short >= factor
        breached = condition and (not inhibited or state.lifecycle.violation is not None)
        recovered = burn_short < factor
        f = state.figures
        if total_short:
            f.observed, f.line, f.window_s, f.samples = burn_short, factor, long_s, total_short
            f.detail = (f"error budget burning {burn_short:.1f}x over {_span(short_s)} and {burn_long:.1f}x over "
                        f"{_span(long_s)} ({state.rule.value} at {factor:g}x in both; objective {budget.objective:.4%}, "
                        f"{bad_short} of {total_short} samples beyond the bound {state.threshold.bound:.4g} in {_span(short_s)})")
        return state.observe(now, breached, recovered)

    # -- reading ---------------------------------------------------------------------------------------
    def active(self) -> list[SLAViolation]:
        """The active page and ticket violations (stalls are the stall detector's)."""
        return [s.lifecycle.violation for s in self._rules.values() if s.lifecycle.violation is not None]

    def states(self) -> dict[tuple[str, str], bool]:
        """(SLA, rule) -> page active, for every rule evaluated so far."""
        return {(sla, rule.value): s.lifecycle.violation is not None for (sla, rule), s in self._rules.items()}

    def counts(self) -> dict[tuple[str, str], int]:
        """(SLA, rule) -> pages raised since start."""
        return dict(self._counts)


def _ratio(value: float, bound: float, upper: bool) -> float:
    if upper:
        return value / bound if bound > 0 else math.inf
    return bound / value if value > 0 else math.inf


def _span(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


__all__ = ["RULE_SEVERITY", "FastPages", "is_page"]
