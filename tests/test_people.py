"""People and on-call schedules (SPEC §13.1): rotation math, step timing, validation,
recipients and per-person addressing, `hismon oncall` and `GET /api/v1/oncall`."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor.config.loader import ConfigError, load_config_text
from monitor.core.result import Result, State
from monitor.incidents import plans
from monitor.incidents.engine import Engine
from monitor.people.oncall import oncall
from monitor.people.rotation import Cover, Rotation, handovers, on_duty
from monitor.probing.state import CheckState, advance
from monitor.store.sqlite import SqliteStore
from notifiers.base import OutgoingMessage
from tests.conftest import Clock

CST = dt.timezone(dt.timedelta(hours=8))
START = dt.datetime(2026, 11, 30, 8, 30, tzinfo=CST).timestamp()
DAY = 86400.0
WEEK = 7 * DAY


def at(day: float, hours: float = 0.0) -> float:
    """`day` days and `hours` hours after the first handover."""
    return START + day * DAY + hours * 3600


ROTA = Rotation(START, WEEK, ("zhang", "li", "wang"),
                (Cover("chen", at(24), at(26)),))


@pytest.mark.parametrize(
    ("moment", "person", "backup", "until"),
    [
        (at(-30), "zhang", "li", at(7)),           # before start: the first member
        (at(0) - 1, "zhang", "li", at(7)),
        (at(0), "zhang", "li", at(7)),             # the first handover itself
        (at(7) - 1, "zhang", "li", at(7)),
        (at(7), "li", "wang", at(14)),             # handover exactly on the boundary
        (at(14, 12), "wang", "zhang", at(21)),
        (at(21), "zhang", "li", at(24)),           # round-robin; override ahead cuts `until`
        (at(24), "chen", "li", at(26)),            # the override replaces zhang...
        (at(25, 23), "chen", "li", at(26)),        # ...and `next` stays the rotation's
        (at(26), "zhang", "li", at(28)),           # back to the rotation after it
        (at(28), "li", "wang", at(35)),
        (at(7 * 300), "zhang", "li", at(7 * 301)),  # far ahead: still exact
    ],
)
def test_who_is_on_duty(moment: float, person: str, backup: str, until: float) -> None:
    duty = on_duty(ROTA, moment)
    assert (duty.person, duty.next, duty.until) == (person, backup, until)


def test_a_restart_mid_rotation_computes_the_same_duty() -> None:
    """Nothing is kept between calls: a new process on the same config agrees."""
    moment = at(9, 5)
    first = on_duty(ROTA, moment)
    rebuilt = Rotation(ROTA.start, ROTA.every, tuple(ROTA.members), tuple(ROTA.overrides))
    assert on_duty(rebuilt, moment) == first
    assert first.person == "li"


def test_rotation_periods_are_elapsed_time_across_dst() -> None:
    """In a zone with daylight saving, 1d is 24 h of elapsed time, never 23 or 25."""
    ny = dt.datetime(2026, 3, 7, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    rotation = Rotation(ny.timestamp(), DAY, ("a", "b"))
    # 2026-03-08 is the US spring-forward day; the handover after it is 48 h later.
    assert on_duty(rotation, ny.timestamp() + 2 * DAY - 1).person == "b"
    assert on_duty(rotation, ny.timestamp() + 2 * DAY).person == "a"


def test_handovers_list_each_change_with_overrides() -> None:
    found = handovers(ROTA, at(20), at(29))
    assert [(h.at, h.person, h.override) for h in found] == [
        (at(21), "zhang", False), (at(24), "chen", True), (at(26), "zhang", False),
        (at(28), "li", False)]


def test_a_single_member_rotation_is_its_own_backup() -> None:
    duty = on_duty(Rotation(START, DAY, ("solo",)), at(3))
    assert (duty.person, duty.next) == ("solo", "solo")


@pytest.mark.parametrize(
    ("after", "every", "times", "elapsed", "expected"),
    [
        (300, None, None, 299, None),
        (300, None, None, 300, 0),
        (None, 600, None, 599, None),       # `every` alone: first at 1 × every
        (None, 600, None, 1300, 2),
        (300, 300, 3, 299, None),           # after + every: first at `after`
        (300, 300, 3, 300, 0),
        (300, 300, 3, 600, 1),
        (300, 300, 3, 900, 2),
        (300, 300, 3, 5000, 2),             # times: 3 sends in all
        (None, 600, 2, 5000, 2),
    ],
)
def test_step_occurrences(after: float | None, every: float | None, times: int | None,
                          elapsed: float, expected: int | None) -> None:
    assert plans.step_occurrence(after, every, times, elapsed) == expected


BASE = """\
site: {name: H, timezone: Asia/Shanghai, language: en}
roles: {it_lead: [it-group]}
people:
  - id: zhang
    name: 张伟
    mobile: "+8613800000001"
    email: zhang@hospital.example
    notify: [sms, wecom-it]
  - id: li
    name: 李娜
    mobile: "+8613800000002"
    notify: [sms, wecom-it]
  - id: wang
    name: 王芳
    mobile: "+8613800000003"
    notify: [sms, hook]
schedules:
  - id: it-oncall
    start: "2026-11-30T08:30:00+08:00"
    every: 7d
    members: [zhang, li, wang]
    overrides:
      - {person: wang, start: "2026-12-24T08:30:00+08:00", end: "2026-12-26T08:30:00+08:00"}
systems:
  - {id: his, name: HIS, plan: p}
checks:
  - {id: his-web, system: his, type: http, url: "http://127.0.0.1:1/"}
notifiers:
  - id: sms
    type: sms
    url: http://127.0.0.1:1/send
    body: '{"to": {{ recipient|tojson }}, "text": {{ text|tojson }}}'
    recipients: ["+8613900000000"]
  - {id: wecom-it, type: wecom, webhook_url: "http://127.0.0.1:1/cgi-bin/webhook/send?key=k"}
  - {id: it-group, type: console}
  - {id: hook, type: webhook, url: "http://127.0.0.1:1/hook"}
  - {id: mail, type: email, host: 127.0.0.1, port: 1, tls: none, from: h@x.example, to: [a@x.example]}
plans:
  - id: p
    steps:
      - {after: 0m, notify: [schedule:it-oncall], message: outage_it}
      - {after: 5m, every: 5m, times: 3, notify: [schedule:it-oncall], message: outage_it, unless: acknowledged}
      - {after: 20m, notify: ["schedule:it-oncall:next", role:it_lead], message: outage_it, unless: acknowledged}
"""  # noqa: E501


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "p.yaml", {})
    return [str(p) for p in caught.value.problems]


def test_the_base_config_is_valid() -> None:
    config = load_config_text(BASE, "p.yaml", {})
    assert config.person("zhang").name == "张伟"
    assert config.plan("p").steps[1].times == 3


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("members: [zhang, li, wang]", "members: [zhang, li, nobody]",
         'p.yaml:21: schedules[0].members[2]: unknown person "nobody"'),
        ("members: [zhang, li, wang]", "members: []",
         "p.yaml:21: schedules[0].members: a schedule needs at least one member"),
        ("{person: wang, start", "{person: ghost, start",
         'p.yaml:23: schedules[0].overrides[0].person: unknown person "ghost"'),
        ('end: "2026-12-26T08:30:00+08:00"}\n',
         'end: "2026-12-26T08:30:00+08:00"}\n      - {person: li, start: '
         '"2026-12-25T08:30:00+08:00", end: "2026-12-27T08:30:00+08:00"}\n',
         "p.yaml:24: schedules[0].overrides[1]: overlaps overrides[0]"),
        ("    notify: [sms, hook]\n", "",
         "p.yaml:13: people[2]: a person needs `notify`"),
        ('    mobile: "+8613800000002"\n', "",
         "p.yaml:11: people[1].notify[0]: sms is sms: the person needs `mobile`"),
        ("notify: [sms, hook]", "notify: [sms, mail]",
         "p.yaml:16: people[2].notify[1]: mail is email: the person needs `email`"),
        ("notify: [sms, hook]", "notify: [sms, pager]",
         'p.yaml:16: people[2].notify[1]: unknown notifier "pager"'),
        ("notify: [schedule:it-oncall], message: outage_it}",
         "notify: [schedule:it-offcall], message: outage_it}",
         'p.yaml:41: plans[0].steps[0].notify[0]: unknown schedule "it-offcall"'),
        ('"schedule:it-oncall:next"', '"person:nobody"',
         'p.yaml:43: plans[0].steps[2].notify[0]: unknown person "nobody"'),
        ("{after: 20m, notify", "{after: 20m, times: 2, notify",
         "p.yaml:43: plans[0].steps[2]: `times` needs `every`"),
        ("every: 7d", "every: 0s", "p.yaml:20: schedules[0].every: `every` must be longer"),
        ('    recipients: ["+8613900000000"]\n', "",
         "valid"),
        ('    recipients: ["+8613900000000"]\n'
         '  - {id: wecom-it, type: wecom, webhook_url: "http://127.0.0.1:1/cgi-bin/webhook/'
         'send?key=k"}\n', '  - {id: wecom-it, type: wecom, webhook_url: "http://127.0.0.1:1/'
         'cgi-bin/webhook/send?key=k", fallback: sms}\n',
         "p.yaml:29: notifiers[0].recipients: missing: notifiers[1].fallback sends to sms "
         "directly"),
    ],
    ids=["unknown-member", "no-members", "override-unknown-person", "overlapping-overrides",
         "person-without-notify", "sms-without-mobile", "email-without-email",
         "person-unknown-notifier", "unknown-schedule-target", "unknown-person-target",
         "times-without-every", "zero-period", "sms-for-people-only",
         "sms-without-recipients-used-directly"],
)
def test_broken_references_name_file_line_and_key(old: str, new: str, expected: str) -> None:
    assert old in BASE
    if expected == "valid":  #: an sms gateway only people use
        load_config_text(BASE.replace(old, new), "p.yaml", {})
        return
    problems = problems_of(BASE.replace(old, new))
    assert any(p.startswith(expected) for p in problems), problems


def test_validate_command_exits_2_on_a_broken_schedule(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BASE.replace("members: [zhang, li, wang]", "members: [zhang, ghost]"))
    done = subprocess.run([sys.executable, "-m", "monitor", "validate", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f'{path}:21: schedules[0].members[1]: unknown person "ghost"' in done.stderr


# ---- recipients and messages ---------------------------------------------------------

CONFIG = load_config_text(BASE, "p.yaml", {})
WEEK2 = dt.datetime(2026, 12, 8, 9, 0, tzinfo=CST).timestamp()  # li's week, wang next


def test_schedule_targets_resolve_when_the_step_fires() -> None:
    from monitor.core.models import Incident

    incident = Incident("inc-1", "his", "critical", WEEK2, WEEK2)
    now = plans.resolve_targets(["schedule:it-oncall"], CONFIG, incident, WEEK2)
    assert [(r.notifier, r.person, r.key) for r in now] == [
        ("sms", "li", "person:li/sms"), ("wecom-it", "li", "person:li/wecom-it")]
    backup = plans.resolve_targets(["schedule:it-oncall:next"], CONFIG, incident, WEEK2)
    assert {r.person for r in backup} == {"wang"}
    later = plans.resolve_targets(["schedule:it-oncall"], CONFIG, incident, WEEK2 + WEEK)
    assert {r.person for r in later} == {"wang"}, "the rotation at the moment of firing"


def test_a_person_and_a_role_on_one_notifier_are_one_post() -> None:
    from monitor.core.models import Incident

    config = load_config_text(BASE.replace("roles: {it_lead: [it-group]}",
                                           "roles: {it_lead: [it-group, wecom-it]}"),
                              "p.yaml", {})
    incident = Incident("inc-1", "his", "critical", WEEK2, WEEK2)
    found = plans.resolve_targets(["role:it_lead", "schedule:it-oncall"], config, incident,
                                  WEEK2)
    assert [(r.notifier, r.person) for r in found] == [
        ("it-group", None), ("sms", "li"), ("wecom-it", "li")]




@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[tuple[Engine, Clock, dict[str, CheckState]]]:
    store = SqliteStore(f"sqlite:///{tmp_path}/state.db")
    await store.open()
    clock = Clock(WEEK2)
    states = {c.id: CheckState(c.id, c.system, c.type, probed=True) for c in CONFIG.checks}
    yield Engine(CONFIG, store, states, clock), clock, states
    await store.close()


async def test_escalation_by_schedule_reminds_then_calls_the_backup(engine) -> None:
    eng, clock, states = engine
    for _ in range(3):
        advance(states["his-web"], Result(State.CRIT, "down"), clock.now, 3, 2)
    eng.system_changed("his")
    await eng.tick()
    for minute in (5, 10, 15, 20, 25, 30):
        clock.now = WEEK2 + minute * 60
        await eng.tick()
    sent = list(reversed(await eng.store.list_messages()))
    keys = [m.idempotency_key for m in sent]
    incident = sent[0].incident_id
    assert keys == [
        f"{incident}:step-0:person:li/sms:0", f"{incident}:step-0:person:li/wecom-it:0",
        f"{incident}:step-1:person:li/sms:0", f"{incident}:step-1:person:li/wecom-it:0",
        f"{incident}:step-1:person:li/sms:1", f"{incident}:step-1:person:li/wecom-it:1",
        f"{incident}:step-1:person:li/sms:2", f"{incident}:step-1:person:li/wecom-it:2",
        f"{incident}:step-2:it-group:0", f"{incident}:step-2:person:wang/sms:0",
        f"{incident}:step-2:person:wang/hook:0",
    ], "three reminders, then the backup (wang) and the lead"
    backup = next(m for m in sent if m.idempotency_key.endswith("person:wang/hook:0"))
    assert backup.payload["recipient"] == "person:wang"
    assert backup.payload["person"]["name"] == "王芳"
    assert backup.payload["text"].startswith("@王芳"), "a webhook names the person in the text"
    sms = next(m for m in sent if m.idempotency_key.endswith("person:wang/sms:0"))
    assert not sms.payload["text"].startswith("@"), "an SMS goes to the person's own mobile"


async def test_an_acknowledgement_stops_the_reminders(engine) -> None:
    eng, clock, states = engine
    for _ in range(3):
        advance(states["his-web"], Result(State.CRIT, "down"), clock.now, 3, 2)
    eng.system_changed("his")
    await eng.tick()
    clock.now = WEEK2 + 5 * 60
    await eng.tick()
    await eng.acknowledge(eng.open["his"].id, "李娜", None)
    for minute in (10, 15, 20, 25):
        clock.now = WEEK2 + minute * 60
        await eng.tick()
    kinds = [(m.kind, m.idempotency_key.split(":")[1]) for m in await eng.store.list_messages()]
    assert ("outage_it", "step-2") not in kinds
    assert kinds.count(("outage_it", "step-1")) == 2, "only the reminder sent before the ack"


def _person_message(kind: str = "outage_it") -> OutgoingMessage:
    return OutgoingMessage(kind=kind, idempotency_key="inc-1:step-0:person:li/sms:0",
                           recipient="person:li", title="HIS down", text="since 09:00",
                           extra={"person": {"id": "li", "name": "李娜",
                                             "mobile": "+8613800000002",
                                             "email": "li@hospital.example"}})


def test_sms_wecom_dingtalk_and_email_address_the_person() -> None:
    import json

    from notifiers.dingtalk import DingTalkNotifier
    from notifiers.email import EmailNotifier
    from notifiers.sms import SmsNotifier
    from notifiers.wecom import WeComNotifier

    message = _person_message()
    sms = CONFIG.notifier("sms")
    assert isinstance(sms, SmsNotifier)
    request = sms.build_request(message, "+8613800000002")
    assert json.loads(request.content)["to"] == "+8613800000002"
    wecom = CONFIG.notifier("wecom-it")
    assert isinstance(wecom, WeComNotifier)
    body = json.loads(wecom.build_request(message).content)
    assert body["text"]["mentioned_mobile_list"] == ["+8613800000002"]
    ding = DingTalkNotifier(id="d", type="dingtalk", webhook_url="http://127.0.0.1:1/robot",
                            at_mobiles=["+8613999999999"])
    body = json.loads(ding.build_request(message, now=0).content)
    assert body["at"]["atMobiles"] == ["+8613800000002"]
    assert "@+8613800000002" in body["text"]["content"]
    mail = EmailNotifier.model_validate(
        {"id": "m", "type": "email", "host": "127.0.0.1", "port": 1, "tls": "none",
         "from": "h@x.example", "to": ["desk@x.example"]})
    assert mail.addressees(message) == ["li@hospital.example"]
    assert "li@hospital.example" in mail.build_email(message, now=0)["To"]
    webhook = message.webhook_body()
    assert webhook["recipient"] == "person:li"
    assert webhook["person"] == {"id": "li", "name": "李娜"}, "no addresses in the body"


def test_oncall_answers_now_next_until_and_handovers() -> None:
    found = oncall(CONFIG, dt.datetime(2026, 12, 20, 12, 0, tzinfo=CST).timestamp(), days=14)
    entry = found[0]
    assert entry["on_duty"] == {"id": "wang", "name": "王芳"}
    assert entry["next"] == {"id": "zhang", "name": "张伟"}
    assert entry["until"] == "2026-12-21T08:30:00+08:00"
    assert [(h["at"][:16], h["to"]["id"], h["override"]) for h in entry["handovers"]] == [
        ("2026-12-21T08:30", "zhang", False), ("2026-12-24T08:30", "wang", True),
        ("2026-12-26T08:30", "zhang", False), ("2026-12-28T08:30", "li", False)]


def test_oncall_command_prints_the_rotation(tmp_path: Path) -> None:
    path = tmp_path / "h.yaml"
    path.write_text(BASE)
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "oncall", "-c", str(path),
         "--at", "2026-12-24T10:00:00+08:00", "--days", "3"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("it-oncall: 王芳 (wang) (override) until 2026-12-26 08:30")
    assert first.endswith("next: 李娜"), "the rotation's backup, also during an override"
    assert "2026-12-26 08:30  → 张伟 (zhang)" in done.stdout


def test_oncall_endpoint(tmp_path: Path) -> None:
    """GET /api/v1/oncall reads only the config and the clock (no store needed)."""
    from starlette.testclient import TestClient

    from monitor.runtime.daemon import Daemon
    from monitor.runtime.webside import DaemonWeb
    from monitor.web.app import build_app

    config = load_config_text(BASE + f'state: {{url: "sqlite:///{tmp_path}/s.db"}}\n',
                              "p.yaml", {})
    daemon = Daemon(config, clock=lambda: WEEK2, serve_http=False)
    with TestClient(build_app(DaemonWeb(daemon))) as client:
        answer = client.get("/api/v1/oncall").json()
    assert answer == {"schedules": [{
        "id": "it-oncall", "on_duty": {"id": "li", "name": "李娜"},
        "next": {"id": "wang", "name": "王芳"}, "until": "2026-12-14T08:30:00+08:00",
        "override": False}]}


@pytest.mark.parametrize("written", ["2026-11-30T08:30:00+08:00", "2026-11-30T00:30:00+00:00",
                                     "2026-11-29T19:30:00-05:00"])
def test_a_start_in_any_offset_is_the_same_rotation_shown_in_site_time(written: str) -> None:
    """The instant counts, not how it is written; `oncall` shows the site's time zone."""
    config = load_config_text(BASE.replace('start: "2026-11-30T08:30:00+08:00"',
                                           f'start: "{written}"'), "p.yaml", {})
    entry = oncall(config, WEEK2, days=7)[0]
    assert entry["on_duty"]["id"] == "li" and entry["next"]["id"] == "wang"
    assert entry["until"] == "2026-12-14T08:30:00+08:00"
    assert [h["at"] for h in entry["handovers"]] == ["2026-12-14T08:30:00+08:00"]


async def test_a_restart_across_a_handover_pages_whoever_is_on_duty_then(tmp_path: Path) -> None:
    """An outage 8 minutes before li hands over to wang: li gets the page and the first
    reminder, the daemon restarts, the next reminders go to wang (the rotation when they
    fire), nothing is sent twice, and the backup at 20 minutes is wang's (zhang)."""
    handover = dt.datetime(2026, 12, 14, 8, 30, tzinfo=CST).timestamp()
    t0 = handover - 8 * 60
    clock = Clock(t0)
    store = SqliteStore(f"sqlite:///{tmp_path}/state.db")
    await store.open()
    try:
        states = {c.id: CheckState(c.id, c.system, c.type, probed=True) for c in CONFIG.checks}
        first = Engine(CONFIG, store, states, clock)
        for _ in range(3):
            advance(states["his-web"], Result(State.CRIT, "down"), clock.now, 3, 2)
        first.system_changed("his")
        await first.tick()
        clock.now = t0 + 5 * 60
        await first.tick()
        del first  # the process dies here; nothing of it survives but the store
        restarted = Engine(CONFIG, store, states, clock)
        await restarted.load()
        for minute in (6, 10, 15, 20):
            clock.now = t0 + minute * 60
            await restarted.tick()
        sent = [(m.idempotency_key.split(":", 1)[1], m.payload.get("recipient"))
                for m in reversed(await store.list_messages()) if m.notifier == "sms"]
        assert sent == [
            ("step-0:person:li/sms:0", "person:li"),
            ("step-1:person:li/sms:0", "person:li"),
            ("step-1:person:wang/sms:1", "person:wang"),
            ("step-1:person:wang/sms:2", "person:wang"),
            ("step-2:person:zhang/sms:0", "person:zhang"),
        ]
    finally:
        await store.close()
