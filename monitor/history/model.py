"""The vocabulary of history (SPEC §7): bucket codes, resolutions, retention, the two row types.

A check's 5-minute bucket keeps the worst hard state seen in it, min/avg/max latency and the
seconds between its probes spent down and degraded; a system's row (one per half-hour slot,
hour or day) keeps its worst state and how many seconds it spent in each state, which is
what availability is computed from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BUCKET_SECONDS = 300.0
"""Per-check aggregation step; :00 and :30 in every real time zone fall on a bucket edge."""
SLOT_SECONDS = 1800.0
"""The front page's 24-hour bar: 48 half-hour cells."""

OK, DEGRADED, DOWN, MAINTENANCE = 0, 1, 2, 3
"""Bucket codes, in the order `max()` picks the worst: maintenance wins over down."""
WORST_NAMES: tuple[str, ...] = ("ok", "degraded", "down", "maintenance")
NO_DATA = "no_data"

Resolution = Literal["slot", "hour", "day"]
RESOLUTIONS: tuple[Resolution, ...] = ("slot", "hour", "day")
"""System rows: the half-hour slot of the 24-hour bar (local :00/:30), local hour, local day."""
RETENTION: dict[str, float] = {
    "check": 48 * 3600.0,
    "slot": 48 * 3600.0,
    "hour": 30 * 86400.0,
    "day": 400 * 86400.0,
}
"""How long each kind of row is kept; older rows are pruned once per bucket."""
MAX_DAYS = 400


def worst_name(code: int | None) -> str:
    return NO_DATA if code is None else WORST_NAMES[code]


@dataclass(slots=True)
class CheckBucket:
    """One check over one 5-minute bucket. Rows for the same (check, start) merge."""

    check_id: str
    system: str
    start: float
    worst: int
    n: int
    lat_min: float
    lat_sum: float
    lat_max: float
    down_s: float = 0.0
    """Seconds between probes the check spent down (a hard CRIT) in this bucket."""
    bad_s: float = 0.0
    """Seconds it spent down or degraded."""
    seen_s: float = 0.0
    """Seconds of the bucket measured at all (from one probe to the next, the first probe's
    state counting; the stretch from the bucket's start to its first probe in the state of
    the probe before, if that came less than a bucket earlier). 0 for rows written before
    these columns."""

    @property
    def lat_avg(self) -> float:
        return self.lat_sum / self.n if self.n else 0.0

    def merge(self, other: CheckBucket) -> None:
        """Two writers of the same bucket (a restart, two instances probing) add up."""
        self.worst = max(self.worst, other.worst)
        self.lat_min = min(self.lat_min, other.lat_min)
        self.lat_max = max(self.lat_max, other.lat_max)
        self.lat_sum += other.lat_sum
        self.n += other.n
        self.down_s += other.down_s
        self.bad_s += other.bad_s
        self.seen_s += other.seen_s

    def shares(self) -> tuple[float, float]:
        """(down, down or degraded) as shares of the bucket: `check_shares`."""
        return check_shares(self.worst, self.down_s, self.bad_s, self.seen_s)


def check_shares(worst: int, down_s: float, bad_s: float, seen_s: float) -> tuple[float, float]:
    """The share of a bucket a check was down, and down or degraded, from the seconds seen
    between its probes. A 30-second outage is a tenth of its 5-minute bucket, not all of it
    (availability counted whole buckets before). A bucket never reads better than its worst
    state allows nor worse: unmeasured (`seen_s` 0, or an old row) it counts whole, as
    before. The same rule as `monitor/store/sql.py`'s `system_worst`, which computes it in
    SQL so that a roll-up reads one row per system."""
    down = 0.0 if worst < DOWN else min(down_s / seen_s, 1.0) if seen_s > 0 else 1.0
    bad = 0.0 if worst < DEGRADED else min(bad_s / seen_s, 1.0) if seen_s > 0 else 1.0
    return down, max(bad, down)


SystemWorst = tuple[str, float, int, float, float]
"""(system, bucket start, worst code, down share, down-or-degraded share) of one 5-minute
bucket, reduced over the system's checks (`Store.system_worst`)."""


@dataclass(slots=True)
class SystemBucket:
    """One system over a half-hour slot, an hour or a day (local time). Rows merge by adding."""

    system: str
    resolution: str
    start: float
    worst: int
    ok_s: float = 0.0
    degraded_s: float = 0.0
    down_s: float = 0.0
    maint_s: float = 0.0

    def merge(self, other: SystemBucket) -> None:
        self.worst = max(self.worst, other.worst)
        self.ok_s += other.ok_s
        self.degraded_s += other.degraded_s
        self.down_s += other.down_s
        self.maint_s += other.maint_s

    def add_seconds(self, code: int, seconds: float) -> None:
        if code == OK:
            self.ok_s += seconds
        elif code == DEGRADED:
            self.degraded_s += seconds
        elif code == DOWN:
            self.down_s += seconds


def availability(rows: list[SystemBucket]) -> float | None:
    """Share of known, non-maintenance time the system was usable (OK or degraded)."""
    up = sum(r.ok_s + r.degraded_s for r in rows)
    total = up + sum(r.down_s for r in rows)
    return None if total <= 0 else up / total
