"""Cluster membership (SPEC 9, `cluster: {shards: auto}`): who is alive, so checks can follow.

Every instance renews one row ``members(id, expires_at, last_seen, checks)`` in the shared
PostgreSQL store every TTL/3 (the same TTL as the leader lease) and reads back the live
rows. A member whose row ran out (by the database's clock) is dead for everyone at the same
moment; its checks move to the members ranked next for them (`monitor.cluster.assign`) at
the next heartbeat, so within TTL + TTL/3, and are probed at once. PostgreSQL stays the only
coordination service: nothing new to run for the hospital's IT.

A member that cannot reach the store keeps probing what it owned (it cannot know better)
and says so; the others take its checks over when its row runs out, so a check may be
probed twice for a while, never not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import structlog

from monitor.cluster import assign

log = structlog.get_logger("hismon.cluster")


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    checks: int
    last_seen: float


@runtime_checkable
class MemberStore(Protocol):
    """What membership needs of a store (PostgresStore has it)."""

    async def member_heartbeat(
        self, me: str, ttl: float, checks: int
    ) -> list[tuple[str, int, float]]: ...

    async def member_leave(self, me: str) -> None: ...


def default_member_id(listen: str) -> str:
    """HOSTNAME:PORT of `server.listen`: stable across restarts, distinct per instance."""
    port = listen.rpartition(":")[2]
    return f"{socket.gethostname()}:{port}"


class Membership:
    """This instance's view of the live members and of the checks it owns."""

    def __init__(
        self,
        store: MemberStore,
        me: str,
        ttl: float,
        checks: Callable[[], Iterable[tuple[str, int]]],
        on_change: Callable[[set[str]], None],
        period: float | None = None,
    ) -> None:
        """`checks()` gives (check id, replicas) for the running config; `on_change(owned)`
        is called with the new set of owned check ids whenever it changes.

        `period` (default TTL/3) is how often to beat; the daemon passes the shortest check
        interval when that is shorter, so a dead member's checks move within TTL + one
        interval (SPEC 9), not TTL + TTL/3.
        """
        self.store = store
        self.me = me
        self.ttl = ttl
        self.period = period
        self._checks = checks
        self._on_change = on_change
        self.members: list[Member] = []
        self.owned: set[str] = set()
        self.lost: set[str] = set()
        """Members seen alive earlier that are gone now (for `monitor_degraded`)."""
        self.last_error: str | None = None
        self._known: set[str] = set()
        self._assigned: tuple[list[str], list[tuple[str, int]]] | None = None
        """(live members, checks) that `owned` was computed from: a beat that changes
        neither does not hash every check again (~25 ms at 6,000 checks, every beat)."""

    @property
    def beat_every(self) -> float:
        period = self.ttl / 3 if self.period is None else min(self.period, self.ttl / 3)
        return max(period, 0.25)

    @property
    def member_ids(self) -> list[str]:
        return [m.id for m in self.members]

    def reassign(self) -> set[str]:
        """Recompute the owned checks from the live members (after a reload, too)."""
        basis = (self.member_ids, list(self._checks()))
        if basis == self._assigned:
            return self.owned
        owned = assign.owned_by(self.me, basis[1], basis[0])
        self._assigned = basis
        if owned != self.owned:
            moved_in, moved_out = owned - self.owned, self.owned - owned
            self.owned = owned
            log.info("cluster_checks_reassigned", member=self.me, owned=len(owned),
                     taken=len(moved_in), given=len(moved_out),
                     members=len(self.members))
            self._on_change(owned)
        return owned

    async def beat(self) -> None:
        """One heartbeat: renew our row, read the live members, reassign if they changed."""
        try:
            async with asyncio.timeout(max(self.ttl / 3, 1.0)):
                rows = await self.store.member_heartbeat(self.me, self.ttl, len(self.owned))
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("cluster_heartbeat_failed", member=self.me, error=self.last_error)
            return
        self.last_error = None
        self.members = [Member(*row) for row in rows]
        ids = set(self.member_ids)
        gone = self._known - ids
        if gone:
            log.warning("cluster_member_lost", member=self.me, lost=sorted(gone))
        joined = ids - self._known
        if joined and self._known:
            log.info("cluster_member_joined", member=self.me, joined=sorted(joined))
        self.lost = (self.lost | gone) - ids
        self._known = ids
        self.reassign()

    async def run(self, stop: asyncio.Event, clock: Callable[[], float] = time.monotonic) -> None:
        """Heartbeat every `beat_every` s until `stop`; then leave, so the others take over
        at once."""
        try:
            while not stop.is_set():
                await self.beat()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.beat_every)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self.store.member_leave(self.me)
