"""Leader election (SPEC §9): all instances probe, exactly one runs incidents and the outbox.

With ``state.url: postgresql://...`` several instances share one store. The leader is the
holder of a *lease*: one row ``leader(name, holder, expires_at)`` in that database, taken
or renewed by a single statement that succeeds only when the row is ours or has expired
(``... ON CONFLICT DO UPDATE ... WHERE holder = me OR expires_at < now()``). On SQLite
there is only ever one instance, so it is always the leader.

Why a lease and not ``pg_try_advisory_lock`` on a dedicated connection:

- An advisory lock lives exactly as long as its session. A connection blip (a restarted
  pgbouncer, a NAT timeout, ``pg_terminate_backend``) ends the session and drops the lock
  at once, and the leadership flaps even though the leader is alive and would have been
  fine a second later. A lease survives any blip shorter than its TTL.
- Conversely, when a leader's machine dies without closing its TCP connection (power loss,
  a partition) the server may keep the dead session, and its lock, for the whole TCP
  keepalive time, often two hours by default. A lease runs out after its TTL, so the
  takeover time is something we choose (SPEC: within ``2 × interval``), not the kernel.
- A lease needs no connection pinned for the process's life (the store's small pool
  serves it like any other call), and the row shows an operator who leads and since when
  (``SELECT * FROM leader``).

Safety. Expiry is judged by the *database's* clock (``now()``), so clock skew between the
instances' machines cannot make two leaders. Locally, the leader counts its lease from the
moment it *sent* the renewal (before the database stamped it) on the monotonic clock, and
steps down at ``STEP_DOWN_FRACTION × ttl`` after that if it could not renew: it stops
before the database would let anyone else take over, with time left to stop its engine
and senders. What remains is at-least-once delivery for a message whose send was under
way at that moment; every message carries its ``idempotency_key`` for the receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, runtime_checkable

import structlog

from monitor.store.base import Store

log = structlog.get_logger("hismon.leader")

LEASE_NAME = "hismon"
MIN_TTL, MAX_TTL = 5.0, 60.0
TTL_PER_INTERVAL = 1.5
"""TTL = 1.5 × the shortest check interval: a follower takes over at most TTL after the
leader's last renewal, which leaves half an interval of SPEC §9's ``2 × interval`` for the
new leader to load the open incidents and start its engine."""
STEP_DOWN_FRACTION = 0.8
"""A leader that cannot renew stops leading at 0.8 × TTL after its last successful renewal
was sent: the remaining 0.2 × TTL (at least 1 s) is for stopping the engine and senders."""
FOLLOWER_SLACK = 0.05
"""A follower retries this long after the holder's lease runs out, by the database's clock."""


@runtime_checkable
class LeaseStore(Protocol):
    """What a store needs for a shared lease (PostgresStore has it; SQLite does not)."""

    async def acquire_lease(
        self, name: str, me: str, ttl: float
    ) -> tuple[str | None, float, int]:
        ...

    async def release_lease(self, name: str, me: str) -> bool: ...


def lease_ttl(intervals: Iterable[float]) -> float:
    """TTL for checks with these intervals: 1.5 × the shortest, within [5 s, 60 s].

    The floor keeps a busy or briefly slow database from costing the leadership; the
    ceiling keeps a takeover under a minute when every check is slow.
    """
    shortest = min((i for i in intervals if i and i > 0), default=MAX_TTL / TTL_PER_INTERVAL)
    return min(max(TTL_PER_INTERVAL * shortest, MIN_TTL), MAX_TTL)


def config_lease_ttl(config: Any) -> float:
    """`lease_ttl` over a loaded Config's checks (their intervals are filled from defaults)."""
    return lease_ttl(float(c.interval) for c in config.checks if c.interval)


def instance_id() -> str:
    """host:pid:random. The random part keeps two containers (both pid 1, maybe the same
    hostname) apart, and a restarted process from inheriting its predecessor's lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Leadership:
    """This instance's view of who leads; call `acquire_or_renew` every `renew_every` s.

    `run()` is that loop with start/stop callbacks; the daemon may use it or drive
    `acquire_or_renew` itself.
    """

    def __init__(
        self,
        store: Store,
        ttl: float = 15.0,
        name: str = LEASE_NAME,
        me: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError("lease ttl must be positive")
        self.store = store
        self.ttl = ttl
        self.name = name
        self.me = me or instance_id()
        """This instance's id in the lease row."""
        self.holder: str | None = None
        """Who held the lease at the last successful call (this instance or another)."""
        self.since: float | None = None
        """The daemon's clock when this instance became leader; None while following."""
        self.last_error: str | None = None
        self.shared = isinstance(store, LeaseStore)
        """False on SQLite: a single instance, always the leader."""
        self.term = 0
        """The current holder's term (SPEC 9 fencing): grows at every change of holder."""
        self._monotonic = monotonic
        self._valid_until = float("-inf")
        self._holder_remaining = 0.0

    @property
    def renew_every(self) -> float:
        return self.ttl / 3

    @property
    def is_leader(self) -> bool:
        """True while the lease is ours and, locally, not too old to trust."""
        return self.holder == self.me and self._monotonic() < self._valid_until

    def next_call_in(self) -> float:
        """How long the caller may wait before the next `acquire_or_renew`.

        A leader renews every TTL/3 but wakes by its step-down time at the latest (so it
        notices losing the lease on time). A follower also wakes just after the current
        holder's lease would run out, so a dead leader is replaced TTL after its last
        renewal, not up to TTL/3 later.
        """
        if self.is_leader:
            return max(0.0, min(self.renew_every, self._valid_until - self._monotonic()))
        if self.holder is not None and self.holder != self.me:
            return max(0.05, min(self.renew_every, self._holder_remaining + FOLLOWER_SLACK))
        return self.renew_every

    async def acquire_or_renew(self, now: float | None = None) -> bool:
        """Take the lease if free or expired, renew it if ours; True if we lead now.

        `now` is the daemon's (injectable) clock, kept in `since` for display only: the
        lease itself is judged by the database's clock and local monotonic time. A failed
        call (store unreachable) never raises: a leader stays leader until its local
        step-down time, so a blip shorter than that does not flap the leadership.
        """
        now = time.time() if now is None else now
        if not isinstance(self.store, LeaseStore):
            if self.holder != self.me:
                self.since = now
                self.term += 1
            self.holder, self._valid_until = self.me, float("inf")
            return True
        sent_at = self._monotonic()
        was_leader = self.is_leader
        try:
            # Bounded by the step-down margin: an answer arriving later is useless anyway.
            async with asyncio.timeout(max(self.renew_every, 1.0)):
                holder, remaining, term = await self.store.acquire_lease(
                    self.name, self.me, self.ttl)
        except Exception as exc:  # store down or slow: decide on what we already know
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("leader_lease_failed", error=self.last_error, leader=self.is_leader)
            if was_leader and not self.is_leader:
                log.warning("leadership_lost", me=self.me, reason="lease not renewed")
                self.since = None
            return self.is_leader
        self.last_error = None
        self.holder, self._holder_remaining, self.term = holder, max(remaining, 0.0), term
        if holder == self.me:
            self._valid_until = sent_at + STEP_DOWN_FRACTION * self.ttl
            if not was_leader:
                self.since = now
                log.info("leadership_acquired", me=self.me, ttl=self.ttl, term=term)
            return True
        self._valid_until = float("-inf")
        if was_leader:
            log.warning("leadership_lost", me=self.me, holder=holder)
        self.since = None
        return False

    async def release(self) -> None:
        """Stop leading and free the lease, so a follower takes over at once (clean stop).

        Call it after the engine and the outbox have stopped. Errors are logged, not
        raised: if the store is unreachable the lease simply runs out.
        """
        was = self.holder == self.me
        self._valid_until = float("-inf")
        self.since = None
        if not isinstance(self.store, LeaseStore):
            self.holder = None
            return
        if not was:
            return
        self.holder = None
        try:
            async with asyncio.timeout(max(self.renew_every, 1.0)):
                await self.store.release_lease(self.name, self.me)
            log.info("leadership_released", me=self.me)
        except Exception as exc:
            log.warning("leader_release_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    async def run(
        self,
        stop: asyncio.Event,
        on_change: Callable[[bool], Awaitable[None]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Keep the lease until `stop` is set; `on_change(True/False)` on every transition.

        `on_change(True)` starts the engine and the outbox, `on_change(False)` stops them.
        If starting fails, the lease is released and the next round tries again. On `stop`
        a leader gets `on_change(False)` and then releases the lease.
        """
        leading = False
        try:
            while not stop.is_set():
                await self.acquire_or_renew(clock())
                if self.is_leader != leading:
                    leading = await self._switch(not leading, on_change)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(self.next_call_in(), 0.01))
        finally:
            if leading:
                with contextlib.suppress(Exception):
                    await on_change(False)
            await self.release()

    async def _switch(self, lead: bool, on_change: Callable[[bool], Awaitable[None]]) -> bool:
        """Run the callback; returns whether this instance is now running as the leader."""
        try:
            await on_change(lead)
        except Exception as exc:
            log.error("leadership_change_failed", lead=lead,
                      error=f"{type(exc).__name__}: {exc}"[:300])
            if lead:
                await self.release()  # let a healthy instance lead instead
                return False
        return lead
