"""Maintenance windows as concrete time ranges: one-off, recurring, and run-time silences.

Recurring windows are expanded in the site's time zone around `now`, so "every Sunday
02:00–04:00" follows daylight-saving changes the way the hospital's clocks do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from monitor.config.model import WEEKDAYS, Config, Maintenance
from monitor.core.models import Incident, Silence
from monitor.probing.state import CheckState


@dataclass(frozen=True, slots=True)
class Window:
    key: str
    systems: tuple[str, ...]
    start: float
    end: float
    reason: str
    announce: tuple[float, ...] = ()

    def covers(self, system: str, now: float) -> bool:
        return system in self.systems and self.start <= now < self.end


def _occurrences(window: Maintenance, tz: dt.tzinfo, now: float,
                 horizon: float) -> list[tuple[float, float]]:
    assert window.recurring is not None
    rec = window.recurring
    start_h, start_m = (int(x) for x in rec.start.split(":"))
    end_h, end_m = (int(x) for x in rec.end.split(":"))
    today = dt.datetime.fromtimestamp(now, tz).date()
    found = []
    for offset in range(-2, int(horizon // 86400) + 2):
        day = today + dt.timedelta(days=offset)
        if WEEKDAYS[day.weekday()] not in rec.days:
            continue
        start = dt.datetime.combine(day, dt.time(start_h, start_m), tz)
        end_day = day if (end_h, end_m) > (start_h, start_m) else day + dt.timedelta(days=1)
        end = dt.datetime.combine(end_day, dt.time(end_h, end_m), tz)
        if end.timestamp() >= now - 86400 and start.timestamp() <= now + horizon:
            found.append((start.timestamp(), end.timestamp()))
    return found


def windows(config: Config, silences: list[Silence], now: float,
            horizon: float = 86400.0 * 2) -> list[Window]:
    """Every window that ended within the last day or starts within `horizon`."""
    found: list[Window] = []
    tz = config.site.tz
    for index, window in enumerate(config.maintenance):
        announce = tuple(sorted(window.announce))
        if window.recurring is None:
            assert window.start is not None and window.end is not None
            found.append(Window(f"config-{index}", tuple(window.systems),
                                window.start.timestamp(), window.end.timestamp(),
                                window.reason, announce))
            continue
        for start, end in _occurrences(window, tz, now, horizon + max(announce, default=0)):
            found.append(Window(f"config-{index}@{int(start)}", tuple(window.systems), start, end,
                                window.reason, announce))
    for silence in silences:
        if silence.source == "config":
            continue
        found.append(Window(silence.id, tuple(silence.systems), silence.start, silence.end,
                            silence.reason, tuple(sorted(silence.announce))))
    return found


def notice_due(window: Window, now: float) -> float | None:
    """The announcement lead time due now (the shortest one passed), or None.

    After a restart 30 minutes before a window announced at [24h, 1h], only the 1h notice
    goes out: two notices in a row about the same window would be noise.
    """
    if not window.announce or not (window.start - max(window.announce) <= now < window.start):
        return None
    due = [lead for lead in window.announce if now >= window.start - lead]
    return min(due) if due else None


def systems_down(window: Window, open_incidents: Mapping[str, Incident]) -> list[str]:
    """The window's systems that are still down: an open critical incident of their own."""
    return [s for s in window.systems
            if (i := open_incidents.get(s)) is not None and i.severity == "critical"]


def back_at(window: Window, states_of: Callable[[str], Iterable[CheckState]]) -> float | None:
    """When the last of the window's systems came back (its checks' latest hard change to
    OK), if that was after the window's end; None when they were up by then."""
    changes = [s.last_hard_change for system in window.systems for s in states_of(system)
               if not s.failing and s.last_hard_change is not None]
    latest = max(changes, default=None)
    return latest if latest is not None and latest > window.end else None


def over_due(window: Window, now: float, grace: float = 3600.0, *,
             down: Sequence[str] = (), back: float | None = None) -> bool:
    """The "resume electronic work" notice of an announced window: due for an hour after
    the window ends, but held while any of its systems is still down (`down`), and then due
    for an hour after the last one came back (`back`).

    Staff were told "paper until the resume notice": telling them to resume while the HIS
    is still down would be wrong, and meanwhile the incident's own plan (released at the
    window's end) tells them it is an outage now. The held notice says when it came back.
    """
    if not window.announce or now < window.end or down:
        return False
    return now < max(window.end, back or window.end) + grace
