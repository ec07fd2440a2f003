"""History as pictures, server-rendered: inline SVG, no JavaScript, no external asset (SPEC §7).

Every cell has a text alternative (`<title>` for a pointer, the chart's `aria-label` for a
screen reader) and every state a mark of its own as well as a colour, so colour-blind staff and
black-and-white printouts tell "down" from "ok": ok is solid, degraded dotted, down
crossed, maintenance barred, no data a thin grey band.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Sequence

from markupsafe import Markup, escape

from monitor.history.model import CheckBucket, worst_name

WORST_ORDER = ("ok", "degraded", "down", "maintenance", "no_data")

_FILL = {"ok": "#0b6e1f", "degraded": "#ffd400", "down": "#b00020", "maintenance": "#1f4e9c",
         "no_data": "#fff"}
"""Each cell draws its own mark: no shared pattern definitions referenced by url()."""


def cell(state: str, x: float, width: float, height: float, title: str = "") -> str:
    """One cell: a colour and a mark of its own (none, dot, cross, bar; no data is a thin
    grey band at half height, visibly not a full cell)."""
    tip = f"<title>{escape(title)}</title>" if title else ""
    if state == "no_data":
        body = (f'<rect x="{x:g}" y="{height * 0.35:g}" width="{width:g}" '
                f'height="{height * 0.3:g}" fill="#d9d9d9"/>')
    else:
        body = (f'<rect x="{x:g}" y="0.5" width="{width:g}" height="{height - 1:g}" '
                f'fill="{_FILL[state]}"/>')
    mid, cx = height / 2, x + width / 2
    # Lines keep their width however far the bar is stretched (vector-effect); a browser
    # without it draws them scaled, still visible.
    line = 'vector-effect="non-scaling-stroke"'
    if state == "degraded":  # a black dot in the middle third
        r = min(width, height) / 3
        body += (f'<rect x="{cx - r:g}" y="{mid - r:g}" width="{2 * r:g}" height="{2 * r:g}" '
                 f'fill="#000"/>')
    elif state == "down":  # a cross from corner to corner: seen even at a few pixels wide
        top, bottom = height * 0.25, height * 0.75
        body += (f'<path d="M{x + width * 0.2:g} {top:g}L{x + width * 0.8:g} {bottom:g}'
                 f'M{x + width * 0.8:g} {top:g}L{x + width * 0.2:g} {bottom:g}" '
                 f'stroke="#fff" stroke-width="1.5" {line}/>')
    elif state == "maintenance":  # a white bar across the middle
        body += (f'<path d="M{x:g} {mid:g}H{x + width:g}" stroke="#fff" '
                 f'stroke-width="4" {line}/>')
    return f'<g class="cell {state}">{tip}{body}</g>'


def _cells(cells: Sequence[tuple[str, str]], label: str, css: str, width: int = 6,
           gap: int = 1, height: int = 28) -> Markup:
    """A row of cells, each (state name, title text), as one accessible SVG image."""
    total = len(cells) * (width + gap) - gap
    parts = [f'<svg class="{css}" viewBox="0 0 {total} {height}" preserveAspectRatio="none" '
             f'role="img" aria-label="{escape(label)}" width="100%" height="{height}">']
    for i, (state, title) in enumerate(cells):
        parts.append(cell(state, i * (width + gap), width, height, title))
    parts.append("</svg>")
    return Markup("".join(parts))


def _grid(cells: Sequence[tuple[str, str]], label: str, css: str, columns: int = 30,
          width: int = 8, gap: int = 2, height: int = 18) -> Markup:
    """The same cells in rows of `columns`, oldest top left: 90 days in one row are 3 px
    each on a phone, in three rows of 30 they are big enough to see and to tap."""
    rows = -(-len(cells) // columns)
    total_w = columns * (width + gap) - gap
    total_h = rows * (height + gap) - gap
    parts = [f'<svg class="{css}" viewBox="0 0 {total_w} {total_h}" preserveAspectRatio="none" '
             f'role="img" aria-label="{escape(label)}" width="100%" height="{total_h * 2}">']
    for i, (state, title) in enumerate(cells):
        row, col = divmod(i, columns)
        parts.append(f'<g transform="translate(0 {row * (height + gap)})">'
                     f'{cell(state, col * (width + gap), width, height, title)}</g>')
    parts.append("</svg>")
    return Markup("".join(parts))


def legend_key(state: str) -> Markup:
    return Markup(f'<svg width="16" height="16" viewBox="0 0 16 16" aria-hidden="true" '
                  f'focusable="false">{cell(state, 1, 14, 16)}</svg>')


def summary(names: Sequence[str], words: dict[str, str]) -> str:
    """"46 OK, 2 down": what the picture says, for the aria-label."""
    counts = {state: names.count(state) for state in WORST_ORDER}
    return ", ".join(f"{n} {words[state]}" for state, n in counts.items() if n)


def bar_24h(slots: Sequence[tuple[float, int | None]], tz: dt.tzinfo,
            words: dict[str, str], title: str) -> Markup:
    """48 half-hour cells, oldest first; the last one holds now."""
    cells, names = [], []
    for start, code in slots:
        name = worst_name(code)
        names.append(name)
        begin = dt.datetime.fromtimestamp(start, tz)
        end = begin + dt.timedelta(minutes=30)
        cells.append((name, f"{begin:%m-%d %H:%M}–{end:%H:%M}: {words[name]}"))
    return _cells(cells, f"{title}: {summary(names, words)}", "bar24")


def strip_days(days: Sequence[tuple[dt.date, int | None, float | None]],
               words: dict[str, str], title: str) -> Markup:
    """One cell a day, oldest first, with the day's availability in its title."""
    cells, names = [], []
    for date, code, share in days:
        name = worst_name(code)
        names.append(name)
        extra = f", {share * 100:.2f}%" if share is not None else ""
        cells.append((name, f"{date.isoformat()}: {words[name]}{extra}"))
    label = f"{title}: {summary(names, words)}"
    # One row on a wide screen, rows of 30 days on a phone (CSS shows one of the two).
    return Markup(_cells(cells, label, "days", width=5) + _grid(cells, label, "days-grid"))


def percent(share: float | None, none: str) -> str:
    """Availability as people read it: 99.95%, never a bare 1.0."""
    if share is None:
        return none
    if share >= 1.0:
        return "100%"
    return f"{min(share * 100, 99.99):.2f}%"


def latency_chart(series: Sequence[CheckBucket], now: float, tz: dt.tzinfo, title: str,
                  no_data: str, width: int = 720, height: int = 160) -> Markup:
    """24 hours of response time: the average as a line, min..max as a band (ms)."""
    # The value labels sit above their grid lines inside the plot, not in a left margin: on a
    # phone the page's CSS makes the labels twice as large (in viewBox units) so that they
    # stay readable once the 720-unit chart is shrunk to the screen, and they need no room.
    left, bottom, top = 8, 30, 24
    plot_w, plot_h = width - left - 8, height - bottom - top
    start = now - 86400.0
    points = [b for b in series if b.start >= start - 300 and b.n]
    if not points:
        return Markup(f'<p class="muted chart-empty">{escape(no_data)}</p>')
    peak = max(b.lat_max for b in points) * 1000 or 1.0
    ceiling = _nice(peak)

    def x(ts: float) -> float:
        return left + max(0.0, min(1.0, (ts - start) / 86400.0)) * plot_w

    def y(ms: float) -> float:
        return top + plot_h - min(ms / ceiling, 1.0) * plot_h

    avg = " ".join(f"{x(b.start + 150):.1f},{y(b.lat_avg * 1000):.1f}" for b in points)
    band = [f"{x(b.start + 150):.1f},{y(b.lat_max * 1000):.1f}" for b in points] + \
        [f"{x(b.start + 150):.1f},{y(b.lat_min * 1000):.1f}" for b in reversed(points)]
    avgs = [b.lat_avg * 1000 for b in points]
    label = (f"{title}: median {statistics.median(avgs):.0f} ms, "
             f"highest {peak:.0f} ms, lowest {min(b.lat_min for b in points) * 1000:.0f} ms")
    parts = [f'<svg class="latency" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(label)}" width="100%">',
             f'<title>{escape(label)}</title>']
    for frac in (0.0, 0.5, 1.0):
        yy = top + plot_h - frac * plot_h
        parts.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{left + plot_w}" y2="{yy:.1f}" '
                     f'stroke="#bbb" stroke-width="1"/>')
        if frac:  # 0 ms needs no label: the bottom line is the axis
            parts.append(f'<text x="{left}" y="{yy - 4:.1f}" font-size="12" '
                         f'fill="#333">{_ms(ceiling * frac)}</text>')
    for ts in hour_ticks(start, now, tz):
        xx = x(ts)
        anchor = ("start" if xx < left + 40 else "end" if xx > left + plot_w - 40
                  else "middle")
        parts.append(f'<text x="{xx:.1f}" y="{height - 8}" text-anchor="{anchor}" '
                     f'font-size="12">{dt.datetime.fromtimestamp(ts, tz):%H:%M}</text>')
        parts.append(f'<line x1="{xx:.1f}" y1="{top + plot_h:.1f}" x2="{xx:.1f}" '
                     f'y2="{top + plot_h + 4:.1f}" stroke="#333" stroke-width="1"/>')
    parts.append(f'<polygon points="{" ".join(band)}" fill="#9ab7e6" stroke="none"/>')
    parts.append(f'<polyline points="{avg}" fill="none" stroke="#0033aa" stroke-width="2"/>')
    if len(points) <= 12:  # too few for a visible line: a dot per bucket as well
        for b in points:
            parts.append(f'<circle cx="{x(b.start + 150):.1f}" cy="{y(b.lat_avg * 1000):.1f}" '
                         'r="3" fill="#0033aa"/>')
    for b in points:
        if b.worst >= 2:  # down buckets marked with a cross below the axis, not by colour
            xx = x(b.start + 150)
            parts.append(f'<path d="M{xx - 3:.1f} {top + plot_h - 3:.1f}l6 6m0 -6l-6 6" '
                         'stroke="#b00020" stroke-width="2"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def hour_ticks(start: float, end: float, tz: dt.tzinfo, every: int = 6) -> list[float]:
    """Times in [start, end] at 00:00, 06:00, 12:00, 18:00 on the hospital's clock: labels a
    reader knows, not "14:58, 20:58"."""
    local = dt.datetime.fromtimestamp(start, tz).replace(minute=0, second=0, microsecond=0)
    found = []
    for hours in range(26):
        at = (local + dt.timedelta(hours=hours)).timestamp()
        when = dt.datetime.fromtimestamp(at, tz)
        if start <= at <= end and when.hour % every == 0 and when.minute == 0:
            found.append(at)
    return found


def _nice(peak: float) -> float:
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000):
        if peak <= step:
            return float(step)
    return peak


def _ms(value: float) -> str:
    return f"{value / 1000:g} s" if value >= 1000 else f"{value:g} ms"
