"""Early warning from a check's own history (the `trend` block of SPEC §3).

A HIS that will fall over at 10:00 is usually slower at 09:30 and drops the odd request
at 09:45, long before any fixed threshold is crossed. A `TrendTracker` remembers one
check's recent probes and turns an otherwise OK result into WARN when

* the mean latency of the last `window` answered probes exceeds `latency_factor` x the
  median latency of the `baseline` answered probes before them, or
* more than `failure_ratio` of the last `window` probes failed (CRIT or UNKNOWN).

It is pure (no clock, no I/O): feed it results, it returns results.

How the daemon uses it (one tracker per check that has a `trend` block)::

    from monitor.probing.trend import TrendTracker

    trackers: dict[str, TrendTracker] = {}

    # after every probe of `check`, before the result enters the state machine:
    if check.trend is not None:
        tracker = trackers.get(check.id)
        if tracker is None or tracker.config != check.trend:   # new, or changed on reload
            tracker = trackers[check.id] = TrendTracker(check.trend)
        result = tracker.observe(result)          # latency: numbers["latency_seconds"]

`observe` never changes a result that is already WARN, CRIT or UNKNOWN, and never mutates
its argument; a degraded result is a copy with state WARN, the reason appended to the
message and a `cause`. Latency warnings start only once `baseline + window` answered
probes were seen (the baseline must exist first); failure-ratio warnings once `window`
probes were seen. While the window is slow its samples are kept out of the baseline, so
the warning stays up as long as the slowdown lasts; after about 1.5 x `baseline` slow
probes the new level is accepted as normal: the trend warns about change, fixed `latency`
thresholds about limits.
Rebuilding a tracker (e.g. on a config change) starts its history afresh.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import Counter, deque

from checks.base import TrendConfig
from monitor.core.durations import format_duration
from monitor.core.result import Result, State
from monitor.core.types import Cause

MIN_SLOWDOWN = 0.005
"""Seconds the window mean must exceed the baseline by, whatever the factor says: on a
0.3 ms loopback baseline, 3x is scheduler jitter, not a degrading system."""

_ANSWERED = (State.OK, State.WARN)


class TrendTracker:
    """The recent history of one check, and the judgement drawn from it."""

    def __init__(self, config: TrendConfig) -> None:
        self.config = config
        self._baseline: deque[float] = deque(maxlen=config.baseline)
        self._window: deque[float] = deque(maxlen=config.window)
        self._held = 0  # window samples kept out of the baseline while the trend fires
        self._outcomes: deque[tuple[bool, Cause | None]] = deque(maxlen=config.window)

    def observe(self, result: Result, latency: float | None = None) -> Result:
        """Record one probe; return it unchanged, or degraded to WARN with the reason.

        `latency` defaults to `result.numbers["latency_seconds"]`, else `result.duration`.
        Only answered probes (OK, WARN) feed the latency history: a timeout's duration says
        nothing about how fast the system answers.
        """
        failed = result.state not in _ANSWERED
        self._outcomes.append((failed, result.cause if failed else None))
        if not failed:
            if latency is None:
                latency = result.numbers.get("latency_seconds", result.duration)
            self._add_latency(float(latency))
        if result.state is not State.OK:
            return result
        reason, cause = self._latency_trend() or self._failure_trend() or (None, None)
        if reason is None:
            return result
        return dataclasses.replace(
            result,
            state=State.WARN,
            message=f"{result.message}; trend: {reason}",
            numbers=dict(result.numbers),
            cause=cause,
        )

    @property
    def baseline_median(self) -> float | None:
        """Median latency of the baseline, once it has enough samples (for API/metrics)."""
        if len(self._baseline) < self.config.baseline:
            return None
        return statistics.median(self._baseline)

    def _add_latency(self, latency: float) -> None:
        """Slide the window; what leaves it joins the baseline, unless the window is slow.

        Holding slow samples back keeps the warning up while the system stays slow, instead
        of the baseline quietly absorbing the slowdown; after `baseline` held samples the
        new level is accepted as normal (about 1.5 x `baseline` probes of warning in all).
        """
        if len(self._window) == self._window.maxlen:
            leaving = self._window[0]
            if self._slowdown() is not None and self._held < self.config.baseline:
                self._held += 1
            else:
                self._baseline.append(leaving)
                if self._slowdown() is None:
                    self._held = 0
        self._window.append(latency)

    def _slowdown(self) -> tuple[float, float] | None:
        """(window mean, baseline median) when the window is slower than the trend allows."""
        factor = self.config.latency_factor
        usual = self.baseline_median
        if factor is None or usual is None or len(self._window) < self.config.window:
            return None
        mean = statistics.fmean(self._window)
        if mean <= factor * usual or mean - usual < MIN_SLOWDOWN:
            return None
        return mean, usual

    def _latency_trend(self) -> tuple[str, Cause | None] | None:
        slow = self._slowdown()
        if slow is None:
            return None
        mean, usual = slow
        ratio = mean / usual if usual > 0 else float("inf")
        return (f"mean latency {format_duration(mean)} over the last {len(self._window)} "
                f"probes is {ratio:.1f}x the usual {format_duration(usual)}", Cause.LATENCY)

    def _failure_trend(self) -> tuple[str, Cause | None] | None:
        limit = self.config.failure_ratio
        window = self.config.window
        if limit is None or len(self._outcomes) < window:
            return None
        causes = [cause for failed, cause in self._outcomes if failed]
        ratio = len(causes) / window
        if ratio <= limit:
            return None
        known = Counter(c for c in causes if c)
        cause = known.most_common(1)[0][0] if known else None
        return (f"{len(causes)} of the last {window} probes failed "
                f"({ratio:.0%} > {limit:.0%})", cause)
