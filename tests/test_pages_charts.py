"""History pictures (SPEC §7): cells with text alternatives, told apart without colour. Pure."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

from monitor.history.model import DEGRADED, DOWN, MAINTENANCE, OK
from monitor.web import charts, whattodo
from monitor.web.pages import STRINGS

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
WORDS = whattodo.worst_words(STRINGS["en"])


def shape(svg: str) -> str:
    """The cell as a colour-blind reader or a black-and-white printer sees it."""
    return re.sub(r'(fill|stroke)="#[0-9a-fA-F]+"', "", svg)


def test_every_state_has_a_mark_of_its_own_without_colour() -> None:
    shapes = {state: shape(charts.cell(state, 0, 6, 28)) for state in charts.WORST_ORDER}
    assert len(set(shapes.values())) == len(charts.WORST_ORDER), shapes


def test_the_down_cross_spans_the_cell_not_a_dot_in_its_middle() -> None:
    """A bar cell is 6 units wide and 28 high; the cross must be seen at a few pixels wide
    (it used to be 4 units high, a speck at phone width)."""
    svg = charts.cell("down", 0, 6, 28)
    ys = [float(y) for y in re.findall(r"[ML][\d.]+ ([\d.]+)", svg)]
    assert max(ys) - min(ys) >= 28 * 0.4, svg
    assert 'vector-effect="non-scaling-stroke"' in svg  # stays visible when stretched


def test_the_bar_has_48_cells_each_with_a_title_and_a_summary_for_screen_readers() -> None:
    start = dt.datetime(2026, 12, 1, 15, 0, tzinfo=TZ).timestamp()
    codes = [None] * 40 + [OK, OK, DEGRADED, DOWN, DOWN, MAINTENANCE, OK, DOWN]
    svg = str(charts.bar_24h([(start + 1800 * i, c) for i, c in enumerate(codes)], TZ, WORDS,
                             "HIS, Last 24 hours"))
    assert svg.count('<g class="cell') == 48
    titles = re.findall(r"<title>([^<]*)</title>", svg)
    assert len(titles) == 48
    assert titles[0] == "12-01 15:00–15:30: no data"
    assert titles[-1] == "12-02 14:30–15:00: down"
    assert 'role="img"' in svg
    assert ('aria-label="HIS, Last 24 hours: 3 OK, 1 degraded, 3 down, 1 maintenance, '
            '40 no data"') in svg


def test_the_response_time_chart_is_labelled_on_the_hospitals_clock() -> None:
    """Ticks at 00/06/12/18 local time (not "14:58, 20:58"); the value labels in ms."""
    from monitor.history.model import CheckBucket

    now = dt.datetime(2026, 12, 2, 14, 58, tzinfo=TZ).timestamp()
    series = [CheckBucket("his-web", "his", now - 86400 + 300 * i, OK, 10, 0.004, 0.05, 0.006)
              for i in range(288)]
    svg = str(charts.latency_chart(series, now, TZ, "Response time: his-web", "no data"))
    hours = re.findall(r'font-size="12">(\d\d:\d\d)</text>', svg)
    assert hours == ["18:00", "00:00", "06:00", "12:00"]
    assert re.findall(r'fill="#333">([^<]+)</text>', svg) == ["5 ms", "10 ms"]
    assert svg.count("<polyline") == 1 and 'aria-label="Response time: his-web: median' in svg
