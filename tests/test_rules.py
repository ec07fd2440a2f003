"""The incident rules as tables: facts in, effects out, no store, no clock, no event loop.

Each row builds check states by feeding results to `advance` (as the scheduler does) and
asks one rule what it decides at a given time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pytest

from monitor.config.loader import load_config_text
from monitor.core.models import Incident
from monitor.core.result import Result, State
from monitor.core.types import HoldReason
from monitor.incidents import rules
from monitor.incidents.effects import (
    Change,
    HoldStep,
    OpenIncident,
    ResolveIncident,
    SendStep,
    SkipStep,
    UpdateIncident,
)
from monitor.incidents.engine import renderer_for
from monitor.incidents.facts import Facts
from monitor.incidents.maintenance import Window
from monitor.probing.state import CheckState, advance
from tests.test_engine import CONFIG, T0

config = load_config_text(CONFIG, "t.yaml", {})
renderer = renderer_for(config)


def states(**results: list[State]) -> dict[str, CheckState]:
    """Every check probed OK once, then the given results one second apart from T0."""
    out = {}
    for check in config.checks:
        cs = CheckState(check.id, check.system, check.type)
        advance(cs, Result(State.OK, "fine"), T0 - 100, 3, 2)
        for i, state in enumerate(results.get(check.id.replace("-", "_"), [])):
            advance(cs, Result(state, f"{check.id} {state.name}"), T0 + i, 3, 2)
        out[check.id] = cs
    return out


def incident(system: str = "his", severity: str = "critical", **kw: object) -> Incident:
    inc = Incident(id=f"inc-{system}", system=system, severity=severity, started_at=T0,
                   opened_at=T0 + 2, plan_started_at=T0 if severity == "critical" else None,
                   affected_departments=list(config.system(system).departments))
    for k, v in kw.items():
        setattr(inc, k, v)
    return inc


def facts(checks: dict[str, CheckState], *open_: Incident, windows: tuple[Window, ...] = (),
          ) -> Facts:
    return Facts(config=config, states=checks, open={i.system: i for i in open_},
                 windows=windows, renderer=renderer)


C, W, K = State.CRIT, State.WARN, State.OK


@dataclass
class Row:
    name: str
    results: dict[str, list[State]]
    open_: list[Incident] = field(default_factory=list)
    expect: list[tuple[type, str | None]] = field(default_factory=list)
    """(effect type, severity or change) in order."""


EVALUATE = [
    Row("nothing fails, nothing open", {}, [], []),
    Row("one failed probe is soft: nothing", {"his_web": [C]}, [], []),
    Row("three CRIT open a critical incident", {"his_web": [C, C, C]}, [],
        [(OpenIncident, "critical")]),
    Row("three WARN open a warning incident", {"his_web": [W, W, W]}, [],
        [(OpenIncident, "warning")]),
    Row("a warning incident escalates on CRIT", {"his_web": [C, C, C]},
        [incident(severity="warning")], [(UpdateIncident, Change.ESCALATE)]),
    Row("still failing: the record is refreshed", {"his_web": [C, C, C]}, [incident()],
        [(UpdateIncident, Change.CHECKS)]),
    Row("all OK again resolves", {"his_web": [C, C, C, K, K]}, [incident()],
        [(ResolveIncident, None)]),
    Row("one OK is not yet a recovery", {"his_web": [C, C, C, K]}, [incident()],
        [(UpdateIncident, Change.CHECKS)]),
]


@pytest.mark.parametrize("row", EVALUATE, ids=lambda r: r.name)
def test_evaluate_system(row: Row) -> None:
    checks = states(**row.results)
    before = copy.deepcopy(row.open_)
    effects = rules.evaluate_system(facts(checks, *row.open_), "his", T0 + 10)
    got = []
    for e in effects:
        assert isinstance(e, OpenIncident | UpdateIncident | ResolveIncident)
        got.append((type(e), e.incident.severity if isinstance(e, OpenIncident)
                    else getattr(e, "change", None)))
    assert got == row.expect
    assert row.open_ == before, "rules never mutate the incidents they are given"


def test_an_opened_incident_starts_at_the_first_failed_probe() -> None:
    checks = states(his_web=[C, C, C])
    [effect] = rules.evaluate_system(facts(checks), "his", T0 + 10)
    assert isinstance(effect, OpenIncident)
    assert effect.incident.started_at == T0 and effect.incident.opened_at == T0 + 10
    assert effect.incident.id == "" and effect.id_prefix == "inc"
    assert [c["id"] for c in effect.incident.failing_checks] == ["his-web"]
    assert [n.kind for n in effect.notes] == ["opened", "check_failed"]


def test_a_resolve_dates_the_end_at_the_first_ok_probe() -> None:
    checks = states(his_web=[C, C, C, K, K])
    [effect] = rules.evaluate_system(facts(checks, incident()), "his", T0 + 60)
    assert isinstance(effect, ResolveIncident)
    assert effect.incident.status == "resolved" and effect.incident.resolved_at == T0 + 3


def test_an_unprobed_check_after_a_restart_is_no_evidence_of_recovery() -> None:
    checks = states()
    checks["his-tcp"] = CheckState("his-tcp", "his", "tcp")
    assert rules.evaluate_system(facts(checks, incident()), "his", T0) == []


def test_a_check_with_no_state_here_is_no_evidence_of_recovery() -> None:
    """A new cluster leader evaluates before it has read the other members' states (their
    checks have no state on this instance yet): that must not resolve an open incident."""
    checks = states(his_web=[C, C, C, K, K])
    del checks["his-tcp"]  # probed by another member; not yet read from the store
    assert rules.evaluate_system(facts(checks, incident()), "his", T0 + 10) == []
    del checks["his-web"]
    assert rules.evaluate_system(facts(checks, incident()), "his", T0 + 10) == []


def maintenance_window() -> Window:
    return Window("s1", ("his",), T0 - 60, T0 + 600, "migration")


HOLDS = [
    ("caused by its root", dict(caused_by="inc-his-db", caused_by_system="his-db"), (),
     HoldReason.DEPENDENCY),
    ("inside a maintenance window", {}, (maintenance_window(),), HoldReason.MAINTENANCE),
    ("nothing holds it", {}, (), None),
]


@pytest.mark.parametrize("name,fields,windows,reason", HOLDS, ids=[h[0] for h in HOLDS])
def test_hold_reason(name: str, fields: dict[str, object], windows: tuple[Window, ...],
                     reason: HoldReason | None) -> None:
    checks = states(his_web=[C, C, C])
    inc = incident(**fields)
    assert rules.hold_reason(facts(checks, inc, windows=windows), inc, T0 + 10) == reason


def test_a_flapping_check_holds_until_max_hold() -> None:
    checks = states(his_web=[C, K, C, K, C, K, C, K, C, C, C])
    assert checks["his-web"].flapping
    inc = incident()
    assert rules.hold_reason(facts(checks, inc), inc, T0 + 60) is HoldReason.FLAPPING
    assert rules.hold_reason(facts(checks, inc), inc, T0 + 601) is None


def test_every_failing_check_confirming_its_recovery_holds_steps() -> None:
    checks = states(his_web=[C, C, C, K])
    inc = incident(failing_checks=[{"id": "his-web", "type": "http", "state": "CRIT",
                                    "message": "down"}])
    assert rules.hold_reason(facts(checks, inc), inc, T0 + 10) is HoldReason.RECOVERING


PLAN = [
    ("outage_it at once", 0.0, {}, {}, [(SendStep, "outage_it")]),
    ("department notice at 5m", 300.0, {}, {("step-0", 0): "sent"},
     [(SendStep, "department_outage")]),
    ("nothing between steps", 200.0, {}, {("step-0", 0): "sent"}, []),
    ("held in maintenance: each due step is held with the reason", 0.0,
     {"windows": (maintenance_window(),)}, {}, [(HoldStep, "outage_it")]),
    ("unless acknowledged: skipped", 1800.0, {"ack": True},
     {("step-0", 0): "sent", ("step-1", 0): "sent", ("step-2", 0): "sent",
      ("step-4", 1): "sent"}, [(SkipStep, "vendor_escalation")]),
]


@pytest.mark.parametrize("name,at,opts,recorded,expect", PLAN, ids=[p[0] for p in PLAN])
def test_run_plan(name: str, at: float, opts: dict[str, object],
                  recorded: dict[tuple[str, int], str], expect: list[tuple[type, str]]) -> None:
    checks = states(his_web=[C, C, C])
    inc = incident(held="maintenance" if opts.get("windows") else None)
    if opts.get("ack"):
        inc.acknowledged_by, inc.acknowledged_at = "Dr. Wang", T0 + 60
    windows = opts.get("windows", ())
    assert isinstance(windows, tuple)
    effects = rules.run_plan(facts(checks, inc, windows=windows), inc, recorded, T0 + at)
    got = [(type(e), e.step.kind) for e in effects
           if isinstance(e, SendStep | HoldStep | SkipStep)]
    assert got == expect
    for e in effects:
        if isinstance(e, HoldStep):
            assert e.reason is HoldReason.MAINTENANCE
        if isinstance(e, SkipStep):
            assert e.reason is HoldReason.ACKNOWLEDGED


def test_a_step_carries_its_messages_with_stable_keys() -> None:
    checks = states(his_web=[C, C, C])
    inc = incident()
    [effect] = rules.run_plan(facts(checks, inc), inc, {("step-0", 0): "sent"}, T0 + 300)
    assert isinstance(effect, SendStep)
    assert [m.idempotency_key for m in effect.messages] == ["inc-his:step-1:opd-hook:0"]


def test_entering_a_hold_is_one_update_with_the_named_reason() -> None:
    checks = states(his_web=[C, C, C])
    inc = incident()
    effects = rules.run_plan(facts(checks, inc, windows=(maintenance_window(),)), inc, {},
                             T0 + 1)
    update = effects[0]
    assert isinstance(update, UpdateIncident) and update.change is Change.HOLD
    assert update.incident.held == "maintenance" and inc.held is None
    assert [n.text for n in update.notes] == ["notifications held: maintenance"]


def test_a_dependent_links_to_its_root_and_its_departments_join() -> None:
    checks = states(db_tcp=[C, C, C], his_web=[C, C, C])
    root, dependent = incident("his-db"), incident("his")
    effects = rules.link_dependencies(facts(checks, root, dependent), T0 + 5)
    changes = [(e.incident.system, e.change) for e in effects if isinstance(e, UpdateIncident)]
    assert changes == [("his", Change.LINK), ("his-db", Change.DEPARTMENTS)]
    linked = effects[0]
    assert isinstance(linked, UpdateIncident) and linked.incident.caused_by == "inc-his-db"
    joined = effects[1]
    assert isinstance(joined, UpdateIncident)
    assert joined.incident.affected_departments == ["er", "opd"]
    assert root.affected_departments == ["er"] and dependent.caused_by is None


def test_recovery_goes_only_to_those_who_were_told() -> None:
    checks = states(his_web=[C, C, C, K, K])
    inc = incident(status="resolved", resolved_at=T0 + 400)
    [effect] = rules.recovery(facts(checks), inc, {("step-0", 0): "sent",
                                                   ("step-1", 0): "sent"}, {"it"}, T0 + 400)
    assert isinstance(effect, SendStep)
    assert [m.notifier for m in effect.messages] == ["it"]
    assert rules.recovery(facts(checks), inc, {}, {"it"}, T0 + 400) == [], "nothing was sent"


async def test_plan_step_decisions_are_exported_on_metrics() -> None:
    from monitor.telemetry.metrics import Metrics, MetricsSource

    metrics = Metrics(MetricsSource)
    metrics.count_step("outage_it", str(HoldReason.MAINTENANCE))
    metrics.count_step("outage_it", "sent")
    text = (await metrics.exposition()).decode()
    assert 'hismon_plan_steps_total{kind="outage_it",result="maintenance"} 1.0' in text
    assert 'hismon_plan_steps_total{kind="outage_it",result="sent"} 1.0' in text


def test_a_stale_check_opens_no_incident_but_an_open_one_says_its_checks_are_stale() -> None:
    checks = states(his_web=[C, C, C])
    checks["his-web"].stale = True
    assert rules.evaluate_system(facts(checks), "his", T0 + 200) == [], "no hospital incident"
    [update] = rules.evaluate_system(facts(checks, incident()), "his", T0 + 200)
    assert isinstance(update, UpdateIncident)
    assert update.incident.failing_checks[0]["stale"] is True
    assert update.incident.failing_checks[0]["state"] == "CRIT", "keeps its last hard state"


def test_an_unstable_check_opens_a_critical_incident_from_its_first_counted_failure() -> None:
    checks = states(lis_web=[K, C] * 7)
    assert checks["lis-web"].unstable and checks["lis-web"].hard_state is State.OK
    [opened] = rules.evaluate_system(facts(checks), "lis", T0 + 20)
    assert isinstance(opened, OpenIncident)
    assert opened.incident.severity == "critical" and opened.incident.started_at == T0 + 1
    assert opened.incident.failing_checks[0]["unstable"] is True
    inc = opened.incident
    inc.id = "inc-lis"
    effects = rules.run_plan(facts(checks, inc), inc, {}, T0 + 20)
    sent = [e.step.kind for e in effects if isinstance(e, SendStep)]
    held = [e.step.kind for e in effects if isinstance(e, HoldStep)]
    assert sent == ["early_warning"] and held == ["outage_it"], "IT at once, the rest held"
    later = rules.run_plan(facts(checks, inc), inc, {("early", 0): "sent"}, T0 + 601)
    assert next(e.step.kind for e in later if isinstance(e, SendStep)) == "outage_it"


async def test_stale_checks_are_exported_on_metrics() -> None:
    from monitor.telemetry.metrics import Metrics, MetricsSource

    source = MetricsSource()
    checks = states()
    checks["his-web"].stale = True
    source.states = checks
    text = (await Metrics(lambda: source).exposition()).decode()
    assert 'hismon_check_stale{check="his-web"} 1.0' in text
    assert 'hismon_check_stale{check="his-tcp"} 0.0' in text
