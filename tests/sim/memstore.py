"""An in-memory Store for the simulator: the same contract as SQLite (tests/test_store_contract.py
holds the real ones to it), without threads or files, so thousands of virtual minutes run in a
second. Records are deep-copied in and out, as a database would, so the engine can never keep a
reference into the store. `fail_next` makes the next N writes raise, as a locked store does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from monitor.core.models import Incident, OutboxMessage, Silence, TimelineEntry
from monitor.store.base import Store


class StoreDown(RuntimeError):
    """A simulated store fault (database locked, disk full)."""


class MemoryStore(Store):
    def __init__(self) -> None:
        self.seq = 0
        self.incidents: dict[str, Incident] = {}
        self.timelines: dict[str, list[TimelineEntry]] = {}
        self.steps: dict[tuple[str, str, int], str] = {}
        self.outbox: list[OutboxMessage] = []
        self.keys: set[str] = set()
        self.silences: dict[str, Silence] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self.fail_next = 0
        self.clock: Callable[[], float] = lambda: 0.0
        self.versions: list[tuple[float, Incident]] = []
        """Every incident record saved, with the time it was saved (the cause invariant)."""

    def _write(self) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise StoreDown("database is locked")

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def ping(self) -> None:
        pass

    async def next_incident_number(self) -> int:
        self._write()
        self.seq += 1
        return self.seq

    async def save_incident(self, incident: Incident) -> None:
        self._write()
        self.incidents[incident.id] = copy.deepcopy(incident)
        self.versions.append((self.clock(), copy.deepcopy(incident)))

    async def get_incident(self, incident_id: str) -> Incident | None:
        found = self.incidents.get(incident_id)
        return copy.deepcopy(found) if found else None

    async def list_incidents(self, status: str | None = None, since: float | None = None,
                             limit: int = 500, system: str | None = None) -> list[Incident]:
        found = [i for i in self.incidents.values() if (status is None or i.status == status)
                 and (system is None or i.system == system)]
        return copy.deepcopy(found[-limit:])

    async def add_timeline(self, entry: TimelineEntry) -> None:
        self._write()
        self.timelines.setdefault(entry.incident_id, []).append(copy.deepcopy(entry))

    async def timeline(self, incident_id: str) -> list[TimelineEntry]:
        return copy.deepcopy(self.timelines.get(incident_id, []))

    async def record_step(self, incident_id: str, step_key: str, occurrence: int, at: float,
                          status: str, messages: list[OutboxMessage]) -> bool:
        self._write()
        if (incident_id, step_key, occurrence) in self.steps:
            return False
        self.steps[(incident_id, step_key, occurrence)] = status
        self._insert(messages)
        return True

    async def steps_recorded(self, incident_id: str) -> dict[tuple[str, int], str]:
        return {(k, o): s for (i, k, o), s in self.steps.items() if i == incident_id}

    def _insert(self, messages: list[OutboxMessage]) -> int:
        new = 0
        for message in messages:
            if message.idempotency_key in self.keys:
                continue
            self.keys.add(message.idempotency_key)
            stored = copy.deepcopy(message)
            stored.id = len(self.outbox) + 1
            self.outbox.append(stored)
            new += 1
        return new

    async def enqueue(self, messages: list[OutboxMessage]) -> int:
        self._write()
        return self._insert(messages)

    async def pending_messages(self, notifier: str | None = None) -> list[OutboxMessage]:
        return [copy.deepcopy(m) for m in self.outbox if m.status == "pending"
                and (notifier is None or m.notifier == notifier)]

    async def update_message(self, message: OutboxMessage) -> None:
        """A send attempt's outcome; never the payload (as the SQL stores)."""
        self._write()
        assert message.id is not None
        stored = copy.deepcopy(message)
        stored.payload = self.outbox[message.id - 1].payload
        self.outbox[message.id - 1] = stored

    async def list_messages(self, status: str | None = None, incident_id: str | None = None,
                            limit: int = 500) -> list[OutboxMessage]:
        found = [m for m in reversed(self.outbox)
                 if (status is None or m.status == status)
                 and (incident_id is None or m.incident_id == incident_id)]
        return copy.deepcopy(found[:limit])

    async def delivery_summary(self, since: float) -> list[tuple[str, str, str, int, float]]:
        groups: dict[tuple[str, str, str], list[float]] = {}
        for m in self.outbox:
            if m.status in ("sent", "failed", "undeliverable") and m.created_at >= since \
                    and not (m.incident_id or "").startswith("drill-"):
                groups.setdefault((m.notifier, m.kind, m.status), []).append(m.created_at)
        return [(*key, len(times), max(times)) for key, times in groups.items()]

    async def save_silence(self, silence: Silence) -> None:
        self.silences[silence.id] = copy.deepcopy(silence)

    async def delete_silence(self, silence_id: str) -> bool:
        return self.silences.pop(silence_id, None) is not None

    async def list_silences(self) -> list[Silence]:
        return copy.deepcopy(list(self.silences.values()))

    async def save_check_states(self, states: dict[str, dict[str, Any]]) -> None:
        self._write()
        self.states.update(copy.deepcopy(states))

    async def load_check_states(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self.states)

    async def save_heartbeat(self, check_id: str, at: float) -> None:
        pass

    async def load_heartbeats(self) -> dict[str, float]:
        return {}

    async def save_vantage(self, instance: str, states: dict[str, str], at: float) -> None:
        pass

    async def load_vantage(self, since: float) -> dict[str, dict[str, str]]:
        return {}

    async def update_payload(self, message: OutboxMessage) -> None:
        self._write()
        assert message.id is not None
        self.outbox[message.id - 1].payload = copy.deepcopy(message.payload)

    async def messages_by_keys(self, keys: list[str]) -> list[OutboxMessage]:
        wanted = set(keys)
        return [copy.deepcopy(m) for m in self.outbox if m.idempotency_key in wanted]

    # ---- the rest of the contract: not exercised by the simulator -------------------------

    async def link_key(self) -> bytes:
        return b"simulator-link-key-0123456789abc"

    async def add_link_action(self, action: dict[str, Any], at: float) -> None:
        pass

    async def link_actions(self) -> list[tuple[int, dict[str, Any]]]:
        return []

    async def done_link_action(self, action_id: int) -> None:
        pass

    async def add_samples(self, rows: list[tuple[str, float, float]],
                          keep_since: dict[str, float]) -> None:
        pass

    async def load_samples(self) -> dict[str, list[tuple[float, float]]]:
        return {}

    async def save_check_buckets(self, rows: list[Any]) -> None:
        pass

    async def load_check_buckets(self, since: float, until: float | None = None,
                                 system: str | None = None) -> list[Any]:
        return []

    async def system_worst(self, since: float, until: float) -> list[tuple[str, float, int]]:
        return []

    async def history_marker(self) -> float | None:
        return None

    async def rollup_history(self, expected: float | None, upto: float,
                             rows: list[Any]) -> bool:
        return True

    async def load_system_buckets(self, resolution: str, since: float,
                                  until: float | None = None,
                                  system: str | None = None) -> list[Any]:
        return []

    async def sum_system_buckets(self, resolution: str, since: float,
                                 until: float | None = None) -> dict[str, Any]:
        return {}

    async def prune_history(self, cutoffs: dict[str, float]) -> int:
        return 0


class ScratchStore(MemoryStore):
    """A drill's private store: its incident number is the one reserved in the real store."""

    def __init__(self, number: int) -> None:
        super().__init__()
        self.number = number

    async def next_incident_number(self) -> int:
        return self.number
