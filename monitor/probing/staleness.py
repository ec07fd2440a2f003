"""When a check's last result is too old to trust (SPEC 9: "nothing goes silent")."""

from __future__ import annotations

from checks.base import CheckBase


def stale_after(check: CheckBase) -> float:
    """`max(3 × interval, interval + timeout + 10 s)`: three missed runs, or one run that
    could not have finished, whichever is longer."""
    interval = float(check.interval or 30.0)
    timeout = float(check.timeout or 5.0)
    return max(3 * interval, interval + timeout + 10.0)
