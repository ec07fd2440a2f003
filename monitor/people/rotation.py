"""Who is on duty: pure functions of a rotation and a moment (SPEC §13.1).

Times are POSIX seconds and `every` is elapsed time, so a rotation never shifts at a
daylight-saving change and a restarted daemon computes exactly what the one before it did:
nothing about a rotation is kept in memory or in the store.

- Member k is on duty from `start + k × every` for one period, round-robin.
- Before `start` the first member is on duty.
- An override replaces whoever is on duty while it lasts.
- `next` (the backup) is the member after the rotation's current one, also during an
  override: the override stands in for one person, it does not move the rotation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from monitor.people.model import Schedule


@dataclass(frozen=True, slots=True)
class Cover:
    person: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Rotation:
    start: float
    every: float
    members: tuple[str, ...]
    overrides: tuple[Cover, ...] = ()

    @classmethod
    def of(cls, schedule: Schedule) -> Rotation:
        return cls(schedule.start.timestamp(), schedule.every, tuple(schedule.members),
                   tuple(Cover(o.person, o.start.timestamp(), o.end.timestamp())
                         for o in schedule.overrides))


@dataclass(frozen=True, slots=True)
class Duty:
    person: str
    """Who is on duty at the moment asked about (the override's person during one)."""
    until: float
    """When the next handover happens (the end of this period or of the override)."""
    next: str
    """The backup: the rotation member after the current one."""
    member: str
    """Whom the rotation itself puts on duty (differs from `person` during an override)."""
    override: bool = False


def period(rotation: Rotation, at: float) -> int:
    """Index of the rotation period holding `at`; 0 before `start`."""
    k = math.floor((at - rotation.start) / rotation.every)
    if rotation.start + (k + 1) * rotation.every <= at:  # float rounding at a boundary
        k += 1
    return max(0, k)


def _override_at(rotation: Rotation, at: float) -> Cover | None:
    return next((o for o in rotation.overrides if o.start <= at < o.end), None)


def on_duty(rotation: Rotation, at: float) -> Duty:
    if not rotation.members:
        raise ValueError("a rotation needs members")
    k = period(rotation, at)
    count = len(rotation.members)
    member = rotation.members[k % count]
    backup = rotation.members[(k + 1) % count]
    boundary = rotation.start + (k + 1) * rotation.every
    cover = _override_at(rotation, at)
    if cover is not None:
        return Duty(cover.person, cover.end, backup, member, override=True)
    upcoming = [o.start for o in rotation.overrides if at < o.start < boundary]
    return Duty(member, min([boundary, *upcoming]), backup, member)


@dataclass(frozen=True, slots=True)
class Handover:
    at: float
    person: str
    override: bool


def handovers(rotation: Rotation, since: float, until: float, limit: int = 500) -> list[Handover]:
    """Each change of who is on duty in (since, until], in order (for `hismon oncall`)."""
    found: list[Handover] = []
    current = on_duty(rotation, since)
    at = current.until
    while at <= until and len(found) < limit:
        duty = on_duty(rotation, at)
        if duty.person != current.person or duty.override != current.override:
            found.append(Handover(at, duty.person, duty.override))
        current = duty
        at = duty.until
    return found
