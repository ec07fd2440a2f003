"""A cap on the probes in flight, so that probing never takes hismon's own last descriptors.

Under load (a loop behind its schedule, slow targets) probes used to pile up until the process
was out of file descriptors: "Too many open files", UNKNOWN own-fault results, a store that
could not open its files. The cap comes from the descriptor limit (`probe_budget` in
monitor/core/exhaustion.py). A probe that finds it reached waits its turn, first come first
served; its lag is measured when it starts, and its own timeout starts only then, so waiting
shows as lag and missed runs (the ticker never starts a job while its last run still waits),
never as a timeout. Under the cap taking a slot is a comparison and an increment: no task, no
future, no timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import deque


class ProbeSlots:
    __slots__ = ("_waiters", "in_flight", "limit")

    def __init__(self, limit: int = sys.maxsize) -> None:
        self.limit = limit
        """Probes allowed in flight at once (`hismon_probes_in_flight_limit`)."""
        self.in_flight = 0
        """Probes running now, not counting those waiting (`hismon_probes_in_flight`)."""
        self._waiters: deque[asyncio.Future[None]] = deque()

    def set_limit(self, limit: int) -> None:
        """A new cap; a higher one lets waiting probes start now."""
        self.limit = limit
        while self.in_flight < limit and self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                self.in_flight += 1
                future.set_result(None)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def take(self) -> bool:
        """Take a slot if one is free and nobody waits for one; False: `await wait()`."""
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return True
        return False

    async def wait(self) -> None:
        """Wait for a slot, after those already waiting; it is ours when this returns."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed over just before the cancel: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(future)
            raise

    def release(self) -> None:
        """Give a slot back: to the first waiter (it stays counted), or free it."""
        if self.in_flight <= self.limit:
            waiters = self._waiters
            while waiters:
                future = waiters.popleft()
                if not future.done():
                    future.set_result(None)
                    return
        self.in_flight -= 1
