"""From check buckets to system rows: pure functions of (buckets, maintenance windows, tz).

A system's state in a 5-minute bucket is the worst of its checks' buckets; a maintenance
window touching the bucket wins over down, and the seconds it covers are kept apart so
availability leaves them out. The bucket's other seconds count in the system's state. Each
5-minute result is added to the system's local half-hour slot, hour and day (site time zone, so
the daily cells follow the hospital's calendar through daylight-saving changes).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Protocol

from monitor.history.model import (
    BUCKET_SECONDS,
    DEGRADED,
    DOWN,
    MAINTENANCE,
    OK,
    RESOLUTIONS,
    CheckBucket,
    SystemBucket,
    SystemWorst,
)


class WindowLike(Protocol):
    systems: tuple[str, ...]
    start: float
    end: float


def local_slot(ts: float, tz: dt.tzinfo) -> float:
    """Start of the local half hour (:00 or :30 on the hospital's clock) holding `ts`."""
    local = dt.datetime.fromtimestamp(ts, tz)
    return local.replace(minute=local.minute - local.minute % 30, second=0,
                         microsecond=0).timestamp()


def local_hour(ts: float, tz: dt.tzinfo) -> float:
    local = dt.datetime.fromtimestamp(ts, tz)
    return local.replace(minute=0, second=0, microsecond=0).timestamp()


def local_day(ts: float, tz: dt.tzinfo) -> float:
    return day_start(dt.datetime.fromtimestamp(ts, tz).date(), tz)


def day_start(day: dt.date, tz: dt.tzinfo) -> float:
    return dt.datetime.combine(day, dt.time(0, 0), tz).timestamp()


def maintenance_seconds(windows: Sequence[WindowLike], system: str, start: float,
                        end: float) -> float:
    """Seconds of [start, end) inside any window of `system` (overlapping windows once)."""
    spans = sorted((max(w.start, start), min(w.end, end)) for w in windows
                   if system in w.systems and w.start < end and w.end > start)
    total, reach = 0.0, start
    for lo, hi in spans:
        lo = max(lo, reach)
        if hi > lo:
            total += hi - lo
            reach = hi
    return total


def system_rows(
    buckets: Iterable[CheckBucket | SystemWorst],
    windows: Sequence[WindowLike],
    tz: dt.tzinfo,
    extra: Iterable[tuple[str, float]] = (),
    bucket: float = BUCKET_SECONDS,
    now: float | None = None,
) -> list[SystemBucket]:
    """Slot, hour and day rows for the systems seen in `buckets`.

    `buckets` are check buckets, or `SystemWorst` rows already reduced per system (what
    `Store.system_worst` answers, so a roll-up reads one row per system). A system's seconds
    down in a bucket are the largest share any of its checks was down (their outages
    overlap when the system is down), likewise down or degraded; the rest is OK.

    `extra` adds (system, bucket start) pairs without check data that a maintenance window
    may cover: a system in maintenance with its checks switched off still shows maintenance.
    `now`, for a bucket still going: only its elapsed seconds count towards availability.
    """
    worst: dict[tuple[str, float], int] = {}
    shares: dict[tuple[str, float], tuple[float, float]] = {}
    for b in buckets:
        if isinstance(b, CheckBucket):
            key, code, share = (b.system, b.start), b.worst, b.shares()
        else:
            key, code, share = (b[0], b[1]), b[2], (b[3], b[4])
        if worst.get(key, -1) < code:
            worst[key] = code
        seen = shares.get(key)
        shares[key] = share if seen is None else (max(seen[0], share[0]),
                                                  max(seen[1], share[1]))
    for key in extra:
        worst.setdefault(key, -1)
    rows: dict[tuple[str, str, float], SystemBucket] = {}
    edges: dict[float, tuple[float, float, float]] = {}
    for (system, start), code in worst.items():
        length = bucket if now is None else max(0.0, min(bucket, now - start))
        maint = maintenance_seconds(windows, system, start, start + length) if windows else 0.0
        if code < 0 and maint <= 0:
            continue  # no data, no maintenance: the cell stays no_data
        five = SystemBucket(system, "slot", start, MAINTENANCE if maint > 0 else code,
                            maint_s=maint)
        if code >= 0:
            known = length - maint
            down, bad = shares[(system, start)]
            five.add_seconds(DOWN, known * down)
            five.add_seconds(DEGRADED, known * (bad - down))
            five.add_seconds(OK, known * (1.0 - bad))
        at = edges.get(start)
        if at is None:
            at = edges[start] = (local_slot(start, tz), local_hour(start, tz),
                                 local_day(start, tz))
        for resolution, begin in zip(RESOLUTIONS, at, strict=True):
            row_key = (system, resolution, begin)
            have = rows.get(row_key)
            if have is None:
                rows[row_key] = SystemBucket(system, resolution, begin, five.worst, five.ok_s,
                                         five.degraded_s, five.down_s, five.maint_s)
            else:
                have.merge(five)
    return list(rows.values())


def maintenance_pairs(windows: Sequence[WindowLike], since: float, until: float,
                      systems: set[str] | None = None,
                      bucket: float = BUCKET_SECONDS) -> list[tuple[str, float]]:
    """(system, bucket start) for every bucket in [since, until) a window touches."""
    pairs: list[tuple[str, float]] = []
    for w in windows:
        lo, hi = max(w.start, since), min(w.end, until)
        if hi <= lo:
            continue
        first = lo - lo % bucket
        for system in w.systems:
            if systems is not None and system not in systems:
                continue
            at = first
            while at < hi:
                pairs.append((system, at))
                at += bucket
    return pairs
