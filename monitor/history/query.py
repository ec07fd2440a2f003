"""Reading history: the 48 half-hour slots, the days, availability over 24 h and 30 days.

Rolled-up system rows cover everything before the store's marker; what came after it (at
most a couple of buckets, plus this instance's unsaved current bucket) is rolled up here on
the fly with the same pure function, so the last slot always holds *now* and nothing is
counted twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from monitor.history.model import (
    RETENTION,
    SLOT_SECONDS,
    CheckBucket,
    SystemBucket,
    SystemWorst,
    availability,
    worst_name,
)
from monitor.history.rollup import (
    day_start,
    local_slot,
    maintenance_pairs,
    system_rows,
)
from monitor.history.wiring import HistoryWiring

SLOTS = 48
THIRTY_DAYS = 30 * 86400.0


@dataclass(slots=True)
class Day:
    date: dt.date
    availability: float | None
    worst: int | None


@dataclass(slots=True)
class SystemHistory:
    system: str
    slots: list[tuple[float, int | None]] = field(default_factory=list)
    """(start, worst code or None for no data), oldest first; the last holds now."""
    days: list[Day] = field(default_factory=list)
    availability_24h: float | None = None
    availability_30d: float | None = None


def slot_starts(now: float, tz: dt.tzinfo, count: int = SLOTS) -> list[float]:
    last = local_slot(now, tz)
    return [last - SLOT_SECONDS * i for i in range(count - 1, -1, -1)]


def day_list(now: float, tz: dt.tzinfo, count: int) -> list[dt.date]:
    today = dt.datetime.fromtimestamp(now, tz).date()
    return [today - dt.timedelta(days=i) for i in range(count - 1, -1, -1)]


def _merge(rows: Iterable[SystemBucket]) -> dict[tuple[str, float], SystemBucket]:
    merged: dict[tuple[str, float], SystemBucket] = {}
    for row in rows:
        key = (row.system, row.start)
        have = merged.get(key)
        if have is None:
            merged[key] = SystemBucket(row.system, row.resolution, row.start, row.worst,
                                       row.ok_s, row.degraded_s, row.down_s, row.maint_s)
        else:
            have.merge(row)
    return merged


class HistoryReader(HistoryWiring):
    async def _unrolled(self, now: float, system: str | None) -> list[SystemBucket]:
        marker = await self.store.history_marker()
        since = max(marker if marker is not None else 0.0, now - RETENTION["check"])
        since -= since % self.bucket
        if system is None:  # every system: one row per system and bucket, reduced in SQL
            checks: list[CheckBucket | SystemWorst] = [
                *await self.store.system_worst(since, now + self.bucket)]
        else:
            checks = [*await self.store.load_check_buckets(since, system=system)]
        checks += [b for b in self.recorder.system_worst(system) if b[1] >= since]
        windows = self.windows(now)
        pairs = maintenance_pairs(windows, since, now, {system} if system else None,
                                  self.bucket)
        return system_rows(checks, windows, self.tz(), pairs, self.bucket, now)

    async def overview(self, systems: Sequence[str], now: float) -> dict[str, SystemHistory]:
        """Every system's 48 slots and availability over 24 h and 30 days (the front page)."""
        tz = self.tz()
        starts = slot_starts(now, tz)
        unrolled = await self._unrolled(now, None)
        slot_rows = _merge([*await self.store.load_system_buckets("slot", starts[0]),
                            *(r for r in unrolled if r.resolution == "slot")])
        month = await self.store.sum_system_buckets("hour", now - THIRTY_DAYS)
        extra: dict[str, list[SystemBucket]] = {}
        for r in unrolled:
            if r.resolution == "hour" and r.start >= now - THIRTY_DAYS:
                extra.setdefault(r.system, []).append(r)
        found: dict[str, SystemHistory] = {}
        for system in systems:
            history = SystemHistory(system)
            mine = [slot_rows.get((system, s)) for s in starts]
            history.slots = [(s, r.worst if r else None) for s, r in zip(starts, mine,
                                                                         strict=True)]
            history.availability_24h = availability([r for r in mine if r is not None])
            month_rows = list(extra.get(system, ()))
            if system in month:
                month_rows.append(month[system])
            history.availability_30d = availability(month_rows)
            found[system] = history
        return found

    async def system(self, system: str, now: float, days: int) -> SystemHistory:
        """One system: its slots, availability, and `days` daily cells ending today."""
        tz = self.tz()
        starts = slot_starts(now, tz)
        dates = day_list(now, tz, days)
        unrolled = await self._unrolled(now, system)
        slot_rows = _merge([*await self.store.load_system_buckets("slot", starts[0],
                                                                  system=system),
                            *(r for r in unrolled if r.resolution == "slot")])
        day_rows = _merge([*await self.store.load_system_buckets(
            "day", day_start(dates[0], tz), system=system),
            *(r for r in unrolled if r.resolution == "day")])
        month = await self.store.load_system_buckets("hour", now - THIRTY_DAYS, system=system)
        month += [r for r in unrolled if r.resolution == "hour" and r.start >= now - THIRTY_DAYS]
        history = SystemHistory(system)
        mine = [slot_rows.get((system, s)) for s in starts]
        history.slots = [(s, r.worst if r else None) for s, r in zip(starts, mine, strict=True)]
        history.availability_24h = availability([r for r in mine if r is not None])
        history.availability_30d = availability(month)
        for date in dates:
            row = day_rows.get((system, day_start(date, tz)))
            history.days.append(Day(date, availability([row]) if row else None,
                                    row.worst if row else None))
        return history

    async def latency(self, system: str, now: float) -> dict[str, list[CheckBucket]]:
        """Each check's buckets over the last 24 hours, oldest first (the response-time charts)."""
        since = now - 86400.0
        since -= since % self.bucket
        found: dict[str, list[CheckBucket]] = {}
        index: dict[tuple[str, float], CheckBucket] = {}
        for row in await self.store.load_check_buckets(since, system=system):
            found.setdefault(row.check_id, []).append(row)
            index[(row.check_id, row.start)] = row
        for row in self.recorder.unsaved(system):
            have = index.get((row.check_id, row.start))
            if have is not None:
                have.merge(row)
            elif row.start >= since:
                found.setdefault(row.check_id, []).append(row)
                index[(row.check_id, row.start)] = row
        for series in found.values():
            series.sort(key=lambda r: r.start)
        return found


def empty_history(system: str, now: float, tz: dt.tzinfo, days: int = 0) -> SystemHistory:
    """All no_data: what a page shows when the store cannot be read right now."""
    return SystemHistory(system, [(s, None) for s in slot_starts(now, tz)],
                         [Day(d, None, None) for d in day_list(now, tz, days)] if days else [])


def history_document(history: SystemHistory, tz: dt.tzinfo) -> dict[str, object]:
    """`GET /api/v1/systems/{id}/history` (SPEC §7)."""
    return {
        "system": history.system,
        "days": [{"date": d.date.isoformat(), "availability": d.availability,
                  "worst": worst_name(d.worst)} for d in history.days],
        "slots_24h": [{"start": dt.datetime.fromtimestamp(start, tz).isoformat(
            timespec="seconds"), "worst": worst_name(code)} for start, code in history.slots],
        "availability_24h": history.availability_24h,
        "availability_30d": history.availability_30d,
    }
