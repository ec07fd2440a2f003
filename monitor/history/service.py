"""Writing history: once per bucket, never per probe.

Every instance writes the finished buckets of the checks it probes (rows for the same
check and bucket merge, so two instances or a restart add up). The leader then rolls the
check buckets of settled buckets (one bucket of grace for the other instances' writes)
into system rows, moving a marker in the same transaction, so no bucket is counted twice
across restarts or leader changes; and prunes what is older than its retention.
A failed write keeps the rows in memory for the next attempt: a store that is briefly
away loses no history, and probing never waits on it.
"""

from __future__ import annotations

import asyncio

import structlog

from monitor.history.model import RETENTION
from monitor.history.recorder import rows_of
from monitor.history.rollup import maintenance_pairs, system_rows
from monitor.history.wiring import HistoryWiring

log = structlog.get_logger("hismon.history")
BATCH = 5000
"""Check buckets written in one transaction (a few ms of the loop to build)."""


class HistoryService(HistoryWiring):
    _next = 0.0
    """When the current bucket ends: `tick` does nothing before."""

    async def tick(self, now: float, leading: bool) -> None:
        """Called every second; does work only when a bucket has ended."""
        if now < self._next:
            return
        self._next = now - now % self.bucket + self.bucket
        await self.flush(now)
        if leading:
            await self.rollup(now)
            await self.store.prune_history(
                {kind: now - keep for kind, keep in RETENTION.items()})

    async def flush(self, now: float) -> int:
        """Write the finished buckets, `BATCH` rows a transaction: at 50,000 checks the rows
        built at once were ~165 ms of the loop in one piece (and the store's parameter list
        as much again); a failed batch and those after it are kept for the next attempt,
        those written are not written twice (rows merge in the store)."""
        parts = [(start, list(rows.items()))
                 for start, rows in self.recorder.take_finished_raw(now)]
        batches = [(start, items[i:i + BATCH]) for start, items in parts
                   for i in range(0, len(items), BATCH)]
        written = 0
        for index, (start, items) in enumerate(batches):
            rows = rows_of(start, items)
            try:
                await self.store.save_check_buckets(rows)
            except BaseException:  # an error, or a timeout cancelling the write
                keep = [r for b_start, b_items in batches[index:]
                        for r in rows_of(b_start, b_items)
                        if r.start >= now - RETENTION["check"]]
                self.recorder.give_back(keep)
                raise
            written += len(rows)
            await asyncio.sleep(0)
        return written

    async def flush_all(self) -> None:
        """On shutdown: the current, unfinished bucket too (the next start adds to it)."""
        rows = self.recorder.take_all()
        if rows:
            await self.store.save_check_buckets(rows)

    async def rollup(self, now: float) -> bool:
        """Fold settled check buckets into system rows; True if rows were added."""
        current = now - now % self.bucket
        until = current - self.bucket  # one bucket of grace for other instances' writes
        marker = await self.store.history_marker()
        since = max(marker if marker is not None else 0.0, until - RETENTION["check"])
        if since >= until:
            return False
        buckets = await self.store.system_worst(since, until)
        windows = self.windows(now)
        rows = system_rows(buckets, windows, self.tz(),
                           maintenance_pairs(windows, since, until, bucket=self.bucket),
                           self.bucket)
        done = await self.store.rollup_history(marker, until, rows)
        if done:
            log.debug("history_rolled_up", since=since, until=until, rows=len(rows))
        return done
