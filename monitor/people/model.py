"""Config keys `people` and `schedules` (SPEC §13.1).

Kept apart from `monitor/config/model.py` so the rotation math and its tests need nothing
but these small records. Cross-references (members, overrides, notifiers) are checked with
FILE:LINE in `monitor/people/validate.py`, before pydantic sees the document.
"""

from __future__ import annotations

import datetime as dt

from pydantic import Field, field_validator, model_validator

from monitor.core.durations import Duration
from monitor.core.strict import Strict

_ID = r"^[A-Za-z0-9_.:-]+$"


_Strict = Strict


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2026-11-30T08:30:00+08:00")
    return value


class Person(_Strict):
    id: str = Field(min_length=1, pattern=_ID)
    name: str = Field(min_length=1)
    mobile: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 -]{4,19}$")
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    notify: list[str] = Field(default_factory=list)
    """The notifiers that reach this person; each sends to the person's own address."""


class Override(_Strict):
    person: str
    start: dt.datetime
    end: dt.datetime

    _aware_times = field_validator("start", "end")(_aware)

    @model_validator(mode="after")
    def _ordered(self) -> Override:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Schedule(_Strict):
    id: str = Field(min_length=1, pattern=_ID)
    start: dt.datetime
    """The first handover: member 0 is on duty from here for one period."""
    every: Duration
    members: list[str] = Field(default_factory=list)
    overrides: list[Override] = Field(default_factory=list)

    _aware_start = field_validator("start")(_aware)

    @field_validator("every")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("`every` must be longer than 0s")
        return value
