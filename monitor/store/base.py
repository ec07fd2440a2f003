"""The store interface: what must survive a restart (SPEC §4, §6, §7).

Incidents, their timeline, which plan steps were sent, the outbox, silences, hard check
states, heartbeats and the bounded history behind the status pages (`monitor.history`).
Recording a plan step and enqueueing its messages is one atomic operation, which is what
makes "no step sent twice, none skipped" hold across a crash.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from monitor.core.models import Incident, OutboxMessage, Silence, TimelineEntry
from monitor.history.model import CheckBucket, SystemBucket, SystemWorst


@dataclass(frozen=True, slots=True)
class StatesMark:
    """Where a read of check states got to (`Store.load_check_states_since`): opaque to the
    caller. `store` is the identity of the store that made it, so a mark of a replaced store
    reads everything again; `at` is the store's own position (a save counter, a transaction
    id horizon)."""

    store: str | None
    at: int


class Fenced(RuntimeError):
    """A write by a leader whose term is over (another instance leads now): nothing written."""


class StoreIdentity:
    """What the SQL stores add to `Store`: who they are (issue 11 item 6).

    A mixin, not part of `Store`, so a wrapping store (monitor/store/buffered.py) passes
    these through to the store it wraps.
    """

    store_id: str | None = None
    """This store's identity: a random id written once, when the store was created (a row in
    its meta/settings table), read at `open()`. A deleted or replaced database has another
    one, or none."""
    created: bool = False
    """True when `open()` made a new, empty store (no identity row was there)."""

    @property
    def tag(self) -> str:
        """What incident ids carry of the identity (`inc-42-7f3a`): ids, and with them the
        messages' idempotency keys, are never reused by the store that replaces a lost one."""
        return (self.store_id or "")[:4]

    async def identity_problem(self) -> str | None:
        """None while this is still the store `open()` found; else what happened to it (the
        file deleted or replaced, the identity row or the tables gone). Raises when the store
        cannot be reached at all (that is `ping`'s business)."""
        return None


class Store(ABC):
    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise if the store cannot be reached; used by /readyz."""

    @abstractmethod
    async def next_incident_number(self) -> int: ...

    @abstractmethod
    async def save_incident(self, incident: Incident) -> None: ...

    @abstractmethod
    async def get_incident(self, incident_id: str) -> Incident | None: ...

    @abstractmethod
    async def list_incidents(
        self, status: str | None = None, since: float | None = None, limit: int = 500,
        system: str | None = None,
    ) -> list[Incident]:
        """Newest first; `since`: open, or resolved at or after it; `system`: only its own."""

    @abstractmethod
    async def add_timeline(self, entry: TimelineEntry) -> None: ...

    @abstractmethod
    async def timeline(self, incident_id: str) -> list[TimelineEntry]: ...

    @abstractmethod
    async def record_step(
        self, incident_id: str, step_key: str, occurrence: int, at: float, status: str,
        messages: list[OutboxMessage],
    ) -> bool:
        """Atomically mark a step occurrence done and enqueue its messages.

        Returns False (and enqueues nothing) if that occurrence was already recorded.
        """

    @abstractmethod
    async def steps_recorded(self, incident_id: str) -> dict[tuple[str, int], str]: ...

    @abstractmethod
    async def enqueue(self, messages: list[OutboxMessage]) -> int:
        """Insert messages whose idempotency key is new; returns how many were new."""

    @abstractmethod
    async def pending_messages(self, notifier: str | None = None) -> list[OutboxMessage]: ...

    async def begin_attempt(self, message: OutboxMessage) -> float | None:
        """Called before each send attempt: how long this instance may take to send (the
        time left on its leadership), or None when it must not send at all.

        A single-instance store has no one to be fenced by; the shared store checks the
        leader's term and lease in the same transaction (SPEC 9).
        """
        return math.inf

    @abstractmethod
    async def update_message(self, message: OutboxMessage) -> None:
        """Record a send attempt (status, attempts, errors, answer); never the payload."""

    @abstractmethod
    async def update_payload(self, message: OutboxMessage) -> None:
        """Replace a still pending message's payload (a fallback copy's failed channels)."""

    @abstractmethod
    async def messages_by_keys(self, keys: list[str]) -> list[OutboxMessage]:
        """The stored messages with these idempotency keys, oldest first."""

    @abstractmethod
    async def list_messages(
        self, status: str | None = None, incident_id: str | None = None, limit: int = 500
    ) -> list[OutboxMessage]: ...

    @abstractmethod
    async def delivery_summary(self, since: float) -> list[tuple[str, str, str, int, float]]:
        """(notifier, kind, status, count, newest created_at) of messages sent or given up
        on since `since`: one aggregate, read every second, never the rows themselves."""

    @abstractmethod
    async def save_silence(self, silence: Silence) -> None: ...

    @abstractmethod
    async def delete_silence(self, silence_id: str) -> bool: ...

    @abstractmethod
    async def list_silences(self) -> list[Silence]: ...

    @abstractmethod
    async def save_check_states(self, states: dict[str, dict[str, Any]]) -> None: ...

    @abstractmethod
    async def load_check_states(self) -> dict[str, dict[str, Any]]: ...

    async def load_check_states_since(
        self, mark: StatesMark | None
    ) -> tuple[dict[str, dict[str, Any]], StatesMark | None]:
        """The check states saved since `mark` (an earlier call's; None: all of them), and
        the mark for the next call.

        Never misses a save: every state saved after the read that returned `mark` is in
        the answer, whatever order concurrent writers commit in; a state saved before it may
        be in it again. A mark the store cannot read from (another store's, or one from the
        future of a store restored from a backup) reads everything. What a leader reads each
        second instead of every state (SPEC 9: members save their checks' states every
        max(interval, 5 s)). This default reads everything and gives no mark.
        """
        return await self.load_check_states(), None

    @abstractmethod
    async def save_heartbeat(self, check_id: str, at: float) -> None: ...

    @abstractmethod
    async def load_heartbeats(self) -> dict[str, float]: ...

    @abstractmethod
    async def add_samples(self, rows: list[tuple[str, float, float]],
                          keep_since: dict[str, float]) -> None:
        """Store forecast samples `(check_id, at, value)` (SPEC 15) and keep them bounded.

        `keep_since` names every check that still has a forecast, with the oldest time it
        needs: older samples of those checks, and all samples of other checks, are deleted.
        """

    @abstractmethod
    async def load_samples(self) -> dict[str, list[tuple[float, float]]]:
        """check id -> its forecast samples `(at, value)`, oldest first."""

    @abstractmethod
    async def link_key(self) -> bytes:
        """The link-signing key (SPEC 13.2): made at first start, then always the same one,
        shared by every instance on the store."""

    @abstractmethod
    async def add_link_action(self, action: dict[str, Any], at: float) -> None:
        """A link POST taken by a standby, for the leader to act on."""

    @abstractmethod
    async def link_actions(self) -> list[tuple[int, dict[str, Any]]]: ...

    @abstractmethod
    async def done_link_action(self, action_id: int) -> None: ...

    @abstractmethod
    async def save_vantage(self, instance: str, states: dict[str, str], at: float) -> None:
        """This instance's hard state of each `vantage_quorum` check (SPEC §9)."""

    @abstractmethod
    async def load_vantage(self, since: float) -> dict[str, dict[str, str]]:
        """check id → {instance → hard state} for reports newer than `since`."""

    # ---- history (SPEC §7; monitor/history) ----------------------------------------------

    @abstractmethod
    async def save_check_buckets(self, rows: list[CheckBucket]) -> None:
        """Merge 5-minute check buckets in: a row already there for (check, start) adds up."""

    @abstractmethod
    async def load_check_buckets(
        self, since: float, until: float | None = None, system: str | None = None
    ) -> list[CheckBucket]:
        """Check buckets with since <= start (< until), ordered by start."""

    @abstractmethod
    async def system_worst(self, since: float, until: float) -> list[SystemWorst]:
        """`SystemWorst` rows (system, start, worst of its check buckets, largest down and
        down-or-degraded shares) for buckets with since <= start < until."""

    @abstractmethod
    async def history_marker(self) -> float | None:
        """Where system rows are rolled up to: check buckets before it are in them."""

    @abstractmethod
    async def rollup_history(
        self, expected: float | None, upto: float, rows: list[SystemBucket]
    ) -> bool:
        """Atomically add `rows` to the system rows and move the marker to `upto`.

        Returns False, changing nothing, if the marker is no longer `expected` (another
        leader rolled these buckets up first): no bucket is ever counted twice.
        """

    @abstractmethod
    async def load_system_buckets(
        self, resolution: str, since: float, until: float | None = None,
        system: str | None = None,
    ) -> list[SystemBucket]:
        """System rows of one resolution with since <= start (< until), ordered by start."""

    @abstractmethod
    async def sum_system_buckets(
        self, resolution: str, since: float, until: float | None = None
    ) -> dict[str, SystemBucket]:
        """Per system: the worst state and the summed seconds of its rows in the range."""

    @abstractmethod
    async def prune_history(self, cutoffs: dict[str, float]) -> int:
        """Delete rows older than their cutoff (keys: check, slot, hour, day); returns how many."""
