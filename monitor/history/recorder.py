"""Per-probe history in memory: fold each result into its check's current 5-minute bucket.

This runs once per probe, so it does a dict lookup and a few comparisons and nothing else:
no I/O, no allocation after a check's first probe in a bucket. Finished buckets are handed
to `monitor.history.service`, which writes them once per bucket (bench/history.py measures
both at 10,000 checks).
"""

from __future__ import annotations

from typing import Any

from monitor.core.result import State
from monitor.history.model import (
    BUCKET_SECONDS,
    DEGRADED,
    DOWN,
    OK,
    CheckBucket,
    SystemWorst,
    check_shares,
)
from monitor.probing.state import CheckState

_CRIT = State.CRIT
_OK = State.OK
def code_of(cs: CheckState) -> int:
    """down: a hard CRIT; degraded: hard WARN/UNKNOWN, or unstable/flapping; else ok."""
    hard = cs.hard_state
    if hard is _CRIT:
        return DOWN
    if hard is not _OK or cs.flapping or cs.unstable:
        return DEGRADED
    return OK


class HistoryRecorder:
    """The current bucket of every check this instance probes, plus finished unsaved ones."""

    __slots__ = ("_current", "_done", "_end", "_last", "_start", "bucket")

    def __init__(self, bucket: float = BUCKET_SECONDS) -> None:
        self.bucket = bucket
        self._start = self._end = -1.0
        # check id → [worst, n, min, sum, max, system, last probe at, its code, down_s,
        # bad_s, seen_s]: a list is the cheapest mutable row. The time from one probe to the
        # next is counted in the state the first one found.
        self._current: dict[str, list[Any]] = {}
        self._done: dict[float, dict[str, list[Any]]] = {}
        self._last: dict[str, list[Any]] = {}
        """Each check's latest row: a bucket's first probe counts the time since the last
        probe of the bucket before."""

    def observe(self, cs: CheckState, latency: float, now: float) -> None:
        """Fold one probe (its check's state after the result, its latency) into the bucket."""
        if not self._start <= now < self._end:
            self._roll(now - now % self.bucket)
        hard = cs.hard_state
        if hard is _CRIT:
            code = DOWN
        elif hard is _OK and not cs.flapping and not cs.unstable:
            code = OK
        else:
            code = DEGRADED
        row = self._current.get(cs.check_id)
        if row is None:
            row = [code, 1, latency, latency, latency, cs.system, now, code, 0.0, 0.0, 0.0]
            self._current[cs.check_id] = row
            before = self._last.get(cs.check_id)
            self._last[cs.check_id] = row
            if before is None:
                return
            last_at, last_code = before[6], before[7]
            if 0.0 < now - last_at <= self.bucket:  # count only this bucket's part of it
                last_at = max(last_at, self._start)
        else:
            if code > row[0]:
                row[0] = code
            row[1] += 1
            if latency < row[2]:
                row[2] = latency
            elif latency > row[4]:
                row[4] = latency
            row[3] += latency
            last_at, last_code = row[6], row[7]
            row[6], row[7] = now, code
        gap = now - last_at
        if 0.0 < gap <= self.bucket:  # a longer gap (hismon was stopped) is not measured
            row[10] += gap
            if last_code:
                row[9] += gap
                if last_code == DOWN:
                    row[8] += gap

    def _roll(self, start: float) -> None:
        if self._current:
            if self._start > start:  # the clock went back: keep the rows, start afresh
                self._done.setdefault(self._start, {}).update(self._current)
            else:
                self._done[self._start] = self._current
        self._current = {}
        self._start, self._end = start, start + self.bucket

    def take_finished(self, now: float) -> list[CheckBucket]:
        """Buckets that ended before `now`: hand them over for writing, forget them here."""
        return [row for start, rows in self.take_finished_raw(now) for row in _rows(start, rows)]

    def take_finished_raw(self, now: float) -> list[tuple[float, dict[str, list[Any]]]]:
        """`take_finished` as (bucket start, rows by check id), oldest first, for a writer that
        turns them into `CheckBucket`s a batch at a time (`rows_of`)."""
        if self._current and now - now % self.bucket != self._start:
            self._roll(now - now % self.bucket)
        done, self._done = self._done, {}
        return sorted(done.items())

    def take_all(self) -> list[CheckBucket]:
        """Everything, the current bucket too: on shutdown, so a restart loses nothing."""
        rows = [row for start, part in sorted(self._done.items()) for row in _rows(start, part)]
        rows += _rows(self._start, self._current)
        self._done, self._current = {}, {}
        return rows

    def give_back(self, rows: list[CheckBucket]) -> None:
        """A write failed: keep the rows for the next attempt (merging with newer probes)."""
        for row in rows:
            part = self._current if row.start == self._start else self._done.setdefault(
                row.start, {})
            have = part.get(row.check_id)
            if have is None:
                # No last probe time: the next probe measures no gap back to this row.
                part[row.check_id] = _row(row, float("inf"), row.worst)
            else:
                merged = _bucket(row.start, row.check_id, have)
                merged.merge(row)
                have[:] = _row(merged, have[6], have[7])

    def unsaved(self, system: str | None = None) -> list[CheckBucket]:
        """Rows not yet in the store (finished and current), for readers that want `now`."""
        parts = [*sorted(self._done.items()), (self._start, self._current)]
        return [_bucket(start, check_id, row) for start, rows in parts
                for check_id, row in rows.items() if system is None or row[5] == system]

    def system_worst(self, system: str | None = None) -> list[SystemWorst]:
        """`Store.system_worst` of the unsaved buckets: what a roll-up of them needs."""
        worst: dict[tuple[str, float], list[Any]] = {}
        for start, rows in [*self._done.items(), (self._start, self._current)]:
            for row in rows.values():
                if system is None or row[5] == system:
                    key = (row[5], start)
                    down, bad = check_shares(row[0], row[8], row[9], row[10])
                    have = worst.get(key)
                    if have is None:
                        worst[key] = [row[0], down, bad]
                    else:
                        have[0], have[1], have[2] = (max(have[0], row[0]), max(have[1], down),
                                                     max(have[2], bad))
        return [(key[0], key[1], w[0], w[1], w[2]) for key, w in worst.items()]

    def forget(self, check_ids: set[str]) -> None:
        """Checks removed by a reload stop appearing in the current bucket."""
        for check_id in check_ids:
            self._current.pop(check_id, None)
            self._last.pop(check_id, None)


def _bucket(start: float, check_id: str, row: list[Any]) -> CheckBucket:
    return CheckBucket(check_id, row[5], start, row[0], row[1], row[2], row[3], row[4],
                       row[8], row[9], row[10])


def _row(bucket: CheckBucket, last_at: float, last_code: int) -> list[Any]:
    return [bucket.worst, bucket.n, bucket.lat_min, bucket.lat_sum, bucket.lat_max,
            bucket.system, last_at, last_code, bucket.down_s, bucket.bad_s, bucket.seen_s]


def _rows(start: float, rows: dict[str, list[Any]]) -> list[CheckBucket]:
    return [_bucket(start, check_id, row) for check_id, row in rows.items()]


def rows_of(start: float, items: list[tuple[str, list[Any]]]) -> list[CheckBucket]:
    """`CheckBucket`s of (check id, row) items of one bucket (a batch of `take_finished_raw`)."""
    return [_bucket(start, check_id, row) for check_id, row in items]
