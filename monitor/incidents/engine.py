"""The incident engine: hard check states → incidents → plan steps → outbox.

One instance owns all open incidents. It runs on the event loop and is woken when a check
changes hard state (so the first IT message leaves within a second of confirmation) and
once a second for time-driven steps. Every decision takes `now` from an injectable clock,
so escalation after 15 minutes is tested by moving the clock, not by sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

from monitor.config.model import Config
from monitor.core.models import Incident, OutboxMessage, Silence, TimelineEntry
from monitor.core.result import State
from monitor.delivery import drill as drill_route
from monitor.delivery.context import local, maintenance_context, message_context
from monitor.delivery.messages import MessageRenderer
from monitor.incidents import maintenance, plans
from monitor.incidents.cause import suspect
from monitor.probing.state import CheckState, to_record
from monitor.store.base import Store

log = structlog.get_logger("hismon.engine")
Clock = Callable[[], float]
TICK_SECONDS = 1.0


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
    ) -> None:
        self.drill = drill
        """Drill mode: incidents are rehearsals, messages go only to `drill: true` notifiers."""
        self.live = live
        self.config = config
        self.store = store
        self.states = states
        self.clock = clock
        self.on_enqueued = on_enqueued or (lambda: None)
        self.renderer = MessageRenderer(config.templates)
        self.open: dict[str, Incident] = {}
        self.silences: dict[str, Silence] = {}
        self._dirty: set[str] = set()
        self._dirty_checks: set[str] = set()
        self._told: dict[str, set[str]] = {}
        self.unconfirmed: set[str] = set()
        """Checks failing here but not yet seen failing by `vantage_quorum` instances."""
        self._wake = asyncio.Event()
        self._latest_note: dict[str, dict[str, Any]] = {}
        self._windows: list[maintenance.Window] = []
        self._windows_at = float("-inf")
        self._announced: set[str] = set()
        self.last_error: str | None = None

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
        self.renderer = MessageRenderer(config.templates)
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

    async def save_states(self) -> None:
        """Persist changed check states *before* acting on them: after a crash, an incident
        in the store always has the confirmed failure that opened it."""
        if not self._dirty_checks:
            return
        dirty, self._dirty_checks = self._dirty_checks, set()
        records = {c: to_record(self.states[c]) for c in dirty if c in self.states}
        try:
            await self.store.save_check_states(records)
        except BaseException:
            self._dirty_checks |= dirty
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

    async def tick(self) -> None:
        now = self.clock()
        await self.save_states()
        dirty, self._dirty = self._dirty, set()
        try:
            await self._announce_maintenance(now)
            for system_id in sorted(dirty):
                if self.config.has_system(system_id):
                    await self._evaluate_system(system_id, now)
            await self._link_dependencies(now)
            for incident in list(self.open.values()):
                await self._run_plan(incident, now)
        except BaseException:
            self._dirty |= dirty
            raise

    async def _evaluate_system(self, system_id: str, now: float) -> None:
        checks = self.config.checks_of(system_id)
        states = [self.states[c.id] for c in checks if c.id in self.states]
        failing = [s for s in states if s.failing and s.check_id not in self.unconfirmed]
        incident = self.open.get(system_id)
        if not failing:
            if incident is not None and any(s.flapping for s in states):
                # One incident for a flapping system, not an open/resolve pair per flap.
                return
            if incident is not None and not all(s.probed for s in states):
                # Just restarted: a check not probed yet is not evidence of recovery.
                return
            if incident is not None:
                await self._resolve(incident, states, now)
            return
        severity = "critical" if any(s.hard_state is State.CRIT for s in failing) else "warning"
        if incident is None:
            incident = await self._open(system_id, failing, severity, now)
        elif severity == "critical" and incident.severity == "warning":
            incident.severity = "critical"
            incident.plan_started_at = now
            await self._timeline(incident, now, "escalated", "warning escalated to critical")
            log.warning("incident_escalated", incident=incident.id, system=system_id)
        await self._update_checks(incident, failing, now)
        cause, evidence = suspect(states)
        if cause != incident.suspected_cause or evidence != incident.cause_evidence:
            incident.suspected_cause, incident.cause_evidence = cause, evidence
        await self.store.save_incident(incident)

    async def _open(
        self, system_id: str, failing: list[CheckState], severity: str, now: float
    ) -> Incident:
        number = await self.store.next_incident_number()
        started = min((s.first_failure_at or now) for s in failing)
        system = self.config.system(system_id)
        incident = Incident(
            id=f"{'drill' if self.drill else 'inc'}-{number}", system=system_id,
            severity=severity, started_at=started, opened_at=now,
            plan_started_at=started if severity == "critical" else None,
            affected_departments=list(system.departments), drill=self.drill,
        )
        self.open[system_id] = incident
        await self.store.save_incident(incident)
        await self._timeline(incident, now, "opened", f"{severity} incident opened",
                             {"severity": severity})
        log.warning("incident_opened", incident=incident.id, system=system_id, severity=severity)
        return incident

    async def _update_checks(self, incident: Incident, failing: list[CheckState],
                             now: float) -> None:
        before = {c["id"]: c for c in incident.failing_checks}
        after = {
            s.check_id: {"id": s.check_id, "type": s.type, "state": s.hard_state.name,
                         "message": s.message}
            for s in failing
        }
        for check_id in after.keys() - before.keys():
            await self._timeline(incident, now, "check_failed",
                                 f"{check_id} {after[check_id]['state']}: "
                                 f"{after[check_id]['message']}", {"check": check_id})
        for check_id in before.keys() - after.keys():
            await self._timeline(incident, now, "check_recovered", f"{check_id} OK",
                                 {"check": check_id})
        for check_id in after.keys() & before.keys():
            if after[check_id]["state"] != before[check_id]["state"]:
                await self._timeline(incident, now, "check_state",
                                     f"{check_id} {before[check_id]['state']} → "
                                     f"{after[check_id]['state']}", {"check": check_id})
        incident.failing_checks = list(after.values())

    async def _resolve(self, incident: Incident, states: list[CheckState], now: float) -> None:
        recovered = [s.recovered_at for s in states if s.recovered_at is not None]
        incident.status = "resolved"
        incident.resolved_at = max(recovered) if recovered else now
        incident.failing_checks = []
        del self.open[incident.system]
        await self.store.save_incident(incident)
        await self._timeline(incident, now, "resolved", "all checks OK again")
        log.info("incident_resolved", incident=incident.id, system=incident.system)
        plan = self._plan_of(incident)
        recorded = await self.store.steps_recorded(incident.id)
        # A dependent incident's recovery is told by its root's; and only those who heard
        # about this incident hear that it is over.
        if plan and plan.on_recovery and plans.anything_sent(recorded) and not incident.caused_by:
            await self._send(incident, plans.DueStep("recovery", 0, "recovery",
                                                     tuple(plan.on_recovery)), now)

    # ---- dependencies ----------------------------------------------------------------

    async def _link_dependencies(self, now: float) -> None:
        for incident in list(self.open.values()):
            root = self._root_of(incident.system)
            previous = incident.caused_by
            if root is not None and root.id != incident.id:
                if previous != root.id:
                    incident.caused_by, incident.caused_by_system = root.id, root.system
                    await self._timeline(incident, now, "caused_by",
                                         f"caused by {root.id} ({root.system})")
                    await self.store.save_incident(incident)
                added = [d for d in self.config.system(incident.system).departments
                         if d not in root.affected_departments]
                if added:
                    root.affected_departments.extend(added)
                    await self._timeline(root, now, "departments_added",
                                         f"{incident.system} depends on {root.system}: "
                                         f"{', '.join(added)} affected",
                                         {"system": incident.system})
                    await self.store.save_incident(root)
                    await self._catch_up_departments(root, now)
            elif previous is not None:
                incident.caused_by = incident.caused_by_system = None
                incident.plan_started_at = now
                await self._timeline(incident, now, "caused_by_cleared",
                                     f"{previous} resolved; this system still fails on its own")
                await self.store.save_incident(incident)

    def _root_of(self, system_id: str) -> Incident | None:
        """The deepest dependency with an open critical incident of its own making."""
        root = None
        for dep in self.config.dependencies(system_id):
            candidate = self.open.get(dep)
            if candidate is not None and candidate.severity == "critical":
                root = candidate
        if root is not None and root.caused_by is not None:
            return self.open.get(root.caused_by_system or "") or root
        return root

    async def _catch_up_departments(self, incident: Incident, now: float) -> None:
        """Departments that joined after their notice went out still get it (same keys)."""
        plan = self._plan_of(incident)
        if plan is None:
            return
        recorded = await self.store.steps_recorded(incident.id)
        for index, step in enumerate(plan.steps):
            key = f"step-{index}"
            for (rec_key, occurrence), status in recorded.items():
                if rec_key == key and status == "sent" and (
                    "departments" in step.notify
                ):
                    due = plans.DueStep(key, occurrence, step.message, tuple(step.notify))
                    messages = self._messages(incident, due, now)
                    if await self.store.enqueue(messages):
                        self.on_enqueued()

    # ---- plans -----------------------------------------------------------------------

    def _plan_of(self, incident: Incident) -> Any:
        if not self.config.has_system(incident.system):
            return None
        plan_id = self.config.system(incident.system).plan
        return self.config.plan(plan_id) if plan_id else None

    def _hold_reason(self, incident: Incident, now: float) -> str | None:
        if incident.caused_by:
            return "caused_by"
        if not incident.drill and self.in_maintenance(incident.system, now):
            # A drill rehearses the plan even inside a window: nothing real is held by it.
            return "maintenance"
        flapping = any(s.flapping for s in self.states.values() if s.system == incident.system)
        if flapping and now - incident.started_at < self.config.defaults.flapping.max_hold:
            return "flapping"
        failing = [self.states.get(c["id"]) for c in incident.failing_checks]
        if failing and all(s is not None and s.state is State.OK for s in failing):
            # Every failing check answers again and is confirming its recovery: a step
            # falling due in these seconds would page people for a system coming back.
            return "recovering"
        return None

    def windows(self, now: float) -> list[maintenance.Window]:
        """Maintenance windows and silences around `now` (recomputed at most every 10 s)."""
        if not self._windows_at <= now < self._windows_at + 10:
            self._windows = maintenance.windows(self.config, list(self.silences.values()), now)
            self._windows_at = now
        return self._windows

    def invalidate_windows(self) -> None:
        self._windows_at = float("-inf")

    def in_maintenance(self, system_id: str, now: float) -> bool:
        return any(w.covers(system_id, now) for w in self.windows(now))

    async def _announce_maintenance(self, now: float) -> None:
        """Planned downtime: tell the departments ahead, and again when it is over.

        Never in a drill: a rehearsal sends only its own incident's messages (SPEC §10).
        """
        if self.drill:
            return
        for window in self.windows(now):
            lead = maintenance.notice_due(window, now)
            if lead is not None:
                await self._maintenance_message(
                    "maintenance_notice", window, f"{window.key}:notice:{int(lead)}", now)
            if maintenance.over_due(window, now):
                await self._maintenance_message(
                    "maintenance_over", window, f"{window.key}:over", now)

    async def _maintenance_message(self, kind: str, window: maintenance.Window, key: str,
                                   now: float) -> None:
        if key in self._announced:
            return
        self._announced.add(key)
        departments: list[str] = []
        for system_id in window.systems:
            for dept in self.config.system(system_id).departments:
                if dept not in departments:
                    departments.append(dept)
        messages, seen = [], set()
        for dept_id in departments:
            dept = self.config.department(dept_id)
            language = dept.language or self.config.site.language
            affected = [s for s in window.systems if dept_id in self.config.system(s).departments]
            context = maintenance_context(kind, self.config, affected, window.start, window.end,
                                          window.reason, department_id=dept_id,
                                          language=language)
            title, text = self.renderer.render(kind, language, context)
            for notifier in dept.notify:
                if notifier in seen:
                    continue
                seen.add(notifier)
                messages.append(OutboxMessage(
                    idempotency_key=f"maint:{key}:{notifier}", notifier=notifier, kind=kind,
                    created_at=now, next_attempt_at=now,
                    payload={"title": title, "text": text, "incident": None,
                             "maintenance": context["maintenance"],
                             "status_url": context["status_url"], "recipient": notifier}))
        if await self.store.enqueue(messages):
            log.info("maintenance_announced", kind=kind, window=window.key,
                     recipients=sorted(seen))
            self.on_enqueued()

    async def _run_plan(self, incident: Incident, now: float) -> None:
        plan = self._plan_of(incident)
        hold = self._hold_reason(incident, now)
        if hold != incident.held:
            if hold is None and incident.held in ("maintenance", "caused_by"):
                incident.plan_started_at = now if incident.severity == "critical" else None
            text = f"notifications held: {hold}" if hold else "notifications released"
            log.info("incident_hold", incident=incident.id, reason=hold or "released")
            incident.held = hold
            await self._timeline(incident, now, "hold", text, {"reason": hold})
            await self.store.save_incident(incident)
        if hold is not None or plan is None:
            return
        recorded = await self.store.steps_recorded(incident.id)
        for due in plans.due_steps(incident, plan, recorded, now):
            await self._send(incident, due, now)

    async def _remember_told(self, incident: Incident) -> None:
        self._told[incident.id] = {
            m.notifier for m in await self.store.list_messages(incident_id=incident.id)}

    async def _send(self, incident: Incident, due: plans.DueStep, now: float) -> None:
        if due.skip_reason:
            if await self.store.record_step(incident.id, due.key, due.occurrence, now,
                                            "skipped", []):
                await self._timeline(incident, now, "step_skipped",
                                     f"{due.kind} not sent: {due.skip_reason}",
                                     {"step": due.key, "reason": due.skip_reason})
                log.info("step_skipped", incident=incident.id, step=due.key,
                         reason=due.skip_reason)
            return
        if due.kind == "recovery":
            await self._remember_told(incident)
        messages = self._messages(incident, due, now)
        if not await self.store.record_step(incident.id, due.key, due.occurrence, now,
                                            "sent", messages):
            return
        recipients = sorted({m.notifier for m in messages})
        await self._timeline(incident, now, "step_sent",
                             f"{due.kind} → {', '.join(recipients) or 'nobody'}",
                             {"step": due.key, "occurrence": due.occurrence, "kind": due.kind,
                              "recipients": recipients})
        if due.kind == "progress_update":
            incident.last_update_sent_at = now
            await self.store.save_incident(incident)
        elif due.kind == "vendor_escalation" and incident.vendor_escalated_at is None:
            incident.vendor_escalated_at = now
            await self.store.save_incident(incident)
        log.info("step_fired", incident=incident.id, system=incident.system, step=due.key,
                 kind=due.kind, recipients=recipients, reason="due")
        self.on_enqueued()

    def _messages(self, incident: Incident, due: plans.DueStep, now: float) -> list[OutboxMessage]:
        targets = list(due.targets)
        extra: list[str] = []
        """IT asked for a note: not the step's own recipients (a drill routes them apart)."""
        note, note_missing = None, False
        if due.kind == "progress_update":
            note = self._latest_note.get(incident.id)
            since = incident.last_update_sent_at or incident.started_at
            note_missing = note is None or note["at"] <= since
            plan = self._plan_of(incident)
            if note_missing and plan is not None:
                extra = [t for t in plans.it_targets(plan) if t not in targets]
        affected = [incident.system] + [
            i.system for i in self.open.values() if i.caused_by == incident.id]
        told = self._told.get(incident.id, set()) if due.kind == "recovery" else None
        messages = []
        recipients = [(r.notifier, r.department)
                      for r in plans.resolve_targets(targets + extra, self.config, incident)]
        if incident.drill:
            recipients = []
            for group in (targets, extra):
                found = plans.resolve_targets(group, self.config, incident) if group else []
                for pair in drill_route.route(found, self.config, self.live).recipients:
                    if group and pair[0] not in {n for n, _ in recipients}:
                        recipients.append(pair)
        for notifier, department in recipients:
            if told is not None and notifier not in told:
                continue
            language = self.config.site.language
            if department:
                language = self.config.department(department).language or language
            context = message_context(
                due.kind, incident, self.config, now, department_id=department,
                language=language, note=_public_note(note, self.config), note_missing=note_missing,
                affected_systems=affected)
            title, text = self.renderer.render(due.kind, language, context)
            messages.append(OutboxMessage(
                idempotency_key=f"{incident.id}:{due.key}:{notifier}:{due.occurrence}",
                notifier=notifier, kind=due.kind, incident_id=incident.id,
                created_at=now, next_attempt_at=now,
                payload={"title": title, "text": text, "incident": context["incident"],
                         "drill": incident.drill, "status_url": context["status_url"],
                         "recipient": notifier}))
        return messages

    # ---- operator actions ------------------------------------------------------------

    async def acknowledge(self, incident_id: str, by: str, note: str | None) -> Incident | None:
        now = self.clock()
        incident = self._find_open(incident_id)
        if incident is None:
            return None
        if incident.acknowledged_by is None:
            incident.acknowledged_by, incident.acknowledged_at = by, now
            incident.ack_note = note
            await self.store.save_incident(incident)
            await self._timeline(incident, now, "acknowledged",
                                 f"acknowledged by {by}" + (f": {note}" if note else ""),
                                 {"by": by, "note": note})
            log.info("incident_acknowledged", incident=incident.id, by=by)
            plan = self._plan_of(incident)
            recorded = await self.store.steps_recorded(incident.id)
            if plan is not None and plans.anything_sent(recorded) and not incident.held:
                await self._send(incident, plans.DueStep("ack", 0, "acknowledged",
                                                         plans.it_targets(plan)), now)
        return incident

    async def add_note(self, incident_id: str, by: str, text: str) -> Incident | None:
        now = self.clock()
        incident = self._find_open(incident_id)
        if incident is None:
            return None
        self._latest_note[incident.id] = {"by": by, "text": text, "at": now}
        incident.last_note_at = now
        await self.store.save_incident(incident)
        await self._timeline(incident, now, "note", text, {"by": by})
        return incident

    def _find_open(self, incident_id: str) -> Incident | None:
        return next((i for i in self.open.values() if i.id == incident_id), None)

    async def restore_notes(self) -> None:
        """Latest progress note per open incident, from the timeline, after a restart."""
        for incident in self.open.values():
            for entry in await self.store.timeline(incident.id):
                if entry.kind == "note":
                    self._latest_note[incident.id] = {
                        "by": entry.data.get("by"), "text": entry.text, "at": entry.at}

    async def _timeline(self, incident: Incident, now: float, kind: str, text: str,
                        data: dict[str, Any] | None = None) -> None:
        await self.store.add_timeline(TimelineEntry(incident.id, now, kind, text, data or {}))


def _public_note(note: dict[str, Any] | None, config: Config) -> dict[str, Any] | None:
    if note is None:
        return None
    return {"by": note["by"], "text": note["text"],
            "at_local": local(note["at"], config.site.tz)}
