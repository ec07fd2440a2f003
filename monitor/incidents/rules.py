"""The incident rules (SPEC 4, 5): pure functions of (facts, what was already sent, now) that
return the effects to apply. No I/O, no clock, no mutation of their inputs: every incident an
effect carries is a copy (`_copy`), so a table test can call a rule twice with the same facts
and get the same answer.

The engine calls them in this order each tick, applying the effects of one before the next
sees the result (a new incident needs its id before a dependent can link to it):

1. `announce_maintenance`  planned-downtime notices and "maintenance over"
2. `evaluate_system`       open / escalate / update / resolve, per changed system
3. `recovery`              after a resolve: the recovery step to those who were told
4. `link_dependencies`     caused_by and departments joining the root
5. `catch_up_departments`  a joined department still gets the notices already sent
6. `run_plan`              hold or release, and the steps that fell due
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Set
from dataclasses import replace

from monitor.core.models import Incident
from monitor.core.result import State
from monitor.core.types import Cause, HoldReason, IncidentStatus, MessageKind, Severity
from monitor.incidents import maintenance, plans
from monitor.incidents.cause import suspect_system
from monitor.incidents.compose import maintenance_messages, step_messages
from monitor.incidents.effects import (
    Change,
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
from monitor.incidents.facts import Facts
from monitor.probing.state import CheckState

Recorded = Mapping[tuple[str, int], str]
"""What the store says was decided for an incident: (step key, occurrence) -> sent|skipped."""


def _copy(incident: Incident) -> Incident:
    """A copy whose lists a rule may change without touching the live incident."""
    return replace(incident, failing_checks=[dict(c) for c in incident.failing_checks],
                   affected_departments=list(incident.affected_departments),
                   cause_evidence=list(incident.cause_evidence))


# ---- incidents from check states --------------------------------------------------------


def evaluate_system(facts: Facts, system_id: str, now: float) -> list[Effect]:
    """Open, escalate, update or resolve the system's incident from its checks' states.

    A check counts when it is hard non-OK or unstable (SPEC 4); a stale check (no fresh
    result) opens nothing, but keeps its last state in an incident that is already open.
    """
    states = facts.states_of(system_id)
    current = facts.open.get(system_id)
    failing = [s for s in states if s.troubled and s.check_id not in facts.unconfirmed
               and (current is not None or not s.stale)]
    if not failing:
        if current is None:
            return []
        if any(s.flapping for s in states):
            # One incident for a flapping system, not an open/resolve pair per flap.
            return []
        if not all(s.probed for s in states) \
                or len(states) < len(facts.config.checks_of(system_id)):
            # Just restarted, or just became the cluster leader and not yet read the other
            # members' states: a check not probed yet (or not known here) is no evidence.
            return []
        if current.source == "manual":
            # Declared by a person (SPEC 13.5): checks that joined it leave, a person closes it.
            if not current.failing_checks:
                return []
            cleared = _copy(current)
            cleared.failing_checks = []
            return [UpdateIncident(cleared, Change.CHECKS, tuple(_check_notes(current, [])))]
        return [resolve(current, states, now)]
    effects: list[Effect] = []
    severity = Severity.CRITICAL if any(s.incident_state is State.CRIT for s in failing) \
        else Severity.WARNING
    notes: list[Note] = []
    if current is None:
        incident = _new_incident(facts, system_id, failing, severity, now)
        opened = OpenIncident(incident, "drill" if facts.drill else "inc",
                              (Note("opened", f"{severity} incident opened",
                                    {"severity": severity}),))
        effects.append(opened)
        incident = _copy(incident)
        change = Change.CHECKS
    else:
        incident = _copy(current)
        change = Change.CHECKS
        if severity == "critical" and incident.severity == "warning":
            incident.severity = Severity.CRITICAL
            incident.plan_started_at = now
            notes.append(Note("escalated", "warning escalated to critical"))
            change = Change.ESCALATE
    notes += _check_notes(incident, failing)
    incident.failing_checks = [_check_entry(s) for s in failing]
    cause, incident.cause_evidence = suspect_system(facts.config, system_id, facts.states)
    incident.suspected_cause = Cause(cause)
    if current is None:
        # The opened incident's first checks and cause ride on the same record.
        effects[0] = OpenIncident(incident, opened.id_prefix, opened.notes + tuple(notes))
        return effects
    effects.append(UpdateIncident(incident, change, tuple(notes)))
    return effects


def _first_failure(s: CheckState, now: float) -> float:
    if s.failing:
        return s.first_failure_at or now
    return s.unstable_since or now


def _new_incident(facts: Facts, system_id: str, failing: list[CheckState], severity: Severity,
                  now: float) -> Incident:
    started = min(_first_failure(s, now) for s in failing)
    system = facts.config.system(system_id)
    return Incident(
        id="", system=system_id, severity=severity, started_at=started, opened_at=now,
        plan_started_at=started if severity == "critical" else None,
        affected_departments=list(system.departments), drill=facts.drill)


def _check_entry(s: CheckState) -> dict[str, object]:
    entry: dict[str, object] = {"id": s.check_id, "type": s.type,
                                "state": s.incident_state.name, "message": s.message}
    if s.unstable and not s.failing:
        entry["unstable"] = True
    if s.stale:
        entry["stale"] = True
        entry["last_run"] = s.last_run  # "not probed since" (pages, messages)
    return entry


def _check_notes(incident: Incident, failing: list[CheckState]) -> list[Note]:
    before = {c["id"]: c for c in incident.failing_checks}
    after = {s.check_id: _check_entry(s) for s in failing}
    notes = []
    for check_id in [c for c in after if c not in before]:
        notes.append(Note("check_failed", f"{check_id} {after[check_id]['state']}: "
                          f"{after[check_id]['message']}", {"check": check_id}))
    for check_id in [c for c in before if c not in after]:
        notes.append(Note("check_recovered", f"{check_id} OK", {"check": check_id}))
    for check_id in [c for c in after if c in before]:
        if after[check_id]["state"] != before[check_id]["state"]:
            notes.append(Note("check_state", f"{check_id} {before[check_id]['state']} → "
                              f"{after[check_id]['state']}", {"check": check_id}))
    return notes


def resolve(current: Incident, states: list[CheckState], now: float) -> ResolveIncident:
    recovered = [s.recovered_at for s in states if s.recovered_at is not None]
    incident = _copy(current)
    incident.status = IncidentStatus.RESOLVED
    incident.resolved_at = max(recovered) if recovered else now
    incident.failing_checks = []
    return ResolveIncident(incident, (Note("resolved", "all checks OK again"),))


def recovery(facts: Facts, incident: Incident, recorded: Recorded, told: Collection[str],
             now: float) -> list[Effect]:
    """The recovery step of a resolved incident: only to those who heard of the outage.

    A dependent incident's recovery is told by its root's."""
    plan = facts.plan_of(incident)
    if plan is None or not plan.on_recovery or not plans.anything_sent(dict(recorded)):
        return []
    if incident.caused_by:
        return []
    due = plans.DueStep("recovery", 0, MessageKind.RECOVERY, tuple(plan.on_recovery))
    return [SendStep(incident.id, due, tuple(step_messages(facts, incident, due, now, told)))]


# ---- dependencies -----------------------------------------------------------------------


def root_of(facts: Facts, open_: Mapping[str, Incident], system_id: str) -> Incident | None:
    """The deepest dependency with an open critical incident of its own making."""
    root = None
    for dep in facts.config.dependencies(system_id):
        candidate = open_.get(dep)
        if candidate is not None and candidate.severity == "critical":
            root = candidate
    if root is not None and root.caused_by is not None:
        return open_.get(root.caused_by_system or "") or root
    return root


def link_dependencies(facts: Facts, now: float) -> list[Effect]:
    """Mark dependents `caused_by` their root and add their departments to the root."""
    effects: list[Effect] = []
    work = dict(facts.open)  # copied on write: the live incidents are never changed here
    for system in list(work):
        incident = work[system]
        if not facts.config.has_system(system):
            continue
        root = root_of(facts, work, system)
        previous = incident.caused_by
        if root is not None and root.id != incident.id:
            if previous != root.id:
                incident = work[system] = _copy(incident)
                incident.caused_by, incident.caused_by_system = root.id, root.system
                effects.append(UpdateIncident(_copy(incident), Change.LINK, (
                    Note("caused_by", f"caused by {root.id} ({root.system})",
                         {"root": root.id, "system": root.system}),)))
                # Absorbed: the dependent was still waiting for its roots (nothing sent), or
                # it was running its own plan and told people, who will now hear of the
                # recovery only from the root: the root's window must start at theirs. Not
                # when it moves on from a root still open (that one absorbed it, and is
                # linked in turn).
                running = incident.held is None and incident.plan_started_at is not None \
                    and incident.plan_started_at <= now
                moved_on = previous is not None and any(
                    i.id == previous for i in work.values())
                absorbed = not moved_on and incident.started_at < root.started_at and (
                    incident.held == HoldReason.DEPENDENCY or _settling(facts, incident, now)
                    or incident.opened_at >= root.opened_at - dependency_settle(facts, system)
                    or running)
                if absorbed:
                    # The back-fill window covers the earliest failure the root absorbed; the
                    # root's plan keeps its own clock (plan_started_at is not moved).
                    root = work[root.system] = _copy(root)
                    if root.plan_started_at is None and root.severity == "critical":
                        root.plan_started_at = root.started_at
                    root.started_at = incident.started_at
                    effects.append(UpdateIncident(_copy(root), Change.SETTLE, (
                        Note("window_extended", f"outage window starts with {system}'s first "
                             "failed probe", {"system": system}),)))
            added = [d for d in facts.config.system(system).departments
                     if d not in root.affected_departments]
            if added:
                root = work[root.system] = _copy(root)
                root.affected_departments.extend(added)
                effects.append(UpdateIncident(_copy(root), Change.DEPARTMENTS, (
                    Note("departments_added", f"{system} depends on {root.system}: "
                         f"{', '.join(added)} affected",
                         {"system": system, "departments": list(added)}),)))
        elif previous is not None:
            incident = work[system] = _copy(incident)
            incident.caused_by = incident.caused_by_system = None
            incident.plan_started_at = now
            effects.append(UpdateIncident(_copy(incident), Change.UNLINK, (
                Note("caused_by_cleared",
                     f"{previous} resolved; this system still fails on its own",
                     {"root": previous}),)))
    return effects


def catch_up_departments(facts: Facts, root: Incident, recorded: Recorded,
                         now: float) -> list[Effect]:
    """Departments that joined after their notice went out still get it (same keys)."""
    plan = facts.plan_of(root)
    if plan is None:
        return []
    effects: list[Effect] = []
    for index, step in enumerate(plan.steps):
        key = f"step-{index}"
        if "departments" not in step.notify:
            continue
        for (rec_key, occurrence), status in recorded.items():
            if rec_key == key and status == "sent":
                due = plans.DueStep(key, occurrence, step.message, tuple(step.notify))
                effects.append(Enqueue(tuple(step_messages(facts, root, due, now)),
                                       "departments_caught_up",
                                       fields={"incident": root.id, "step": key}))
    return effects


# ---- plans ------------------------------------------------------------------------------


def dependency_settle(facts: Facts, system_id: str) -> float:
    """How long a dependent's own alerts wait for its roots (SPEC 4 `dependency_settle`)."""
    configured = facts.config.defaults.dependency_settle
    if configured is not None:
        return configured
    longest = 0.0
    for dep in facts.config.dependencies(system_id):
        for check in facts.config.checks_of(dep):
            interval = check.interval or facts.config.defaults.interval
            retry = min(check.retry_interval or facts.config.defaults.retry_interval, interval)
            confirm = check.confirm or facts.config.defaults.confirm
            timeout = check.timeout or facts.config.defaults.timeout
            longest = max(longest, interval + retry * (confirm - 1) + timeout)
    return max(5.0, longest)


def _settling(facts: Facts, incident: Incident, now: float) -> bool:
    """A dependent waits `dependency_settle` from its opening for a root to break, and up to
    as long again while a check of a root is failing but not yet hard."""
    if incident.drill or not facts.config.has_system(incident.system):
        return False
    roots = facts.config.dependencies(incident.system)
    if not roots:
        return False
    settle = dependency_settle(facts, incident.system)
    if settle <= 0:
        return False
    waited = now - incident.opened_at
    if waited < settle:
        return True
    if waited < 2 * settle:
        return any(s.unconfirmed for root in roots for s in facts.states_of(root))
    return False


def hold_reason(facts: Facts, incident: Incident, now: float) -> HoldReason | None:
    """Why the incident's steps must wait right now, or None."""
    if incident.caused_by or _settling(facts, incident, now):
        return HoldReason.DEPENDENCY
    if not incident.drill and facts.in_maintenance(incident.system, now):
        # A drill rehearses the plan even inside a window: nothing real is held by it.
        return HoldReason.MAINTENANCE
    states = facts.states_of(incident.system)
    if any(s.flapping or s.unstable for s in states):
        if now - incident.started_at < facts.config.defaults.flapping.max_hold:
            return HoldReason.FLAPPING
        # Past max_hold a system that works only every other minute is down for the clinic:
        # no "recovering" hold at each good probe (that was a hold/release pair every flap).
        return None
    failing = [facts.states.get(str(c["id"])) for c in incident.failing_checks]
    if failing and all(s is not None and s.state is State.OK for s in failing):
        # Every failing check answers again and is confirming its recovery: a step
        # falling due in these seconds would page people for a system coming back.
        return HoldReason.RECOVERING
    return None


def run_plan(facts: Facts, incident: Incident, recorded: Recorded, now: float) -> list[Effect]:
    """Hold or release the incident's notifications, and the steps that fell due."""
    effects: list[Effect] = []
    plan = facts.plan_of(incident)
    hold = hold_reason(facts, incident, now)
    if hold != incident.held:
        changed = _copy(incident)
        if hold is None and incident.held == HoldReason.MAINTENANCE:
            # The plan starts when the window ends (a dependent that was caused_by another
            # restarts its clock when it is unlinked; a settle wait keeps the clock).
            changed.plan_started_at = now if changed.severity == "critical" else None
        text = f"notifications held: {hold}" if hold else "notifications released"
        changed.held = hold
        effects.append(UpdateIncident(changed, Change.HOLD,
                                      (Note("hold", text, {"reason": hold}),)))
        incident = changed
    if plan is None:
        return effects
    if hold is HoldReason.FLAPPING and plan.early_warning and ("early", 0) not in recorded:
        # IT hears of a flapping or unstable system at once, as an early warning (SPEC 4).
        effects.append(step(facts, incident, plans.DueStep(
            "early", 0, MessageKind.EARLY_WARNING, tuple(plan.early_warning)), now))
    for due in plans.due_steps(incident, plan, dict(recorded), now):
        if due.key == "early" and hold is HoldReason.FLAPPING:
            continue  # sent just above
        if hold is not None:
            effects.append(HoldStep(incident.id, due, hold))
        else:
            effects.append(step(facts, incident, due, now))
    return effects


def step(facts: Facts, incident: Incident, due: plans.DueStep, now: float) -> Effect:
    """Send (or, `unless: acknowledged`, skip) one due step occurrence."""
    if due.skip_reason:
        return SkipStep(incident.id, due, HoldReason(due.skip_reason))
    after = None
    if due.kind == "progress_update":
        after = _copy(incident)
        after.last_update_sent_at = now
    return SendStep(incident.id, due, tuple(step_messages(facts, incident, due, now)), after)


# ---- maintenance ------------------------------------------------------------------------


def announce_maintenance(facts: Facts, announced: Set[str], now: float) -> list[Effect]:
    """Planned downtime: tell the departments ahead, and again when it is over.

    Never in a drill: a rehearsal sends only its own incident's messages (SPEC 10).
    """
    effects: list[Effect] = []
    if facts.drill:
        return effects
    for window in facts.windows:
        lead = maintenance.notice_due(window, now)
        candidates = []
        if lead is not None:
            candidates.append(("maintenance_notice", f"{window.key}:notice:{int(lead)}"))
        back = None
        if window.announce and now >= window.end and f"{window.key}:over" not in announced:
            back = maintenance.back_at(window, facts.states_of)
            if maintenance.over_due(window, now, down=maintenance.systems_down(
                    window, facts.open), back=back):
                candidates.append(("maintenance_over", f"{window.key}:over"))
        for kind, key in candidates:
            if key in announced:
                continue
            messages = maintenance_messages(facts.config, facts.renderer, kind, window, key,
                                            now, back=back if kind == "maintenance_over"
                                            else None)
            effects.append(Enqueue(tuple(messages), "maintenance_announced", key,
                                   {"kind": kind, "window": window.key}))
    return effects


# ---- operator actions -------------------------------------------------------------------


def acknowledge(facts: Facts, incident: Incident, by: str, note: str | None,
                recorded: Recorded, now: float, via: str = "api") -> list[Effect]:
    """Record who acknowledged; IT hears of it if anything was sent and nothing is held."""
    if incident.acknowledged_by is not None:
        return []
    acked = _copy(incident)
    acked.acknowledged_by, acked.acknowledged_at, acked.ack_note = by, now, note
    effects: list[Effect] = [UpdateIncident(acked, Change.ACKNOWLEDGE, (
        Note("acknowledged", f"acknowledged by {by}" + (f": {note}" if note else ""),
             {"by": by, "note": note, "via": via}),))]
    plan = facts.plan_of(acked)
    if plan is not None and plans.anything_sent(dict(recorded)) and not acked.held:
        effects.append(step(facts, acked, plans.DueStep("ack", 0, MessageKind.ACKNOWLEDGED,
                                                        plans.it_targets(plan)), now))
    return effects


def add_note(incident: Incident, by: str, text: str, now: float) -> list[Effect]:
    noted = _copy(incident)
    noted.last_note_at = now
    return [UpdateIncident(noted, Change.NOTE, (Note("note", text, {"by": by}),))]
