"""The only writer of the incident side: turns the rules' effects into store writes, keeps the
engine's live view of open incidents in step, logs each decision with its reason and counts
plan steps (`hismon_plan_steps_total{kind,result}`, SPEC 8).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import fields

import structlog

from monitor.core.models import Incident, OutboxMessage, TimelineEntry
from monitor.incidents.effects import (
    Effect,
    Enqueue,
    HoldStep,
    Note,
    OpenIncident,
    ResolveIncident,
    SendStep,
    SkipStep,
    UpdateIncident,
)
from monitor.store.base import Store

log = structlog.get_logger("hismon.engine")

StepCounter = Callable[[str, str], None]
"""count(kind, result): called once per step occurrence, at its first decision."""

_INCIDENT_FIELDS = tuple(f.name for f in fields(Incident))


def _assign(live: Incident, value: Incident) -> None:
    """Copy a decided value onto the live object, so every holder of it sees the change."""
    for name in _INCIDENT_FIELDS:
        setattr(live, name, getattr(value, name))


class Applier:
    """Applies effects in order. `open` is the engine's dict of open incidents by system."""

    def __init__(self, store: Store, open_: dict[str, Incident],
                 on_enqueued: Callable[[], None], count_step: StepCounter | None = None) -> None:
        self.store = store
        self.open = open_
        self.on_enqueued = on_enqueued
        self.count_step = count_step or (lambda kind, result: None)
        self.announced: set[str] = set()
        """Maintenance announcement keys already decided in this process."""
        self._decided: set[tuple[str, str, int]] = set()
        """(incident, step key, occurrence) already counted in hismon_plan_steps_total."""

    async def apply(self, effects: Iterable[Effect], now: float) -> list[Incident]:
        """Apply each effect; returns the live incidents that were opened or resolved."""
        touched: list[Incident] = []
        for effect in effects:
            result = await self._apply(effect, now)
            if result is not None:
                touched.append(result)
        return touched

    async def _apply(self, effect: Effect, now: float) -> Incident | None:
        if isinstance(effect, OpenIncident):
            return await self._open(effect, now)
        if isinstance(effect, UpdateIncident):
            live = self._live(effect.incident)
            await self.store.save_incident(live)
            await self._notes(live.id, now, effect.notes)
            if effect.change == "hold":
                log.info("incident_hold", incident=live.id, system=live.system,
                         reason=live.held or "released")
            elif effect.change == "acknowledge":
                log.info("incident_acknowledged", incident=live.id, by=live.acknowledged_by)
            elif effect.change == "escalate":
                log.warning("incident_escalated", incident=live.id, system=live.system)
            return None
        if isinstance(effect, ResolveIncident):
            live = self._live(effect.incident)
            self.open.pop(live.system, None)
            await self.store.save_incident(live)
            await self._notes(live.id, now, effect.notes)
            self._decided = {d for d in self._decided if d[0] != live.id}
            log.info("incident_resolved", incident=live.id, system=live.system)
            return live
        if isinstance(effect, SendStep):
            await self._send(effect, now)
            return None
        if isinstance(effect, SkipStep):
            due = effect.step
            if await self.store.record_step(effect.incident_id, due.key, due.occurrence, now,
                                            "skipped", []):
                self._count(effect.incident_id, due.key, due.occurrence, due.kind, effect.reason)
                await self._notes(effect.incident_id, now, (Note(
                    "step_skipped", f"{due.kind} not sent: {effect.reason}",
                    {"step": due.key, "kind": str(due.kind), "reason": str(effect.reason)}),))
                log.info("step_skipped", incident=effect.incident_id, step=due.key,
                         kind=due.kind, reason=str(effect.reason))
            return None
        if isinstance(effect, HoldStep):
            due = effect.step
            if self._count(effect.incident_id, due.key, due.occurrence, due.kind, effect.reason):
                log.info("step_held", incident=effect.incident_id, step=due.key, kind=due.kind,
                         occurrence=due.occurrence, reason=str(effect.reason))
            return None
        if isinstance(effect, Enqueue):
            if effect.key is not None:
                self.announced.add(effect.key)
            if await self.store.enqueue(list(effect.messages)):
                log.info(effect.event, recipients=sorted({m.notifier for m in effect.messages}),
                         **effect.fields)
                self.on_enqueued()
            return None
        raise TypeError(f"unknown effect {effect!r}")  # pragma: no cover

    def _live(self, value: Incident) -> Incident:
        live = self.open.get(value.system)
        if live is None or live.id != value.id:
            return value
        _assign(live, value)
        return live

    async def _open(self, effect: OpenIncident, now: float) -> Incident:
        number = await self.store.next_incident_number()
        incident = effect.incident
        # Never the id of an incident of a lost store (issue 11 item 6; StoreIdentity): live
        # ids carry the store's tag. A drill keeps SPEC 10's `drill-N`: N comes from the
        # real store's counter, so it is never reused while that store lives.
        tag = getattr(self.store, "tag", "") if effect.id_prefix != "drill" else ""
        incident.id = f"{effect.id_prefix}-{number}-{tag}" if tag else \
            f"{effect.id_prefix}-{number}"
        self.open[incident.system] = incident
        await self.store.save_incident(incident)
        await self._notes(incident.id, now, effect.notes)
        log.warning("incident_opened", incident=incident.id, system=incident.system,
                    severity=incident.severity)
        return incident

    async def _send(self, effect: SendStep, now: float) -> None:
        due = effect.step
        messages = list(effect.messages)
        if not await self.store.record_step(effect.incident_id, due.key, due.occurrence, now,
                                            "sent", messages):
            return
        self._count(effect.incident_id, due.key, due.occurrence, due.kind, "sent")
        recipients = sorted({m.notifier for m in messages})
        await self._notes(effect.incident_id, now, (Note(
            "step_sent", f"{due.kind} → {', '.join(recipients) or 'nobody'}",
            {"step": due.key, "occurrence": due.occurrence, "kind": due.kind,
             "recipients": recipients}),))
        if effect.after is not None:
            await self.store.save_incident(self._live(effect.after))
        system = effect.after.system if effect.after is not None else _system_of(messages)
        log.info("step_fired", incident=effect.incident_id, system=system, step=due.key,
                 kind=due.kind, recipients=recipients, reason="due")
        self.on_enqueued()

    def _count(self, incident_id: str, key: str, occurrence: int, kind: str,
               result: str) -> bool:
        marker = (incident_id, key, occurrence)
        if marker in self._decided:
            return False
        if key != "recovery":  # decided once, after the incident left the open set
            self._decided.add(marker)
        self.count_step(kind, str(result))
        return True

    async def _notes(self, incident_id: str, now: float, notes: Iterable[Note]) -> None:
        for note in notes:
            data = {k: (str(v) if hasattr(v, "value") else v) for k, v in note.data.items()}
            await self.store.add_timeline(TimelineEntry(incident_id, now, note.kind, note.text,
                                                        data))


def _system_of(messages: list[OutboxMessage]) -> str | None:
    """The system a step's messages are about, for its log line (`after` is often None)."""
    for message in messages:
        incident = message.payload.get("incident")
        if isinstance(incident, dict) and incident.get("system"):
            return str(incident["system"])
    return None
