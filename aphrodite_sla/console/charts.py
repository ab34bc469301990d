"""Line charts as inline SVG: one or more series over a time range, with vertical markers
(fault onset, detection, resolution).

Why hand-written: a chart is a polyline per series and a few labels; a vendored charting library
would need a script per chart, which the strict Content-Security-Policy and the no-CDN rule make
costly. The SVG carries a ``<title>`` and a table fallback (``aria``) so the numbers are readable
without seeing colours."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from aphrodite_sla.console.html import Safe, h, utc_iso

WIDTH, HEIGHT = 640, 200
PAD_L, PAD_R, PAD_T, PAD_B = 56, 12, 14, 28


@dataclass(frozen=True)
class Line:
    label: str
    points: Sequence[tuple[float, float]]
    css_class: str = "l0"


@dataclass(frozen=True)
class Marker:
    label: str
    at: float
    css_class: str = "m-onset"


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    lines: Sequence[Line]
    markers: Sequence[Marker] = field(default_factory=tuple)
    start: float | None = None
    end: float | None = None

    @property
    def empty(self) -> bool:
        return not any(math.isfinite(v) for line in self.lines for _, v in line.points)


def _fmt(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def render_chart(chart: Chart) -> Safe:
    """The chart as ``<figure>`` with an SVG (or a sentence saying why there is nothing to draw)."""
    caption = Safe(f"<figcaption>{h(chart.title)} <span class=\"unit\">({h(chart.unit)})</span></figcaption>")
    finite = [(t, v) for line in chart.lines for t, v in line.points if math.isfinite(v) and math.isfinite(t)]
    if not finite:
        return Safe(f'<figure class="chart">{caption}<p class="empty">No samples of this SLI in this time range '
                    "(the monitor keeps a day of evaluations in this process).</p></figure>")
    t0 = chart.start if chart.start is not None else min(t for t, _ in finite)
    t1 = chart.end if chart.end is not None else max(t for t, _ in finite)
    if t1 <= t0:
        t1 = t0 + 1.0
    lo = min(0.0, *(v for _, v in finite))
    hi = max(v for _, v in finite)
    hi = hi * 1.1 if hi > 0 else 1.0
    if hi <= lo:
        hi = lo + 1.0
    iw, ih = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def x(t: float) -> float:
        return PAD_L + (t - t0) / (t1 - t0) * iw

    def y(v: float) -> float:
        return PAD_T + ih - (v - lo) / (hi - lo) * ih

    parts = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{h(chart.title)}" preserveAspectRatio="none">',
             f"<title>{h(chart.title)}</title>",
             f'<rect class="plot" x="{PAD_L}" y="{PAD_T}" width="{iw}" height="{ih}"/>']
    for frac in (0.0, 0.5, 1.0):
        v = lo + frac * (hi - lo)
        parts.append(f'<line class="grid" x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
                     f'<text class="axis" x="{PAD_L - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{h(_fmt(v))}</text>')
    for at, anchor in ((t0, "start"), (t1, "end")):
        parts.append(f'<text class="axis" x="{x(at):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">'
                     f'<tspan class="ts-svg" data-at="{h(utc_iso(at))}">{h(utc_iso(at)[11:19])} UTC</tspan></text>')
    for line in chart.lines:
        segments: list[list[str]] = [[]]
        for t, v in line.points:
            if not (math.isfinite(v) and t0 <= t <= t1):
                if segments[-1]:
                    segments.append([])
                continue
            segments[-1].append(f"{x(t):.1f},{y(v):.1f}")
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                parts.append(f'<circle class="{h(line.css_class)}" cx="{cx}" cy="{cy}" r="2"/>')
            elif seg:
                parts.append(f'<polyline class="{h(line.css_class)}" points="{" ".join(seg)}"><title>{h(line.label)}</title></polyline>')
    for i, m in enumerate(chart.markers):
        if t0 <= m.at <= t1:
            mx = x(m.at)
            parts.append(f'<line class="{h(m.css_class)}" x1="{mx:.1f}" x2="{mx:.1f}" y1="{PAD_T}" y2="{PAD_T + ih}">'
                         f"<title>{h(m.label)} {h(utc_iso(m.at))}</title></line>"
                         f'<text class="mlabel" x="{mx + 3:.1f}" y="{PAD_T + 10 + 11 * i}">{h(m.label)}</text>')
    parts.append("</svg>")
    legend = "".join(f'<li><span class="sw {h(line.css_class)}" aria-hidden="true"></span>{h(line.label)}: last '
                     f"{h(_last(line))}</li>" for line in chart.lines)
    marks = "".join(f'<li><span class="sw {h(m.css_class)}" aria-hidden="true"></span>{h(m.label)}</li>' for m in chart.markers)
    return Safe(f'<figure class="chart">{caption}{"".join(parts)}<ul class="legend">{legend}{marks}</ul></figure>')


def _last(line: Line) -> str:
    for _, v in reversed(line.points):
        if math.isfinite(v):
            return _fmt(v)
    return "—"
