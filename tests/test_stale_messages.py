"""Progress updates of an incident hismon cannot see any more (SPEC 9, issue 10 item 10).

A dead `--shard` instance left its incident open and departments kept reading "still down".
When every failing check of an open incident is stale, a progress update says that hismon
cannot currently see the system (not probed since T), in zh and en, to departments and to
IT; the failing checks read UNKNOWN "not probed since T" instead of their old message.
Messages are rendered through the real rules, composer and templates.
"""

from __future__ import annotations

import pytest

from monitor.config.loader import load_config_text
from monitor.core.models import OutboxMessage
from monitor.core.result import Result, State
from monitor.incidents import rules
from monitor.incidents.effects import OpenIncident, SendStep, UpdateIncident
from monitor.incidents.engine import renderer_for
from monitor.incidents.facts import Facts
from monitor.probing.state import CheckState, advance, mark_stale
from tests.test_engine import CONFIG, T0

STEP_EVERY = 1800.0  # the plan's `every: 30m` progress update
SINCE = {"en": "2027-01-15 16:00", "zh": "2027-01-15 16:00"}


def world(language: str) -> tuple[Facts, dict[str, CheckState]]:
    config = load_config_text(CONFIG.replace("language: en", f"language: {language}"),
                              "t.yaml", {})
    states = {c.id: CheckState(c.id, c.system, c.type) for c in config.checks}
    for cid in states:
        advance(states[cid], Result(State.OK, "fine"), T0 - 100, 3, 2)
    for i in range(3):  # his-web fails hard; the last failure at T0 (16:00 in Shanghai)
        advance(states["his-web"], Result(State.CRIT, "HTTP 503 Service Unavailable"),
                T0 - 4 + 2 * i, 3, 2)
    facts = Facts(config=config, states=states, open={}, windows=(),
                  renderer=renderer_for(config))
    return facts, states


def progress(facts: Facts, language: str, stale: bool) -> list[OutboxMessage]:
    states = facts.states
    [opened] = rules.evaluate_system(facts, "his", T0)
    assert isinstance(opened, OpenIncident)
    incident = opened.incident
    incident.id = "inc-7"
    now = T0 + STEP_EVERY + 5
    if stale:  # nothing probed his-web since 16:00: the daemon's housekeeping marks it
        assert mark_stale(states["his-web"], 30.0, 5.0, now)
    live = Facts(config=facts.config, states=states, open={"his": incident}, windows=(),
                 renderer=facts.renderer)
    [update] = rules.evaluate_system(live, "his", now)
    assert isinstance(update, UpdateIncident)
    incident = update.incident
    assert bool(incident.failing_checks[0].get("stale")) is stale
    live = Facts(config=facts.config, states=states, open={"his": incident}, windows=(),
                 renderer=facts.renderer)
    recorded = {("step-0", 0): "sent", ("step-1", 0): "sent", ("step-2", 0): "sent",
                ("step-3", 0): "sent"}
    sent = [e for e in rules.run_plan(live, incident, recorded, now)
            if isinstance(e, SendStep) and e.step.kind == "progress_update"]
    assert sent, "a progress update falls due"
    return list(sent[0].messages)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_a_progress_update_of_an_unseen_outage_says_hismon_cannot_see_it(
        language: str) -> None:
    facts, _ = world(language)
    messages = progress(facts, language, stale=True)
    department = next(m for m in messages if m.notifier == "opd-hook")
    it = next(m for m in messages if m.notifier == "it")  # asked for a note
    since = SINCE[language]
    text = department.payload["title"] + "\n" + department.payload["text"]
    if language == "en":
        assert "still down" not in text and "outage ongoing" not in text
        assert "hismon cannot see Outpatient doctor station right now" in text
        assert f"not probed since {since}" in text
        assert "stay on the downtime procedure" in text
    else:
        assert "仍未恢复" not in text and "故障处理中" not in text
        assert f"自 {since} 起未能检测" in text and "hismon 目前无法看到" in text
    report = it.payload["title"] + "\n" + it.payload["text"]
    assert f"{since}" in report
    assert ("not probed since" in report) if language == "en" else ("未能检测" in report)
    # The failing check's old message is history, not what the payload says now.
    [check] = department.payload["incident"]["failing_checks"]
    assert check["stale"] is True and check["last_run"] == "2027-01-15T16:00:00+08:00"


@pytest.mark.parametrize("language", ["en", "zh"])
def test_a_leadership_report_lists_a_stale_check_as_unknown_not_its_old_message(
        language: str) -> None:
    facts, states = world(language)
    [opened] = rules.evaluate_system(facts, "his", T0)
    assert isinstance(opened, OpenIncident)
    incident = opened.incident
    incident.id = "inc-8"
    now = T0 + 15 * 60 + 5
    mark_stale(states["his-web"], 30.0, 5.0, now)
    live = Facts(config=facts.config, states=states, open={"his": incident}, windows=(),
                 renderer=facts.renderer)
    [update] = rules.evaluate_system(live, "his", now)
    assert isinstance(update, UpdateIncident)
    live = Facts(config=facts.config, states=states, open={"his": update.incident},
                 windows=(), renderer=facts.renderer)
    sent = [e for e in rules.run_plan(live, update.incident, {("step-0", 0): "sent",
                                                                ("step-1", 0): "sent"}, now)
            if isinstance(e, SendStep) and e.step.kind == "leadership_report"]
    text = sent[0].messages[0].payload["text"]
    checks = text.split("4. Failing checks" if language == "en" else "四、")[1]
    assert "HTTP 503 Service Unavailable" not in checks
    expected = "UNKNOWN): not probed since" if language == "en" else "未知）：自"
    assert expected in checks and SINCE[language] in checks
    # The cause's evidence is what hismon saw last, and says so.
    label = "As last seen, before probing stopped at" if language == "en" \
        else "前最后一次检测时的判断"
    assert label in text.split("HTTP 503 Service Unavailable")[0]


@pytest.mark.parametrize("language", ["en", "zh"])
def test_a_progress_update_of_a_seen_outage_still_says_it_is_down(language: str) -> None:
    facts, _ = world(language)
    messages = progress(facts, language, stale=False)
    department = next(m for m in messages if m.notifier == "opd-hook")
    text = department.payload["text"]
    assert ("is still down" in text) if language == "en" else ("仍未恢复" in text)
    assert "未能检测" not in text and "not probed" not in text
