"""The incident engine: hard check states → incidents → plan steps → outbox.

A thin loop around the pure rules (monitor/incidents/rules.py) and the applier, the only store
writer (monitor/incidents/applier.py): each tick builds a snapshot of the facts, asks the
rules what to do and applies their effects. One instance owns all open incidents. It runs on
the event loop and is woken when a check changes hard state (so the first IT message leaves
within a second of confirmation) and once a second for time-driven steps. Every decision
takes `now` from an injectable clock, so escalation after 15 minutes is tested by moving the
clock, not by sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import structlog

from monitor.config.model import Config, Plan
from monitor.core.models import Incident, OutboxMessage, Silence
from monitor.core.types import Severity
from monitor.delivery.messages import MessageRenderer
from monitor.incidents import maintenance, rules
from monitor.incidents.applier import Applier, StepCounter
from monitor.incidents.effects import Change, UpdateIncident
from monitor.incidents.facts import Facts
from monitor.people import actions, backfill
from monitor.probing.state import CheckState, to_record
from monitor.store.base import Store

log = structlog.get_logger("hismon.engine")
Clock = Callable[[], float]
TICK_SECONDS = 1.0
SAVE_BATCH = 500
"""Check states saved in one store call (~20 ms of the loop)."""


def renderer_for(config: Config) -> MessageRenderer:
    """The message renderer with the config's template overrides."""
    return MessageRenderer({str(language): {str(kind): text for kind, text in kinds.items()}
                            for language, kinds in config.templates.items()})


class Engine:
    def __init__(
        self,
        config: Config,
        store: Store,
        states: dict[str, CheckState],
        clock: Clock = time.time,
        on_enqueued: Callable[[], None] | None = None,
        drill: bool = False,
        live: bool = False,
        count_step: StepCounter | None = None,
        on_incident_error: Callable[[str], None] | None = None,
    ) -> None:
        self.drill = drill
        """Drill mode: incidents are rehearsals, messages go only to `drill: true` notifiers."""
        self.live = live
        self.config = config
        self.store = store
        self.states = states
        self.clock = clock
        self.on_enqueued = on_enqueued or (lambda: None)
        self.renderer = renderer_for(config)
        self.open: dict[str, Incident] = {}
        self.silences: dict[str, Silence] = {}
        self.applier = Applier(store, self.open, self._enqueued, count_step)
        self._dirty: set[str] = set()
        self._dirty_checks: set[str] = set()
        self.unconfirmed: set[str] = set()
        """Checks failing here but not yet seen failing by `vantage_quorum` instances."""
        self._wake = asyncio.Event()
        self._latest_note: dict[str, dict[str, Any]] = {}
        self._windows: list[maintenance.Window] = []
        self._windows_at = float("-inf")
        self.last_error: str | None = None
        self.failing: dict[str, str] = {}
        """Incident (or system) id -> why it could not be processed in the last attempt."""
        self.on_incident_error = on_incident_error or (lambda system: None)
        self.link_key: bytes | None = None
        self._backfill_checked = float("-inf")
        """Set by the daemon from the store (SPEC 13.2): messages then carry signed links."""
        self._escalations: list[tuple[str, float, str]] = []
        """(incident, delivered at, notifier) of vendor escalations the outbox delivered, for
        the next tick to record as the start of the vendor's response clock (SPEC 13.4)."""

    def _enqueued(self) -> None:
        self.on_enqueued()

    # ---- lifecycle -------------------------------------------------------------------

    async def load(self) -> None:
        """Carry on after a restart: open incidents and silences come back from the store."""
        for incident in await self.store.list_incidents(status="open"):
            if not incident.drill:
                self.open[incident.system] = incident
        for silence in await self.store.list_silences():
            self.silences[silence.id] = silence
        self._dirty.update(self.open)

    def apply_config(self, config: Config) -> None:
        self.config = config
        self.renderer = renderer_for(config)
        self.invalidate_windows()
        self._dirty.update(s.id for s in config.systems)
        self.wake()

    def system_changed(self, system_id: str) -> None:
        self._dirty.add(system_id)
        self._wake.set()

    def check_changed(self, state: CheckState) -> None:
        """Called by the scheduler when a check changed hard state or flapping."""
        self._dirty_checks.add(state.check_id)
        self.system_changed(state.system)

    def resave(self, check_ids: Iterable[str]) -> None:
        """Save these check states again with the next `save_states` (a new store, a new
        term, states the other members read)."""
        self._dirty_checks.update(check_ids)

    def unsaved(self) -> set[str]:
        """The checks whose changed state is not saved yet (a copy)."""
        return set(self._dirty_checks)

    async def save_states(self) -> None:
        """Persist changed check states *before* acting on them: after a crash, an incident
        in the store always has the confirmed failure that opened it."""
        if not self._dirty_checks:
            return
        dirty, self._dirty_checks = self._dirty_checks, set()
        ids = [c for c in dirty if c in self.states]
        try:
            # In batches: a record and its JSON are ~40 µs of the loop each, and an outage
            # that changes 50,000 checks at once would otherwise hold it for two seconds.
            for start in range(0, len(ids), SAVE_BATCH):
                records = {c: to_record(self.states[c]) for c in ids[start:start + SAVE_BATCH]
                           if c in self.states}
                if records:
                    await self.store.save_check_states(records)
        except BaseException:
            self._dirty_checks |= dirty  # saving a state again is harmless
            raise

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()  # before the tick, so a change during the tick is not lost
            try:
                await self.tick()
                self.last_error = None
            except Exception as exc:  # the store may be locked or down: retry next tick
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("engine_tick_failed", error=self.last_error[:300])
            try:
                await asyncio.wait_for(self._wake.wait(), TICK_SECONDS)
            except TimeoutError:
                pass

    # ---- one evaluation --------------------------------------------------------------

    def facts(self, now: float) -> Facts:
        """The snapshot the rules decide from (a view of live state, valid for one step)."""
        return Facts(config=self.config, states=self.states, open=self.open,
                     windows=self.windows(now), renderer=self.renderer,
                     unconfirmed=self.unconfirmed, notes=self._latest_note,
                     drill=self.drill, live=self.live, link_key=self.link_key)

    async def tick(self) -> None:
        now = self.clock()
        await self.save_states()
        await self._standby_link_actions()
        await self._vendor_escalations()
        dirty, self._dirty = self._dirty, set()
        try:
            apply = self.applier.apply
            await apply(rules.announce_maintenance(self.facts(now), self.applier.announced,
                                                   now), now)
            for system_id in sorted(dirty):
                if self.config.has_system(system_id):
                    if not await self._isolated(system_id, self._evaluate(system_id, now)):
                        self._dirty.add(system_id)  # try again next tick
            await self._link_dependencies(now)
            await self._backfill_reminders(now)
            for incident in list(self.open.values()):
                await self._isolated(incident.system, self._run_plan(incident, now))
        except BaseException:
            self._dirty |= dirty
            raise

    async def _evaluate(self, system_id: str, now: float) -> None:
        touched = await self.applier.apply(
            rules.evaluate_system(self.facts(now), system_id, now), now)
        for incident in touched:
            if not incident.is_open:
                await self._recovery(incident, now)

    async def _run_plan(self, incident: Incident, now: float) -> None:
        recorded = await self.store.steps_recorded(incident.id)
        await self.applier.apply(rules.run_plan(self.facts(now), incident, recorded, now), now)

    async def _isolated(self, system_id: str, work: Coroutine[Any, Any, None]) -> bool:
        """Run one system's share of the tick; a failure that is not the store's stays with
        that incident (logged with its id, counted, named on /readyz) and the others go on
        (SPEC 10). A store that does not answer fails the whole tick, to be retried."""
        try:
            await work
        except Exception as exc:
            try:
                await self.store.ping()
            except Exception:
                raise exc from None
            error = f"{type(exc).__name__}: {exc}"[:300]
            incident = self.open.get(system_id)  # it may have opened before the failure
            key = incident.id if incident is not None else system_id
            if key not in self.failing:
                log.error("incident_failed", incident=key, system=system_id, error=error)
            if key != system_id:
                self.failing.pop(system_id, None)
            self.failing[key] = error
            self.on_incident_error(system_id)
            return False
        incident = self.open.get(system_id)
        self.failing.pop(system_id, None)
        if incident is not None:
            self.failing.pop(incident.id, None)
        return True

    def problems(self) -> list[str]:
        """What keeps this engine from processing everything, for /readyz."""
        return [f"incident {key} cannot be processed: {error}"
                for key, error in sorted(self.failing.items())]

    async def _recovery(self, incident: Incident, now: float) -> None:
        recorded = await self.store.steps_recorded(incident.id)
        told = {m.notifier for m in await self.store.list_messages(incident_id=incident.id)}
        await self.applier.apply(
            rules.recovery(self.facts(now), incident, recorded, told, now), now)

    async def _link_dependencies(self, now: float) -> None:
        effects = rules.link_dependencies(self.facts(now), now)
        await self.applier.apply(effects, now)
        for effect in effects:
            if isinstance(effect, UpdateIncident) and effect.change is Change.DEPARTMENTS:
                root = self.open.get(effect.incident.system)
                if root is not None:
                    recorded = await self.store.steps_recorded(root.id)
                    await self.applier.apply(
                        rules.catch_up_departments(self.facts(now), root, recorded, now), now)

    # ---- plans and windows -----------------------------------------------------------

    def _plan_of(self, incident: Incident) -> Plan | None:
        return self.facts(self.clock()).plan_of(incident)

    def windows(self, now: float) -> list[maintenance.Window]:
        """Maintenance windows and silences around `now` (recomputed at most every 10 s)."""
        if not self._windows_at <= now < self._windows_at + 10:
            self._windows = maintenance.windows(self.config, list(self.silences.values()), now)
            self._windows_at = now
        return self._windows

    def invalidate_windows(self) -> None:
        self._windows_at = float("-inf")

    def add_silence(self, silence: Silence) -> None:
        """A run-time silence the caller has stored: it counts from this tick on."""
        self.silences[silence.id] = silence
        self.invalidate_windows()
        self.wake()

    def remove_silence(self, silence_id: str) -> None:
        """A run-time silence the caller has deleted from the store: it ends now."""
        self.silences.pop(silence_id, None)
        self.invalidate_windows()
        self.wake()

    def in_maintenance(self, system_id: str, now: float) -> bool:
        return any(w.covers(system_id, now) for w in self.windows(now))

    # ---- operator actions ------------------------------------------------------------

    async def acknowledge(self, incident_id: str, by: str, note: str | None,
                          via: str = "api") -> Incident | None:
        now = self.clock()
        incident = self._find_open(incident_id)
        if incident is None:
            return None
        recorded = await self.store.steps_recorded(incident.id)
        await self.applier.apply(
            rules.acknowledge(self.facts(now), incident, by, note, recorded, now, via), now)
        return incident

    async def link_action(self, action: dict[str, Any]) -> Incident | None:
        """Act on a verified link POST (taken here, or by a standby and stored for us)."""
        kind, incident_id = action.get("kind"), str(action.get("incident"))
        by = action.get("by")
        try:
            if kind == "ack":
                return await self.acknowledge(incident_id, str(by), None, via="link")
            if kind == "department":
                return await self.confirm_department(incident_id, str(action.get("department")),
                                                     str(action.get("what")), by, via="link")
            if kind == "vendor":
                return await self.vendor_response(incident_id, by, action.get("eta"),
                                                  via="link")
        except actions.Refused as exc:
            log.info("link_action_refused", incident=incident_id, kind=kind, reason=str(exc))
        return None

    async def _backfill_reminders(self, now: float) -> None:
        """Resolved incidents owed a back-fill reminder (checked every 15 s, not every tick)."""
        if self.drill or now < self._backfill_checked + 15:
            return
        self._backfill_checked = now
        reach = backfill.horizon(self.facts(now))
        if reach is None:
            return
        facts = self.facts(now)
        for incident in await self.store.list_incidents(status="resolved", since=now - reach):
            plan = facts.plan_of(incident)
            delay = plan.backfill_reminder if plan is not None else None
            if delay is None or incident.resolved_at is None or incident.caused_by \
                    or incident.drill or now < incident.resolved_at + delay:
                continue  # not owed one (yet): no store reads for it
            recorded = await self.store.steps_recorded(incident.id)
            if (backfill.STEP, 0) in recorded:
                continue
            told = {m.notifier for m in await self.store.list_messages(incident_id=incident.id)}
            await self.applier.apply(
                backfill.reminder(self.facts(now), incident, recorded, told, now), now)

    def delivered(self, message: OutboxMessage) -> None:
        """The outbox delivered `message` (called from its sender, so only noted here)."""
        if message.kind == "vendor_escalation" and message.incident_id \
                and message.sent_at is not None and message.payload.get("vendor"):
            self._escalations.append((message.incident_id, message.sent_at, message.notifier))
            self.wake()

    async def restore_escalations(self) -> None:
        """After a restart: an escalation delivered just before the crash, not yet recorded."""
        for incident in self.open.values():
            if incident.vendor_escalated_at is None:
                for message in await self.store.list_messages(incident_id=incident.id):
                    if message.status == "sent":
                        self.delivered(message)

    async def _vendor_escalations(self) -> None:
        pending, self._escalations = self._escalations, []
        try:
            while pending:
                incident_id, at, notifier = pending[0]
                incident = self._find_open(incident_id) or \
                    await self.store.get_incident(incident_id)
                effect = None if incident is None else \
                    actions.vendor_escalated(incident, at, notifier)
                if incident is not None and effect is not None:
                    await self.applier.apply([effect], at)
                    _assign_fields(incident, effect.incident)
                pending.pop(0)
        finally:
            self._escalations[:0] = pending  # a store that failed: the next tick retries

    async def _standby_link_actions(self) -> None:
        """Link POSTs a standby recorded in the shared store (SPEC 13.2), oldest first."""
        for action_id, action in await self.store.link_actions():
            await self.link_action(action)
            await self.store.done_link_action(action_id)
            log.info("link_action_applied", incident=action.get("incident"),
                     kind=action.get("kind"), recipient=action.get("recipient"), via="standby")

    async def add_note(self, incident_id: str, by: str, text: str) -> Incident | None:
        now = self.clock()
        incident = self._find_open(incident_id)
        if incident is None:
            return None
        self._latest_note[incident.id] = {"by": by, "text": text, "at": now}
        await self.applier.apply(rules.add_note(incident, by, text, now), now)
        return incident

    # ---- people in the loop (SPEC §13): rules in monitor/people/actions.py ------------

    async def declare(self, system_id: str, severity: Severity, title: str, by: str,
                      started_at: float | None = None) -> Incident:
        """Raises `actions.Refused` (409 with the open incident, 422)."""
        now = self.clock()
        effect = actions.declare(self.facts(now), system_id, severity, title, by,
                                 now if started_at is None else started_at, now)
        touched = await self.applier.apply([effect], now)
        self.system_changed(system_id)
        return touched[0]

    async def resolve_by_hand(self, incident_id: str, by: str, note: str | None) -> Incident:
        now = self.clock()
        incident = await self._incident(incident_id)
        touched = await self.applier.apply(
            [actions.resolve_by_hand(self.facts(now), incident, by, note, now)], now)
        await self._recovery(touched[0], now)
        return touched[0]

    async def patch(self, incident_id: str, by: str, changes: dict[str, Any]) -> Incident:
        now = self.clock()
        incident = await self._incident(incident_id)
        effect = actions.patch(incident, by, changes)
        if effect is not None:
            await self.applier.apply([effect], now)
            _assign_fields(incident, effect.incident)
        return incident

    async def confirm_department(self, incident_id: str, department: str, what: str,
                                 by: str | None, via: str = "api") -> Incident:
        now = self.clock()
        incident = await self._incident(incident_id)
        effect = actions.confirm_department(self.facts(now), incident, department, what, by,
                                            now, via)
        if effect is not None:
            await self.applier.apply([effect], now)
            _assign_fields(incident, effect.incident)
        return incident

    async def vendor_response(self, incident_id: str, by: str | None, eta: str | None,
                              via: str = "api") -> Incident:
        now = self.clock()
        incident = await self._incident(incident_id)
        effect = actions.vendor_response(incident, by, eta, now, via)
        if effect is not None:
            await self.applier.apply([effect], now)
            _assign_fields(incident, effect.incident)
        return incident

    async def _incident(self, incident_id: str) -> Incident:
        """The live open incident, else the stored one (a resolved incident is corrected too)."""
        found = self._find_open(incident_id) or await self.store.get_incident(incident_id)
        if found is None:
            raise actions.Refused(404, f"no incident {incident_id}")
        return found

    def _find_open(self, incident_id: str) -> Incident | None:
        return next((i for i in self.open.values() if i.id == incident_id), None)

    async def restore_notes(self) -> None:
        """Latest progress note per open incident, from the timeline, after a restart."""
        for incident in self.open.values():
            for entry in await self.store.timeline(incident.id):
                if entry.kind == "note":
                    self._latest_note[incident.id] = {
                        "by": entry.data.get("by"), "text": entry.text, "at": entry.at}


def _assign_fields(target: Incident, value: Incident) -> None:
    """Copy a rule's new value onto the object the caller holds (a stored, resolved one)."""
    if target is not value:
        for name in Incident.__dataclass_fields__:
            setattr(target, name, getattr(value, name))
