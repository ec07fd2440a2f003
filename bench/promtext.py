"""Just enough of the Prometheus text format for the benchmark, and histogram quantiles.

A full parser (prometheus_client.parser) takes about a second on a 10,000-check scrape and
would compete with the measured daemon for the machine's two cores; this reads only the
families the benchmark needs with plain string operations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Snapshot:
    lag_buckets: dict[float, float] = field(default_factory=dict)
    lag_sum: float = 0.0
    lag_count: float = 0.0
    probes: dict[str, float] = field(default_factory=dict)
    """hismon_probe_duration_seconds_count by check type."""
    probe_seconds: dict[str, float] = field(default_factory=dict)
    runs: dict[str, float] = field(default_factory=dict)
    """hismon_check_runs_total summed over checks, by result."""
    missed: float = 0.0
    checks: int = 0
    lines: int = 0
    size: int = 0

    def minus(self, old: Snapshot) -> Snapshot:
        def sub(a: dict, b: dict) -> dict:
            return {k: v - b.get(k, 0.0) for k, v in a.items()}

        return Snapshot(
            lag_buckets=sub(self.lag_buckets, old.lag_buckets),
            lag_sum=self.lag_sum - old.lag_sum,
            lag_count=self.lag_count - old.lag_count,
            probes=sub(self.probes, old.probes),
            probe_seconds=sub(self.probe_seconds, old.probe_seconds),
            runs=sub(self.runs, old.runs),
            missed=self.missed - old.missed,
            checks=self.checks,
        )

    @property
    def total_probes(self) -> float:
        return sum(self.probes.values())

    def lag_quantile(self, q: float) -> float:
        return histogram_quantile(q, self.lag_buckets)


def _label(line: str, name: str) -> str:
    key = f'{name}="'
    start = line.index(key) + len(key)
    return line[start:line.index('"', start)]


def _value(line: str) -> float:
    return float(line.rsplit(" ", 1)[1])


def parse(text: str) -> Snapshot:
    snap = Snapshot(size=len(text))
    for line in text.splitlines():
        snap.lines += 1
        if not line.startswith("hismon_"):
            continue
        if line.startswith("hismon_scheduler_lag_seconds_bucket"):
            le = _label(line, "le")
            snap.lag_buckets[math.inf if le == "+Inf" else float(le)] = _value(line)
        elif line.startswith("hismon_scheduler_lag_seconds_sum"):
            snap.lag_sum = _value(line)
        elif line.startswith("hismon_scheduler_lag_seconds_count"):
            snap.lag_count = _value(line)
        elif line.startswith("hismon_probe_duration_seconds_count"):
            snap.probes[_label(line, "type")] = _value(line)
        elif line.startswith("hismon_probe_duration_seconds_sum"):
            snap.probe_seconds[_label(line, "type")] = _value(line)
        elif line.startswith("hismon_check_runs_total"):
            result = _label(line, "result")
            snap.runs[result] = snap.runs.get(result, 0.0) + _value(line)
        elif line.startswith("hismon_check_missed_runs_total"):
            snap.missed += _value(line)
            snap.checks += 1
    return snap


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus' histogram_quantile on cumulative buckets: linear inside the bucket.

    Returns NaN without observations, and the largest finite bound when the quantile falls
    in the +Inf bucket (as Prometheus does).
    """
    bounds = sorted(buckets)
    if not bounds:
        return math.nan
    total = buckets[bounds[-1]]
    if total <= 0:
        return math.nan
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            in_bucket = count - below
            if in_bucket <= 0:
                return bound
            return lower + (bound - lower) * (rank - below) / in_bucket
        lower, below = bound, count
    return lower
