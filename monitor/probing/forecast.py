"""Forecasts (SPEC 15, after Zabbix `timeleft`): WARN hours before a number reaches CRIT.

A tablespace at 81% is fine today; at 2.1%/h it is full at 14:30. A check's `forecast`
block names one of its numbers; every probe that yields it adds a sample (at most one per
interval, and at most `MAX_SAMPLES` over the window, so the store stays bounded). When at
least `MIN_SAMPLES` samples span at least half the window, a least-squares line through
them says when the number reaches the check's own CRIT threshold; within `warn_within` an
otherwise OK result becomes WARN with the rate and the predicted time:

    tablespace 81% rising 2.1%/h: reaches CRIT 90% at 14:30 (in 4h17m)

Samples are written to the store (`add_samples`) by the daemon's housekeeping and read
back at start (`load`), so a restart keeps the trend. Judging is a pure function of the
samples and `now` (the scheduler's injectable clock).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections import deque
from collections.abc import Iterable, Sequence

from checks.base import CheckBase, ForecastConfig
from monitor.core.result import Result, State
from monitor.core.types import Cause

MIN_SAMPLES = 10
MAX_SAMPLES = 1000
"""Per check over its window: a 7-day window at 30 s keeps one sample every ten minutes."""
MAX_PENDING = 50_000
"""Samples waiting for the store; beyond this (store down for long) the oldest are dropped."""


@dataclasses.dataclass(frozen=True, slots=True)
class Projection:
    """Where the line says the number goes: rate per second and seconds until CRIT."""

    rate: float
    seconds_to_crit: float | None


def fit(samples: Sequence[tuple[float, float]], now: float) -> tuple[float, float]:
    """Least squares `value = slope * (t - now) + level`: (slope per second, level at now)."""
    n = len(samples)
    mean_t = sum(t - now for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - now - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0, mean_v
    slope = sum((t - now - mean_t) * (v - mean_v) for t, v in samples) / var
    return slope, mean_v - slope * mean_t


def project(samples: Sequence[tuple[float, float]], now: float, crit: float,
            upwards: bool) -> Projection:
    slope, level = fit(samples, now)
    toward = slope > 0 if upwards else slope < 0
    if not toward:
        return Projection(slope, None)
    return Projection(slope, max((crit - level) / slope, 0.0))


class Forecasts:
    """The samples and forecasts of every check with a `forecast` block."""

    def __init__(self, tz: dt.tzinfo | None = None) -> None:
        self.tz = tz or dt.UTC
        self._configs: dict[str, tuple[ForecastConfig, float]] = {}
        self._samples: dict[str, deque[tuple[float, float]]] = {}
        self._pending: list[tuple[str, float, float]] = []

    def apply_config(self, checks: Iterable[CheckBase], tz: dt.tzinfo | None = None) -> None:
        """Track the checks that have a forecast; a changed number or window starts afresh."""
        if tz is not None:
            self.tz = tz
        wanted: dict[str, tuple[ForecastConfig, float]] = {}
        for check in checks:
            if check.forecast is None:
                continue
            spacing = max(float(check.interval or 0.0), check.forecast.window / MAX_SAMPLES)
            wanted[check.id] = (check.forecast, spacing)
            old = self._configs.get(check.id)
            if old is not None and (old[0].number, old[0].window) != (
                    check.forecast.number, check.forecast.window):
                self._samples.pop(check.id, None)
        self._configs = wanted
        for check_id in [c for c in self._samples if c not in wanted]:
            del self._samples[check_id]

    def load(self, saved: dict[str, list[tuple[float, float]]]) -> None:
        """Samples read back from the store at start (before `apply_config`, which drops the
        samples of checks without a forecast)."""
        for check_id, rows in saved.items():
            self._samples[check_id] = deque(sorted(rows), maxlen=MAX_SAMPLES)

    def samples(self, check_id: str) -> list[tuple[float, float]]:
        return list(self._samples.get(check_id, ()))

    def observe(self, check: CheckBase, result: Result, now: float) -> Result:
        """Record the result's number and, if the line reaches CRIT soon, warn."""
        entry = self._configs.get(check.id)
        if entry is None:
            return result
        config, spacing = entry
        value = result.numbers.get(config.number)
        if value is None or not math.isfinite(value) or result.state is State.UNKNOWN:
            return result
        samples = self._samples.setdefault(check.id, deque(maxlen=MAX_SAMPLES))
        if not samples or now - samples[-1][0] >= spacing * 0.9:  # one per interval at most
            samples.append((now, value))
            self._pending.append((check.id, now, value))
            if len(self._pending) > MAX_PENDING:
                del self._pending[:len(self._pending) - MAX_PENDING]
        while samples and samples[0][0] < now - config.window:
            samples.popleft()
        if result.state not in (State.OK, State.WARN):
            return result
        return self._judge(check, config, result, list(samples), value, now)

    def _judge(self, check: CheckBase, config: ForecastConfig, result: Result,
               samples: list[tuple[float, float]], value: float, now: float) -> Result:
        limit = check.crit_limit(config.number)
        if limit is None or len(samples) < MIN_SAMPLES or \
                samples[-1][0] - samples[0][0] < config.window / 2:
            return result
        crit, upwards = limit
        projection = project(samples, now, crit, upwards)
        if projection.seconds_to_crit is None or projection.seconds_to_crit > config.warn_within:
            return result
        text = self.describe(check, config, value, crit, projection, now)
        numbers = {**result.numbers, "forecast_seconds_to_crit": projection.seconds_to_crit}
        if result.state is State.WARN:
            return dataclasses.replace(result, message=f"{result.message}; {text}",
                                       numbers=numbers)
        return dataclasses.replace(result, state=State.WARN, message=text, numbers=numbers,
                                   cause=result.cause or Cause.CAPACITY)

    def describe(self, check: CheckBase, config: ForecastConfig, value: float, crit: float,
                 projection: Projection, now: float) -> str:
        label = config.label or check.name or config.number
        unit = config.unit if config.unit is not None else (
            "s" if config.number.endswith("_seconds") else "")
        rate = projection.rate * 3600
        word = "rising" if rate > 0 else "falling"
        seconds = projection.seconds_to_crit or 0.0
        when = dt.datetime.fromtimestamp(now + seconds, self.tz)
        today = dt.datetime.fromtimestamp(now, self.tz).date()
        at = when.strftime("%H:%M") if when.date() == today else when.strftime("%m-%d %H:%M")
        return (f"{label} {figure(value)}{unit} {word} {figure(abs(rate))}{unit}/h: "
                f"reaches CRIT {figure(crit)}{unit} at {at} (in {until(seconds)})")

    def take_pending(self) -> tuple[list[tuple[str, float, float]], dict[str, float]]:
        """New samples for the store, and the oldest time each forecast check still needs."""
        rows, self._pending = self._pending, []
        newest = max((at for _, at, _ in rows), default=None)
        keep: dict[str, float] = {}
        for check_id, (config, _) in self._configs.items():
            samples = self._samples.get(check_id)
            reference = samples[-1][0] if samples else newest
            keep[check_id] = (reference or 0.0) - config.window
        return rows, keep

    def put_back(self, rows: list[tuple[str, float, float]]) -> None:
        """Samples the store could not take: tried again with the next ones."""
        self._pending[:0] = rows
        if len(self._pending) > MAX_PENDING:
            del self._pending[:len(self._pending) - MAX_PENDING]


def figure(x: float) -> str:
    """Three significant digits without an exponent: 81, 2.1, 0.0123, 12345."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    digits = max(0, 2 - math.floor(math.log10(abs(x))))
    text = f"{x:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def until(seconds: float) -> str:
    """`45m`, `1h40m`, `2h`, `1d3h`: how long until the predicted time."""
    minutes = max(round(seconds / 60), 0)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"
