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
from monitor.delivery.outbox import FELL_BACK, URGENT_KINDS
from monitor.incidents import plans
from tests.sim.hospital import (
    ANNOUNCED,
    CONFIRM,
    DEPARTMENT_STEP_AFTER,
    DRILL_NOTIFIERS,
    IT,
    REAL_NOTIFIERS,
    RECOVER,
)
from tests.sim.world import CONFIG, T0, TICK, Delivery, Run, Window

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
    healed: float | None = None
    """The probe that made it OK again (the `recover`-th OK), None while it lasts."""

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
                        found.append(Episode(check_id, system, hard, first, hard_at, first_ok,
                                             t))
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
        self.drill_ids = {d.incident_id for d in run.drills} | {
            i.id for i in run.store.incidents.values() if i.drill}
        self.live: list[OutboxMessage] = [m for m in run.store.outbox
                                          if m.incident_id not in self.drill_ids]
        """Every message of the daemon (fallback copies too); drills' kept records left out."""
        self.messages: list[OutboxMessage] = [m for m in self.live
                                              if not m.payload.get("failed_channels")]
        """The daemon's own messages (no fallback copies)."""
        self.incidents: dict[str, Incident] = {k: i for k, i in run.store.incidents.items()
                                               if k not in self.drill_ids}
        self.windows = [*run.scenario.windows,
                        *(Window(s, ANNOUNCED[1], ANNOUNCED[2]) for s in ANNOUNCED[0])]
        self.log: list[Delivery] = run.net.log if run.net is not None else []
        self.episodes = episodes(run)
        self.first_root: dict[str, str] = {}
        """incident id -> the root it was first caused_by (the one that absorbed it)."""
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
                    self.first_root.setdefault(incident_id, root)
                    since = entry.at - T0 if since is None else since
                elif entry.kind in ("caused_by_cleared", "resolved") and since is not None:
                    self.linked_spans.setdefault(incident_id, []).append(
                        (since, entry.at - T0))
                    since = None
            if since is not None:
                self.linked_spans.setdefault(incident_id, []).append(
                    (since, run.scenario.duration))

    @staticmethod
    def healed_at(e: Episode) -> float | None:
        return e.healed

    def just_restarted(self, t: float) -> bool:
        """Within the first minute after a restart: restored states are not the probes'."""
        return any(start > 0 and start <= t < start + 60 for start, _ in self.run.up)

    def of(self, incident_id: str | None) -> Incident | None:
        return self.incidents.get(incident_id or "")

    def span(self, incident: Incident) -> tuple[float, float]:
        """(start, end) of the incident: its outage window, and until it really closed (a
        flapping root stays open past the end of its window, `resolved_at`)."""
        end = _rel(incident.resolved_at)
        closed = [e.at - T0 for e in self.run.store.timelines.get(incident.id, [])
                  if e.kind == "resolved"]
        if end is not None and closed:
            end = max(end, closed[-1])
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
            for w in self.windows:
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
            if quiet != up:
                t = quiet
                continue
            systems = {system, *CONFIG.dependencies(system)}
            starting = [w.end for w in self.windows if w.system in systems
                        and up < w.start <= up + SLACK]
            if starting:  # a window opening while the decision may still wait holds it
                t = max(starting)
                continue
            return self.after_uptime(up, SLACK)
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
        roots = {e.system, *CONFIG.dependencies(e.system)}
        for _ in range(8):  # a window opening before the step restarts the plan at its end
            opening = [w for w in v.windows if w.system in roots
                       and plan_clock < w.start <= plan_clock + DEPARTMENT_STEP_AFTER + SLACK]
            if not opening:
                break
            plan_clock = v.quiet(e.system, min(w.start for w in opening))
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
        # Absorbed: linked to it and silent, not because of planned maintenance (whose own
        # notices cover its paper records).
        absorbed = [i for i in v.incidents.values() if v.first_root.get(i.id) == inc.id
                    and not [m for m in v.messages if m.incident_id == i.id]
                    and v.quiet(i.system, i.started_at - T0) == i.started_at - T0]
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
                       and not i.drill and i.opened_at - T0 <= e.end(v.run)
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


# ---- delivery (SPEC 6): nothing lost or silent, never twice, fallback in time -------------

RETRY_BOUND = 60 * 1.2 + 2 * TICK + 5
"""A working channel gets a pending message within one longest backoff (max_delay 60s,
+20% jitter) and a pass."""
FALLBACK_SLACK = 1.0
"""The attempt that decides a fallback comes at `fallback_after` on the dot; the copy is
queued in the same pass."""


def _faults(v: View, notifier: str) -> list[tuple[float, float]]:
    return [(f.start, f.start + f.length) for f in v.run.scenario.channel_faults
            if f.notifier == notifier]


def _healthy_from(v: View, notifier: str, since: float, need: float) -> float | None:
    """The first moment >= since from which the channel works and the daemon runs for
    `need` seconds without a break (None: not within the run)."""
    faults = _faults(v, notifier)
    starts = sorted({since, *(b for _, b in faults if b >= since),
                     *(a for a, _ in v.run.up if a >= since)})
    for t0 in starts:
        end = t0 + need
        if end > v.run.scenario.duration:
            return None
        if any(a < end and t0 < b for a, b in faults):
            continue
        if any(a <= t0 and end <= b for a, b in v.run.up):
            return t0
    return None


def _attempts(v: View, m: OutboxMessage, via: str = "live") -> list[Delivery]:
    return [d for d in v.log if d.via == via and d.notifier == m.notifier
            and d.key == m.idempotency_key]


def nothing_lost_or_silent(v: View) -> list[str]:
    """Every message ends sent (and the channel got it), or stays visible as failed or
    pending, and one given up on falls back; a working channel gets it within RETRY_BOUND.

    Caught on purpose: a sender that marks a message sent although the channel refused it,
    and a retry that never comes (`next_attempt_at` pushed out of reach)."""
    problems = []
    for m in v.live:
        attempts = _attempts(v, m)
        ok = [d for d in attempts if d.ok]
        created = m.created_at - T0
        if m.status == "sent" and not ok and not (m.answer or "").startswith("skipped"):
            problems.append(f"{m.idempotency_key} marked sent, never delivered")
        elif m.status in ("failed", "undeliverable"):
            last = attempts[-1] if attempts else None
            fault = v.run.net.fault(m.notifier, last.at) if v.run.net and last else None
            if m.status == "failed" and (fault is None or not fault.permanent):
                problems.append(f"{m.idempotency_key} failed without a permanent refusal")
            notifier = CONFIG.notifier(m.notifier)
            if notifier.fallback and not m.payload.get(FELL_BACK):
                problems.append(f"{m.idempotency_key} given up without falling back to "
                                f"{notifier.fallback}")
        if m.status == "failed":
            continue
        healthy = _healthy_from(v, m.notifier, created, RETRY_BOUND)
        if healthy is not None and not any(d.at <= healthy + RETRY_BOUND for d in ok):
            problems.append(f"{m.idempotency_key} ({m.status}) not delivered by "
                            f"{healthy + RETRY_BOUND:.0f}s although {m.notifier} worked from "
                            f"{healthy:.0f}s")
    return problems


def never_sent_twice(v: View) -> list[str]:
    """A channel receives each idempotency key once (a store that failed to record a
    delivery may repeat it: at least once, SPEC 9). Caught on purpose: a sender that leaves
    a delivered message pending."""
    seen: dict[tuple[str, str], int] = {}
    for d in v.log:
        if d.ok:
            seen[(d.notifier, d.key)] = seen.get((d.notifier, d.key), 0) + 1
    faulted = v.run.net.store_faulted if v.run.net else set()
    return [f"{key} delivered {n} times to {notifier}" for (notifier, key), n in seen.items()
            if n > 1 and key not in faulted]


def _step_of(key: str) -> tuple[str, str]:
    """(incident:step, occurrence) of a step message or fallback copy key."""
    parts = key.split(":")
    return ":".join(parts[:2]), parts[-1]


def _to_fallback(v: View, m: OutboxMessage, fallback: str) -> list[OutboxMessage]:
    """What reached `fallback` for m's step: its own direct message, or copies carrying
    the same text m carried (the same department's notice)."""
    step, occurrence = _step_of(m.idempotency_key)
    found = []
    for other in v.live:
        if other.notifier != fallback or other.kind != m.kind or other is m:
            continue
        o_step, o_occ = _step_of(other.idempotency_key)
        if m.incident_id is not None and (o_step, o_occ) != (step, occurrence):
            continue
        if other.payload.get("failed_channels"):
            if other.payload.get("text") == m.payload.get("text"):
                found.append(other)
        elif m.incident_id is not None:
            found.append(other)  # the step's own message to the fallback (a direct one)
    return found


def fallback_in_time(v: View) -> list[str]:
    """SPEC 6: an urgent message whose attempt at `fallback_after` fails, or any message
    given up on, reaches its fallback at once (a copy with the same text, or the step's own
    message when the fallback was a direct recipient); a copy only after a failure; one copy
    per step, fallback and recipient; none beside a direct message; the copy names every
    channel that failed.

    Caught on purpose: copies made at the first failure (not after fallback_after), a copy
    beside a direct message; and maintenance notices whose copies for two departments
    collapsed into one (a real bug the simulator found)."""
    problems = []
    for m in v.live:
        fallback = CONFIG.notifier(m.notifier).fallback
        if not fallback:
            continue
        attempts = _attempts(v, m)
        failed = [d for d in attempts if not d.ok]
        created = m.created_at - T0
        after = CONFIG.notifier(m.notifier).fallback_after
        deciding = [d for d in failed if m.kind in URGENT_KINDS
                    and d.at >= created + after - FALLBACK_SLACK]
        if m.status in ("failed", "undeliverable") and failed:
            deciding.append(failed[-1])
        reached = _to_fallback(v, m, fallback)
        if deciding:
            first = min(d.at for d in deciding)
            if not [r for r in reached if r.created_at - T0 <= first + FALLBACK_SLACK]:
                problems.append(f"{m.idempotency_key}: failed at {first:.0f}s (due "
                                f"{created:.0f}s) but nothing reached {fallback}")
        for copy_ in [r for r in reached if r.payload.get("failed_channels")]:
            at = copy_.created_at - T0
            early = [d for d in failed if d.at <= at + 0.001]
            given_up = m.status in ("failed", "undeliverable") and early and \
                early[-1].at >= at - FALLBACK_SLACK
            in_time = m.kind in URGENT_KINDS and at >= created + after - FALLBACK_SLACK
            if m.notifier in copy_.payload["failed_channels"] and not (
                    early and (given_up or in_time)):
                problems.append(f"{copy_.idempotency_key} at {at:.0f}s: {m.notifier} had not "
                                "failed long enough for a fallback")
    copies: dict[tuple[str, str, str, str], list[OutboxMessage]] = {}
    for m in v.live:
        if m.payload.get("failed_channels"):
            step, occurrence = _step_of(m.idempotency_key)
            copies.setdefault((m.notifier, step, occurrence, str(m.payload.get("text"))),
                              []).append(m)
    for (notifier, step, occurrence, _text), found in copies.items():
        if len(found) > 1:
            problems.append(f"{len(found)} copies to {notifier} for {step}#{occurrence}")
        direct = [m for m in v.messages if m.incident_id and m.notifier == notifier
                  and _step_of(m.idempotency_key) == (step, occurrence)]
        if direct and found[0].incident_id:
            problems.append(f"copy to {notifier} for {step} although it was a direct recipient")
        for c in found:
            text = next((d.text for d in v.log if d.key == c.idempotency_key), None)
            for channel in c.payload["failed_channels"]:
                if text is not None and channel not in text:
                    problems.append(f"{c.idempotency_key} does not name {channel}")
    return problems


# ---- drills (SPEC 10) -----------------------------------------------------------------------


def drills_stay_drills(v: View) -> list[str]:
    """No drill message reaches a real channel (unless --live), nothing but the drill
    incident's messages goes out during a drill, no live message is marked DRILL, a drill
    changes no live record, and each drill has its own id and keys.

    Caught on purpose: announce_maintenance without its drill guard (the drill sends the
    real planned-downtime notice), the drill route ignoring `drill: true`, a drill's
    undelivered messages kept as pending (the daemon then sends them)."""
    problems = []
    ids = [d.incident_id for d in v.run.drills]
    if len(ids) != len(set(ids)):
        problems.append(f"drill ids reused: {ids}")
    live_ids = {i for i in v.run.store.incidents if i not in v.drill_ids}
    for run in v.run.drills:
        via = run.incident_id
        if run.incident_id in live_ids:
            problems.append(f"{run.incident_id} is also a live incident's id")
        for d in v.log:
            if d.via != via:
                continue
            if d.incident != run.incident_id:
                problems.append(f"drill {via} sent {d.kind} of {d.incident} to {d.notifier}")
            if not run.drill.live and d.notifier not in DRILL_NOTIFIERS:
                problems.append(f"drill {via} message {d.kind} reached real {d.notifier}")
            if not d.drill or "DRILL" not in d.title:
                problems.append(f"drill {via} message {d.kind} to {d.notifier} not marked")
        for m in run.messages:
            if m.incident_id != run.incident_id or not m.idempotency_key.startswith(
                    f"{run.incident_id}:"):
                problems.append(f"drill {via} message with key {m.idempotency_key}")
            if m.idempotency_key in run.keys_taken:
                problems.append(f"drill {via} reuses the key {m.idempotency_key}")
        kept = [m for m in v.run.store.outbox if m.incident_id == run.incident_id]
        if len(kept) != len(run.messages):
            problems.append(f"drill {via}: {len(run.messages)} messages, {len(kept)} kept")
        if run.before != run.after:
            problems.append(f"drill {via} changed the live store")
    for d in v.log:
        if d.via == "live" and (d.drill or d.title.startswith("[DRILL]")):
            problems.append(f"live message {d.kind} to {d.notifier} marked DRILL")
        if d.via == "live" and d.incident in v.drill_ids:
            problems.append(f"the daemon sent the drill's {d.kind} to {d.notifier}")
    return problems


# ---- cause and evidence (SPEC 4) ------------------------------------------------------------


def _state_at(v: View, check: str, t: float) -> State | None:
    last = None
    for when, state in v.run.probes[check]:
        if when > t + 0.001:
            break
        last = state
    return last


def _hard_failing_at(v: View, check: str, t: float) -> bool:
    """Failing as the oracle counts it: hard from its first failed probe until healed."""
    for e in v.episodes:
        if e.check != check or e.first_fail > t + 0.001:
            continue
        healed = v.healed_at(e)
        if healed is None or t < healed - 0.001:
            return True
    return False


def _unsettled(v: View, check: str, t: float) -> bool:
    """A failure among its last 21 results: it may still be flapping (the flap detector
    looks at those 21), and a flapping root keeps its incident open (SPEC 4)."""
    recent = [s for when, s in v.run.probes[check] if when <= t + 0.001][-21:]
    return any(s is not State.OK for s in recent)


def _system_down_at(v: View, system: str, t: float) -> bool:
    """Hard CRIT (itself or a system it depends on), or failing too often to be settled
    (a flapping root keeps its incident open, SPEC 4)."""
    systems = {system, *CONFIG.dependencies(system)}
    hard = any(e.system in systems and e.state is State.CRIT and e.hard_at <= t + 0.001
               and (v.healed_at(e) is None or t <= (v.healed_at(e) or 0.0) + 0.001)
               for e in v.episodes)
    return hard or any(_unsettled(v, c.id, t) for s in systems for c in CONFIG.checks_of(s))


def cause_names_real_failures(v: View) -> list[str]:
    """Each version of an incident record names as failing only checks that failed then,
    as answering only checks that answered then, and is caused_by a root only while that
    root's system really was down.

    Caught on purpose: evidence lines that list every check of the system as failing, and
    a link to a root that is kept after the root healed (caused_by never cleared)."""
    problems = []
    previous: dict[str, tuple[object, ...]] = {}
    for at, inc in v.run.versions:
        if inc.drill or inc.id in v.drill_ids:
            continue
        t = at - T0
        shown = (inc.suspected_cause, tuple(inc.cause_evidence))
        # A new cause or evidence was computed now (an unchanged one is carried along).
        fresh = previous.get(inc.id) != shown
        previous[inc.id] = shown
        if fresh and not v.just_restarted(t):
            for line in inc.cause_evidence:
                name = line.split(" ", 1)[0]
                if name not in v.run.probes:
                    continue
                state = _state_at(v, name, t)
                if " answers: " in line:
                    if state is not State.OK or _hard_failing_at(v, name, t):
                        seen = state.name if state is not None else "not probed"
                        problems.append(f"{inc.id} at {t:.0f}s: evidence says {name} answers "
                                        f"(it was {seen})")
                elif state is State.OK and not _hard_failing_at(v, name, t):
                    problems.append(f"{inc.id} at {t:.0f}s: evidence names {name} failing "
                                    "while it answered")
        if inc.caused_by and inc.status == "open":
            root = v.incidents.get(inc.caused_by)
            if root is None or not _system_down_at(v, root.system, t):
                problems.append(f"{inc.id} at {t:.0f}s shown caused by {inc.caused_by} "
                                f"({root.system if root else '?'}), which was not down")
    return problems


def told_departments_get_the_whole_window(v: View) -> list[str]:
    """A department told of an outage gets a recovery whose back-fill window starts no
    later than that outage's start, from the incident itself or from the root it was
    caused by when it ended (SPEC 4, 5).

    Found by the simulator: the HIS database down from 217 s told the wards; the core network
    broke at 669 s, the database's incident became caused by it and resolved silently, and
    the network's recovery gave the wards 670 s as the start of their paper records."""
    problems = []
    for inc in v.incidents.values():
        if inc.status != "resolved":
            continue
        told = {m.notifier for m in v.messages if m.incident_id == inc.id
                and m.kind == "department_outage"}
        if not told:
            continue
        candidates = [inc] + [r for r in v.incidents.values()
                              if r.id in v.linked.get(inc.id, set())]
        if any(r.status != "resolved" for r in candidates):
            continue  # a root still open: its recovery comes later
        for notifier in sorted(told):
            covering = [m for m in v.messages if m.kind == "recovery"
                        and m.notifier == notifier
                        and (r := v.incidents.get(m.incident_id or "")) in candidates
                        and r is not None and r.started_at <= inc.started_at + 1]
            if not covering:
                problems.append(f"{notifier} was told of {inc.id} ({inc.system}, from "
                                f"{inc.started_at - T0:.0f}s) but no recovery gives a window "
                                "from then")
    return problems


def same_second_root_takes_the_dependent(v: View) -> list[str]:
    """A root and a dependent that start failing in the same second, the root lasting at
    least as long: the dependent's incident ends caused_by the root's (SPEC 4, issue 10
    item 5). Caught on purpose: a dependent that opened before its root never linked."""
    problems = []
    faults = v.run.scenario.faults
    for root_fault in faults:
        root_system = CONFIG.check(root_fault.check).system
        for dep_fault in faults:
            dep_system = CONFIG.check(dep_fault.check).system
            if root_system not in CONFIG.dependencies(dep_system) or dep_fault.period \
                    or root_fault.period or root_fault.state is not State.CRIT:
                continue
            if int(root_fault.start) != int(dep_fault.start):
                continue
            if root_fault.start + root_fault.length < dep_fault.start + dep_fault.length + 60:
                continue  # the root heals first: the dependent carries on on its own
            if any(w.system in {dep_system, root_system, *CONFIG.dependencies(dep_system)}
                   and w.start < dep_fault.start + dep_fault.length and dep_fault.start < w.end
                   for w in v.windows) or v.run.scenario.restarts or \
                    v.run.scenario.store_faults:
                continue
            root_eps = [e for e in v.episodes if e.check == root_fault.check
                        and abs(e.first_fail - root_fault.start) < 15]
            dep_incs = [i for i in v.incidents.values() if i.system == dep_system
                        and abs(i.started_at - T0 - dep_fault.start) < 15]
            if not root_eps or not dep_incs:
                continue
            root_incs = {i.id for i in v.incidents.values()
                         if i.system in CONFIG.dependencies(dep_system)
                         and i.started_at - T0 <= root_eps[0].hard_at + 1}
            for inc in dep_incs:
                if inc.caused_by not in root_incs:
                    problems.append(f"{inc.id} ({dep_system}) broke with {root_system} in the "
                                    f"same second but ends caused_by {inc.caused_by}")
    return problems


INVARIANTS: list[Callable[[View], list[str]]] = [
    it_hears_every_outage, departments_hear_each_outage_once,
    no_notice_without_a_real_failure, no_dependent_pages_on_its_own,
    recovery_goes_to_those_told, one_incident_per_outage, no_step_skipped,
    cause_has_evidence, nothing_real_in_a_drill, engine_errors,
    nothing_lost_or_silent, never_sent_twice, fallback_in_time, drills_stay_drills,
    cause_names_real_failures, same_second_root_takes_the_dependent,
    told_departments_get_the_whole_window,
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
