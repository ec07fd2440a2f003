"""The once-a-second staleness scans (SPEC 9) without a Python step per check.

Housekeeping asks every second which probed checks have no fresh result: to mark them
stale (`Daemon._mark_stale`) and for the self-watch (`Daemon._stale_checks`). Written as a
loop over the config, each asked a check's type, interval, ownership and state: ~2.8 µs a
check, 140 ms at 50,000 checks in one piece of the event loop every second (probes due
then start that late; bench/README.md "Update: loop stalls").

Here the checks are grouped once per config and ownership by what their bound depends on
(interval, timeout, the share lag), and each group is scanned with C-level iteration only:
the oldest `last_run` of the group and whether any of it is stale now. Only a group with a
check past its bound, or one to flip back, is walked in Python, by the same rule as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from operator import attrgetter, is_not
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.config.model import Config
    from monitor.probing.state import CheckState

_LAST_RUN = attrgetter("last_run")
_STALE = attrgetter("stale")
_NOT_NONE = partial(is_not, None)

Group = tuple[float, float, float, list[str]]
"""(interval, timeout, share lag, check ids in config order)."""
PIECE = 5000
"""Checks of one group scanned between two yields to the loop (~1 ms)."""


class StaleGroups:
    """Probed checks grouped by their staleness bound, rebuilt when the key changes."""

    def __init__(self, interval: float | None, timeout: float) -> None:
        self.interval = interval
        """For a check without an interval: None leaves it out, else the interval assumed."""
        self.timeout = timeout
        """The timeout assumed for a check without one."""
        self._key: tuple[Any, ...] | None = None
        self._groups: list[Group] = []
        self.pushed: list[Any] = []
        """Checks with pushed results (their own `expect_every`), for the self-watch."""

    def groups(self, key: tuple[Any, ...], config: Config,
               wanted: Callable[[Any], bool],
               share_lag: Callable[[str, float], float]) -> list[Group]:
        """The groups for `key` (compared by identity: a config, an ownership set, a flag)."""
        if self._key is not None and len(key) == len(self._key) and all(
                a is b for a, b in zip(key, self._key, strict=True)):
            return self._groups
        by_bound: dict[tuple[float, float, float], list[str]] = {}
        pushed = []
        for check in config.checks:
            if check.pushed:
                pushed.append(check)
                continue
            interval = check.interval if self.interval is None else (
                check.interval or self.interval)
            if interval is None or not wanted(check):
                continue
            lag = share_lag(check.id, interval)
            by_bound.setdefault((interval, check.timeout or self.timeout, lag), []).append(
                check.id)
        self._groups = [(i, t, lag, ids[start:start + PIECE])
                        for (i, t, lag), ids in by_bound.items()
                        for start in range(0, len(ids), PIECE)]
        self.pushed = pushed
        self._key = key
        return self._groups


def present(states: dict[str, CheckState], ids: Iterable[str]) -> list[CheckState]:
    """The states of `ids` that exist (C-level: no Python frame per check)."""
    return list(filter(None, map(states.get, ids)))


def oldest_run(group: list[CheckState]) -> tuple[float | None, bool]:
    """The oldest `last_run` among checks that ran (None: none ran), and whether any of
    `group` never ran."""
    runs = list(map(_LAST_RUN, group))
    if not runs.count(None):
        return min(runs, default=None), False
    return min(filter(_NOT_NONE, runs), default=None), True


def any_stale(group: list[CheckState]) -> bool:
    return any(map(_STALE, group))
