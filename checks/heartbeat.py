"""Heartbeat check: a job pings hismon, and silence is the alarm (dead man's switch).

For what no probe can see from outside: the nightly upload to the regional platform, the
insurance settlement batch, the backup. The job calls `POST /api/v1/heartbeat/{check_id}`
(with `Authorization: Bearer <token>` when `token` is set); the daemon's API records the
time in `ctx.heartbeats[check_id]`. This probe only reads it.

Before the first ping, the daemon's start (`ctx.app_state["started_at"]`) is the
reference, so a job that never ran at all is noticed too, one period after start.
Late but within `grace` is WARN (the early warning), beyond it CRIT.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field, PrivateAttr

from checks.base import CheckBase, ProbeContext
from monitor.core.durations import Duration
from monitor.core.result import Result, State
from monitor.core.types import Cause


class HeartbeatCheck(CheckBase):
    type: Literal["heartbeat"]
    expect_every: Duration = Field(gt=0)
    grace: Duration | None = Field(default=None, ge=0)
    """Lateness tolerated before CRIT; default a tenth of `expect_every`, at least 1 minute."""
    token: str | None = None
    """If set, pings must carry `Authorization: Bearer <token>`."""

    secret_fields = ("token",)
    _first_probe: float | None = PrivateAttr(default=None)

    @property
    def grace_seconds(self) -> float:
        if self.grace is not None:
            return self.grace
        return max(60.0, self.expect_every / 10)

    async def probe(self, ctx: ProbeContext) -> Result:
        now = time.time()
        if self._first_probe is None:
            self._first_probe = now
        last = ctx.heartbeats.get(self.id)
        if last is not None:
            return self.judge(now - last, pinged=True)
        started = ctx.app_state.get("started_at")
        if started is None:  # outside the daemon (`hismon probe`): since this check's first probe
            return self.judge(now - self._first_probe, pinged=False, since="first checked")
        return self.judge(now - float(started), pinged=False)

    def judge(self, age: float, pinged: bool, since: str = "hismon started") -> Result:
        """`age`: seconds since the last ping (or, before any, since the reference `since`)."""
        age = max(age, 0.0)
        numbers = {"last_ping_age_seconds": age}
        every, grace = self.expect_every, self.grace_seconds
        expected = f"expected every {span(every)} + {span(grace)} grace"
        if age <= every:
            text = f"last ping {span(age)} ago" if pinged else \
                f"waiting for the first ping ({since} {span(age)} ago, {expected})"
            return Result(State.OK, text, numbers=numbers)
        suffix = "" if pinged else f" since {since}"
        if age <= every + grace:
            return Result(State.WARN, f"ping late: none for {span(age)}{suffix} ({expected})",
                          numbers=numbers, cause=Cause.APPLICATION)
        return Result(State.CRIT, f"no ping for {span(age)}{suffix} ({expected})",
                      numbers=numbers, cause=Cause.APPLICATION)


def span(seconds: float) -> str:
    """Short human span: `45s`, `3m`, `26h`, `25h 30m`, `3d`."""
    seconds = round(seconds)
    if seconds >= 3600 and seconds % 3600 == 0 and seconds < 72 * 3600:
        return f"{seconds // 3600}h"
    if seconds < 90 and (seconds < 60 or seconds % 60):
        return f"{seconds}s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)}m"
    if seconds < 72 * 3600:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours}h" if minutes == 0 else f"{hours}h {minutes}m"
    days, rest = divmod(seconds, 86400)
    hours = round(rest / 3600)
    return f"{days}d" if hours == 0 else f"{days}d {hours}h"
