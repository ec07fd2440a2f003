"""Passive check: another tool pushes the results (SPEC §15); hismon only judges freshness.

For what hismon cannot probe itself but something else already watches: a Zabbix trigger,
a vendor's own monitor, a script on the PACS server, an existing Prometheus rule (through
the Alertmanager receiver). Results arrive at `POST /api/v1/checks/{id}/result` (or from
`POST /api/v1/alertmanager`) and go through confirm/recover like probed ones; both default
to 1 here, because the pushing tool has usually confirmed the problem already.

The schedule does not probe a passive check: it only asks `overdue()` whether results
stopped coming. With `expect_every` (+ `grace`), no result in time is UNKNOWN "no result
since T" (the other tool may be fine, hismon just cannot tell), or CRIT with `stale: crit`
for a source whose silence is itself the alarm. The time of the last result is kept with the
heartbeats (`ctx.heartbeats`, persisted in the store), so a restart keeps the reference.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar, Literal

from pydantic import Field, PositiveInt, model_validator

from checks.base import CheckBase, ProbeContext
from checks.heartbeat import span
from monitor.core.durations import Duration
from monitor.core.result import Result, State
from monitor.core.timefmt import local_time
from monitor.core.types import Cause


class PassiveCheck(CheckBase):
    type: Literal["passive"]
    token: str | None = None
    """Pushes must carry `Authorization: Bearer <token>`; without it, a `server.api_tokens`
    token (never unauthenticated: a pushed CRIT sends wards to paper)."""
    expect_every: Duration | None = Field(default=None, gt=0)
    """How often the pushing tool sends a result; unset: silence is never judged."""
    grace: Duration | None = Field(default=None, ge=0)
    """Lateness tolerated after `expect_every`; default a tenth of it, at least 1 minute."""
    stale: Literal["unknown", "crit"] = "unknown"
    """The state when results stop coming."""
    confirm: PositiveInt | None = 1
    recover: PositiveInt | None = 1

    secret_fields = ("token",)
    pushed: ClassVar[bool] = True

    @model_validator(mode="after")
    def _grace_needs_a_period(self) -> PassiveCheck:
        if self.grace is not None and self.expect_every is None:
            raise ValueError("grace needs expect_every")
        return self

    @property
    def grace_seconds(self) -> float:
        if self.grace is not None:
            return self.grace
        return max(60.0, (self.expect_every or 0.0) / 10)

    def overdue(self, ctx: ProbeContext, now: float, tz: dt.tzinfo | None = None) -> Result | None:
        """The stale result when nothing was pushed within `expect_every + grace`, else None.

        Before the first result, hismon's start is the reference (a source that never sent
        anything is noticed too, one period after start).
        """
        if self.expect_every is None:
            return None
        last = ctx.heartbeats.get(self.id)
        reference = last if last is not None else ctx.app_state.get("started_at")
        if reference is None:
            return None
        reference = float(reference)
        if now - reference <= self.expect_every + self.grace_seconds:
            return None
        text = local_time(reference, tz or dt.UTC) if now - reference >= 86400 else \
            dt.datetime.fromtimestamp(reference, tz or dt.UTC).strftime("%H:%M:%S")
        since = f"since {text}" if last is not None else f"since hismon started at {text}"
        message = (f"no result {since} ({span(now - reference)} ago; expected every "
                   f"{span(self.expect_every)} + {span(self.grace_seconds)} grace)")
        state = State.CRIT if self.stale == "crit" else State.UNKNOWN
        return Result(state, message, numbers={"last_result_age_seconds": now - reference},
                      cause=Cause.APPLICATION if state is State.CRIT else None)

    async def probe(self, ctx: ProbeContext) -> Result:
        """`hismon probe` of a passive check: whether results are still coming."""
        import time

        stale = self.overdue(ctx, time.time())
        if stale is not None:
            return stale
        last = ctx.heartbeats.get(self.id)
        if last is None:
            return Result(State.OK, "results are pushed to hismon; none received yet")
        return Result(State.OK, f"last result pushed {span(time.time() - last)} ago")
