"""What must hold after every simulated run (issue 10), judged from the outside: the probe
results the world produced, the messages the store holds and the incidents' records.

The oracle (`episodes`) recounts hard failures from the raw probe results with the SPEC's
rule (`confirm` equal non-OK results make a failure hard, `recover` OKs clear it), apart from
the state machine under test, so a bug in `advance` shows up here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from monitor.core.models import Incident, OutboxMessage
from monitor.core.result import State
from monitor.incidents import plans
from tests.sim.hospital import CONFIRM, DEPARTMENT_STEP_AFTER, IT, REAL_NOTIFIERS, RECOVER
from tests.sim.world import CONFIG, T0, TICK, Run

SETTLE = 16.0
"""dependency_settle's default here: interval + retry × (confirm − 1) + timeout."""
SLACK = 2 * SETTLE + 2 * TICK + 3
"""How late a decision may be: the settle time (longer while a root is soft) and two ticks."""
MAX_HOLD = CONFIG.defaults.flapping.max_hold


@dataclass(frozen=True)
class Episode:
    """One hard failure of one check, as the oracle counts it (times from the run's start)."""

    check: str
    system: str
    state: State
    first_fail: float
    hard_at: float
    cleared_at: float | None

    def end(self, run: Run) -> float:
        return self.cleared_at if self.cleared_at is not None else run.scenario.duration


def episodes(run: Run) -> list[Episode]:
    found: list[Episode] = []
    for check_id, probes in run.probes.items():
        system = CONFIG.check(check_id).system
        streak, current, first, hard = 0, State.OK, None, None
        oks, first_ok = 0, 0.0
        hard_at = 0.0
        for t, state in probes:
            if state is State.OK:
                if hard is not None:
                    oks += 1
                    first_ok = t if oks == 1 else first_ok
                    if oks >= RECOVER:
                        assert first is not None
                        found.append(Episode(check_id, system, hard, first, hard_at, first_ok))
                        hard, first, streak, current = None, None, 0, State.OK
                else:
                    streak, first, current = 0, None, State.OK
                continue
            oks = 0
            if first is None:
                first = t
            streak = streak + 1 if state is current else 1
            current = state
            if hard is None and streak >= CONFIRM:
                hard, hard_at = state, t
            elif hard is not None and streak >= CONFIRM:
                hard = state
        if hard is not None and first is not None:
            found.append(Episode(check_id, system, hard, first, hard_at, None))
    return found


def _rel(ts: float | None) -> float | None:
    return None if ts is None else ts - T0


class View:
    """The run's messages and incidents, indexed for the invariants."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.messages: list[OutboxMessage] = list(run.store.outbox)
        self.incidents: dict[str, Incident] = dict(run.store.incidents)
        self.episodes = episodes(run)
        self.linked: dict[str, set[str]] = {}
        """incident id -> root incident ids it was ever caused_by."""
        self.linked_spans: dict[str, list[tuple[float, float]]] = {}
        """incident id -> (from, to) while it was caused_by another (times from the start)."""
        for incident_id, entries in run.store.timelines.items():
            since = None
            for entry in entries:
                if entry.kind == "caused_by":
                    root = entry.text.split()[2]
                    self.linked.setdefault(incident_id, set()).add(root)
                    since = entry.at - T0 if since is None else since
                elif entry.kind in ("caused_by_cleared", "resolved") and since is not None:
                    self.linked_spans.setdefault(incident_id, []).append(
                        (since, entry.at - T0))
                    since = None
            if since is not None:
                self.linked_spans.setdefault(incident_id, []).append(
                    (since, run.scenario.duration))

    def of(self, incident_id: str | None) -> Incident | None:
        return self.incidents.get(incident_id or "")

    def span(self, incident: Incident) -> tuple[float, float]:
        end = _rel(incident.resolved_at)
        return (incident.started_at - T0,
                end if end is not None and incident.status == "resolved"
                else self.run.scenario.duration)

    def up_at(self, t: float) -> float | None:
        """The first moment at or after t at which the daemon runs, or None."""
        for start, stop in self.run.up:
            if t < stop:
                return max(t, start)
        return None

    def quiet(self, system: str, t: float) -> float:
        """The first moment >= t outside every maintenance window of the system and its roots."""
        systems = {system, *CONFIG.dependencies(system)}
        moved = True
        while moved:
            moved = False
            for w in self.run.scenario.windows:
                if w.system in systems and w.start <= t < w.end:
                    t, moved = w.end, True
        return t

    def after_uptime(self, t: float, need: float) -> float | None:
        """The moment the daemon has run `need` seconds since t (None: not within the run)."""
        for start, stop in self.run.up:
            if stop <= t:
                continue
            begin = max(t, start)
            if stop - begin >= need:
                return begin + need
            need -= stop - begin
        return None

    def deadline(self, system: str, t: float) -> float | None:
        """When a decision due at t must have happened (None: the run ended first): SLACK
        seconds of the daemon running, outside maintenance of the system and its roots."""
        for _ in range(8):
            up = self.up_at(t)
            if up is None:
                return None
            quiet = self.quiet(system, up)
            if quiet == up:
                return self.after_uptime(up, SLACK)
            t = quiet
        return None


def _told(messages: Iterable[OutboxMessage]) -> set[str]:
    return {m.notifier for m in messages if m.kind != "recovery"}


def it_hears_every_outage(v: View) -> list[str]:
    """Every hard CRIT failure that lasts past the detection bound reaches IT."""
    problems = []
    for e in v.episodes:
        if e.state is not State.CRIT:
            continue
        due = v.deadline(e.system, e.hard_at)
        if due is None or due > e.end(v.run):
            continue
        systems = {e.system, *CONFIG.dependencies(e.system)}
        heard = [m for m in v.messages if m.notifier == IT
                 and m.kind in ("outage_it", "early_warning")
                 and (inc := v.of(m.incident_id)) is not None and inc.system in systems
                 and m.created_at - T0 <= due and v.span(inc)[1] >= e.first_fail]
        if not heard:
            problems.append(f"IT never heard of {e.check} hard CRIT at {e.hard_at:.0f}s "
                            f"(failing since {e.first_fail:.0f}s, until {e.end(v.run):.0f}s)")
    return problems


def departments_hear_each_outage_once(v: View) -> list[str]:
    problems = []
    by_dept_notifier: dict[str, list[OutboxMessage]] = {}
    for m in v.messages:
        if m.kind == "department_outage":
            by_dept_notifier.setdefault(m.notifier, []).append(m)
    for notifier, sent in by_dept_notifier.items():
        ids = [m.incident_id for m in sent]
        if len(ids) != len(set(ids)):
            problems.append(f"{notifier} got department_outage twice for one incident")
    for m in v.messages:
        at = m.created_at - T0
        for start, stop in v.linked_spans.get(m.incident_id or "", []):
            if start <= at < stop and m.kind != "recovery":
                problems.append(f"{m.incident_id} sent {m.kind} to {m.notifier} at {at:.0f}s "
                                "while caused by another incident")
    for e in v.episodes:
        if e.state is not State.CRIT:
            continue
        up = v.up_at(e.hard_at)
        if up is None:
            continue
        plan_clock = v.quiet(e.system, up)  # the plan starts when maintenance is over
        nominal = max(plan_clock + DEPARTMENT_STEP_AFTER, e.first_fail + MAX_HOLD)
        due = v.deadline(e.system, nominal)
        if due is None or due > e.end(v.run):
            continue
        systems = {e.system, *CONFIG.dependencies(e.system)}
        for dept in CONFIG.system(e.system).departments:
            hooks = set(CONFIG.department(dept).notify)
            got = [m for m in v.messages if m.kind == "department_outage"
                   and m.notifier in hooks and (inc := v.of(m.incident_id)) is not None
                   and inc.system in systems and m.created_at - T0 <= due
                   and v.span(inc)[1] >= e.first_fail]
            if not got:
                problems.append(f"{dept} never heard of {e.check} down {e.first_fail:.0f}s–"
                                f"{e.end(v.run):.0f}s")
    return problems


def _unstable_before(v: View, check: str, t: float) -> bool:
    probes = [s for when, s in v.run.probes[check] if when <= t + 0.001]
    for end in range(len(probes), 0, -1):
        window = probes[max(0, end - 21):end]
        if sum(s is not State.OK for s in window) >= 7:
            return True
    return False


def no_notice_without_a_real_failure(v: View) -> list[str]:
    """No department (or anyone) hears of a system whose checks never really failed."""
    problems = []
    for m in v.messages:
        inc = v.of(m.incident_id)
        if inc is None or m.kind not in ("department_outage", "outage_it", "early_warning"):
            continue
        systems = {inc.system} | {i.system for i in v.incidents.values()
                                  if inc.id in v.linked.get(i.id, set())}
        at = m.created_at - T0
        real = any(e.system in systems and e.hard_at <= at + 0.001 for e in v.episodes) or any(
            _unstable_before(v, c.id, at) for s in systems for c in CONFIG.checks_of(s))
        if not real:
            problems.append(f"{m.kind} to {m.notifier} at {at:.0f}s for {inc.system} "
                            "without a hard or unstable failure")
    return problems


def no_dependent_pages_on_its_own(v: View) -> list[str]:
    """A dependent whose root breaks within the settle time sends nothing while it is down."""
    problems = []
    for inc in v.incidents.values():
        roots = CONFIG.dependencies(inc.system)
        if not roots or inc.drill:
            continue
        opened = inc.opened_at - T0
        for e in v.episodes:
            if e.system not in roots or e.state is not State.CRIT:
                continue
            if not (e.hard_at <= opened + SETTLE + TICK and e.end(v.run) > opened):
                continue
            own = [m for m in v.messages if m.incident_id == inc.id
                   and opened <= m.created_at - T0 < e.end(v.run)]
            for m in own:
                problems.append(f"{inc.id} ({inc.system}) sent {m.kind} to {m.notifier} at "
                                f"{m.created_at - T0:.0f}s although its root {e.system} was "
                                f"hard CRIT from {e.hard_at:.0f}s")
    return problems


def recovery_goes_to_those_told(v: View) -> list[str]:
    problems = []
    for inc in v.incidents.values():
        if inc.status != "resolved" or inc.drill:
            continue
        mine = [m for m in v.messages if m.incident_id == inc.id]
        told = _told(mine)
        recovery = {m.notifier for m in mine if m.kind == "recovery"}
        plan = CONFIG.plan("standard")
        expected = {r.notifier for r in plans.resolve_targets(plan.on_recovery, CONFIG, inc)}
        if inc.caused_by:
            if recovery:
                problems.append(f"{inc.id} sent a recovery although caused by {inc.caused_by}")
            continue
        if told and recovery != told & expected:
            problems.append(f"{inc.id} recovery went to {sorted(recovery)}, told "
                            f"{sorted(told)}: expected {sorted(told & expected)}")
        for m in mine:
            if m.kind == "recovery" and m.payload["incident"]["resolved_at"] is None:
                problems.append(f"{inc.id} recovery without an end of the outage window")
        absorbed = [i for i in v.incidents.values() if inc.id in v.linked.get(i.id, set())
                    and not [m for m in v.messages if m.incident_id == i.id]]
        earliest = min([inc.started_at] + [i.started_at for i in absorbed])
        if recovery and inc.started_at > earliest:
            problems.append(f"{inc.id} recovery window starts {inc.started_at - T0:.0f}s, after "
                            f"the earliest absorbed failure at {earliest - T0:.0f}s")
    return problems


def one_incident_per_outage(v: View) -> list[str]:
    """A hard failure is one incident, across restarts too (else steps would repeat)."""
    problems = []
    for e in v.episodes:
        overlapping = {i.id for i in v.incidents.values() if i.system == e.system
                       and not i.drill and v.span(i)[0] <= e.end(v.run)
                       and v.span(i)[1] >= e.hard_at + 0.001
                       and i.opened_at - T0 >= e.first_fail}
        if len(overlapping) > 1:
            problems.append(f"{e.check} down {e.first_fail:.0f}s–{e.end(v.run):.0f}s made "
                            f"{len(overlapping)} incidents: {sorted(overlapping)}")
    return problems


def no_step_skipped(v: View) -> list[str]:
    """A critical incident nothing held sends each step that fell due while it was open."""
    problems = []
    plan = CONFIG.plan("standard")
    for inc in v.incidents.values():
        if inc.severity != "critical" or inc.drill or inc.plan_started_at is None:
            continue
        entries = v.run.store.timelines.get(inc.id, [])
        if any(e.kind in ("hold", "caused_by", "escalated") for e in entries):
            continue
        recorded = {k for (i, k, _o) in v.run.store.steps if i == inc.id}
        end = v.span(inc)[1]
        for index, step in enumerate(plan.steps):
            if step.after is None:
                continue
            due = v.deadline(inc.system, inc.plan_started_at - T0 + step.after)
            if due is not None and due < end and f"step-{index}" not in recorded:
                problems.append(f"{inc.id} never decided {step.message} (due "
                                f"{inc.plan_started_at - T0 + step.after:.0f}s, open until "
                                f"{end:.0f}s)")
    return problems


def cause_has_evidence(v: View) -> list[str]:
    return [f"{i.id}: cause {i.suspected_cause} without evidence" for i in v.incidents.values()
            if i.suspected_cause != "unknown" and not i.cause_evidence]


def nothing_real_in_a_drill(v: View) -> list[str]:
    return [f"drill message {m.kind} to real channel {m.notifier}" for m in v.messages
            if (inc := v.of(m.incident_id)) is not None and inc.drill
            and m.notifier in REAL_NOTIFIERS]


def engine_errors(v: View) -> list[str]:
    return [e for e in v.run.errors if "database is locked" not in e]


INVARIANTS: list[Callable[[View], list[str]]] = [
    it_hears_every_outage, departments_hear_each_outage_once,
    no_notice_without_a_real_failure, no_dependent_pages_on_its_own,
    recovery_goes_to_those_told, one_incident_per_outage, no_step_skipped,
    cause_has_evidence, nothing_real_in_a_drill, engine_errors,
]


def check(run: Run) -> list[str]:
    view = View(run)
    return [f"{inv.__name__}: {p}" for inv in INVARIANTS for p in inv(view)]


def describe(run: Run) -> str:
    """A readable account of a failing run: probes, messages, timelines."""
    lines = [f"scenario: {run.scenario}"]
    for e in episodes(run):
        lines.append(f"  episode {e}")
    for m in run.store.outbox:
        lines.append(f"  {m.created_at - T0:7.1f}s {m.kind:18} → {m.notifier:12} "
                     f"{m.incident_id}")
    for incident_id, entries in run.store.timelines.items():
        for entry in entries:
            lines.append(f"  {entry.at - T0:7.1f}s {incident_id} {entry.kind}: {entry.text}")
    return "\n".join(lines)
