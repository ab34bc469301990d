"""When an SLA's anomaly is worth a person's attention: the warning policy's settings (data only;
``sla.warning_policy`` applies them).

The anomaly detector's score is an *onset* signal: high when something starts, whatever happens
next. Replaying a day of healthy traffic with a daily curve and hourly bursts, every onset that
moved toward the bound warned: 15 warnings in 24 h, nearly all a queue that built up in a burst
and drained within a minute, or a noisy 5-second p99 at a busy hour. A warning that a person
should read says "this SLA is heading for its bound", so it needs three things:

1. **direction and size**: the change moves the statistic toward its bound by at least
   ``headroom_share`` of the headroom the detector's expectation had (latency falling at night, or
   40 -> 42 ms under an 80 ms bound, threatens nothing);
2. **persistence**: the change holds — the newest interval's statistic stays beyond that line —
   in more than ``hold_share`` of the evaluations of the ``confirm_s`` after the onset. A burst
   that drains in seconds fails; a leak, a ramp, a surge or a fault holds. The warning is raised
   as soon as enough evaluations held (it does not wait out the period when the answer is known);
3. **one warning per story**: no second warning of the same SLA within ``min_interval_s``.

What was considered and left out, with the reason: *explained by load* (suppress a latency rise
that follows the arrival rate) — a traffic surge is exactly the early warning an operator wants
before a breach, so load is a cause to report, not a reason to stay quiet; a *projected
time-to-breach* from the window's trend — a burst lifts the 5-minute statistic's trend as steeply
as a fault for a minute, so the projection adds false warnings unless it also waits, which is
what persistence does directly.

All settable in the ``[warning_rules]`` table of the configuration file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aphrodite_sla.sla.rules_table import check_scalar_fields, table_from_mapping


@dataclass(frozen=True)
class WarningRulesConfig:
    """Settings of the anomaly warning policy. Invalid values raise ``ValueError`` naming the field."""

    # False: every onset that passes the direction and size gate warns at once (no persistence,
    # no rate limit): the behaviour before this policy.
    enabled: bool = True
    # A quarter: KV usage climbing from 40% to 60% under a 95% bound during a traffic surge is the
    # early warning the demo's surge is detected by; half hid it.
    headroom_share: float = 0.25
    # A minute: bursts of the healthy day drained within it (their changes held in at most 6 of
    # the 13 evaluations of a minute at the default 5 s interval), while a leak, a latency ramp and
    # a surge held in 8-13. Longer delays the warning for nothing; shorter lets a burst through.
    confirm_s: float = 60.0
    # More often than not: the change must hold in more than half of the period's evaluations
    # (7 of 13 at a 5 s interval), so one or two noisy intervals neither make nor break it.
    hold_share: float = 0.5
    # Ten minutes: the SLA's window (5 minutes by default) and as long again for a person to look;
    # a second warning of the same SLA within that is the same story.
    min_interval_s: float = 600.0

    def __post_init__(self) -> None:
        check_scalar_fields(self, "warning_rules")
        for name in ("headroom_share", "hold_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"warning_rules.{name}: must be in [0, 1), got {getattr(self, name)!r}")
        if self.confirm_s > 3600.0:
            raise ValueError(f"warning_rules.confirm_s: must be at most 3600 seconds, got {self.confirm_s!r}")

    @classmethod
    def from_mapping(cls, raw: Any) -> WarningRulesConfig:
        """From the configuration file's ``[warning_rules]`` table; an unknown key is an error."""
        return table_from_mapping(cls, raw, "warning_rules")


__all__ = ["WarningRulesConfig"]
