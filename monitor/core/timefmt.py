"""Times as people and machines read them: RFC 3339 for payloads, site-local wall clock for
messages and pages. One home, so a ward notice and the status page never disagree."""

from __future__ import annotations

import datetime as dt
from typing import overload


@overload
def iso(ts: float, tz: dt.tzinfo | None = None) -> str: ...
@overload
def iso(ts: None, tz: dt.tzinfo | None = None) -> None: ...
@overload
def iso(ts: float | None, tz: dt.tzinfo | None = None) -> str | None: ...


def iso(ts: float | None, tz: dt.tzinfo | None = None) -> str | None:
    """RFC 3339 with the site's offset (UTC without one), as the webhook payload shows times."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, tz or dt.UTC).isoformat(timespec="seconds")


@overload
def local_time(ts: float, tz: dt.tzinfo, seconds: bool = False) -> str: ...
@overload
def local_time(ts: None, tz: dt.tzinfo, seconds: bool = False) -> None: ...
@overload
def local_time(ts: float | None, tz: dt.tzinfo, seconds: bool = False) -> str | None: ...


def local_time(ts: float | None, tz: dt.tzinfo, seconds: bool = False) -> str | None:
    """Site-local wall-clock time, `2026-11-20 08:05`: what a nurse compares with the clock
    on the ward wall. Seconds only where they matter (the page's "updated" line)."""
    if ts is None:
        return None
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return dt.datetime.fromtimestamp(ts, tz).strftime(fmt)
