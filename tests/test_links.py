"""Signed links (SPEC 13.2-13.4): tokens, which messages carry links, trimming that keeps
them, and the link pages on the app (GET changes nothing, POST acts, 403 otherwise)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient

from monitor.config.loader import load_config_text
from monitor.core.models import Incident
from monitor.core.result import Result, State
from monitor.links.make import link_lines, links_for
from monitor.links.tokens import BadToken, Claim, sign, verify
from monitor.probing.state import advance
from monitor.runtime.daemon import Daemon
from monitor.runtime.webside import DaemonWeb
from monitor.web.app import build_app
from notifiers.base import OutgoingMessage
from notifiers.sms import sms_text
from tests.conftest import Clock

KEY = bytes(range(32))
T0 = 1_800_000_000.0


def test_a_token_names_incident_and_recipient_and_verifies() -> None:
    token = sign(KEY, Claim("ack", "inc-42", "zhang-wei", 1_800_086_400))
    assert verify(KEY, token, "ack") == Claim("ack", "inc-42", "zhang-wei", 1_800_086_400)
    assert len(token) < 80, "short enough for an SMS"


@pytest.mark.parametrize("case", ["other-key", "altered-incident", "wrong-kind", "garbage",
                                  "truncated", "last-character", "non-ascii"])
def test_forged_altered_and_misused_tokens_are_refused(case: str) -> None:
    import base64

    token = sign(KEY, Claim("ack", "inc-42", "zhang-wei", 1_800_086_400))
    _, _, mac = token.partition(".")
    if case == "other-key":
        token, kind = sign(b"x" * 32, Claim("ack", "inc-42", "zhang-wei", 1_800_086_400)), "ack"
    elif case == "altered-incident":
        forged = base64.urlsafe_b64encode(b"a|inc-43|zhang-wei|1800086400").rstrip(b"=")
        token, kind = f"{forged.decode()}.{mac}", "ack"
    elif case == "wrong-kind":
        kind = "department"
    elif case == "garbage":
        token, kind = "not a token", "ack"
    elif case == "last-character":
        # 16 MAC bytes are 22 base64 characters: the last carries 4 padding bits, so a
        # decoder maps several spellings to the same bytes. Only the canonical one counts.
        last = mac[-1]
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        same = next(c for c in alphabet if c != last
                    and alphabet.index(c) >> 4 == alphabet.index(last) >> 4)
        assert base64.urlsafe_b64decode(mac[:-1] + same + "==") == \
            base64.urlsafe_b64decode(mac + "==")
        token, kind = f"{token[:-1]}{same}", "ack"
    elif case == "non-ascii":
        token, kind = f"{token[:-1]}é", "ack"
    else:
        token, kind = token[:-3], "ack"
    with pytest.raises(BadToken):
        verify(KEY, token, kind)


CONFIG = """\
site: {name: H, timezone: Asia/Shanghai, language: zh}
server: {public_url: "https://hismon.hospital.internal", api_tokens: [t], link_ttl: 1h}
departments:
  - {id: er, name: 急诊科, notify: [er-hook]}
people:
  - {id: li, name: 李娜, mobile: "+8613800000002", notify: [it]}
systems:
  - id: his
    name: HIS
    departments: [er]
    plan: p
    vendor: {name: Vendor, notify: [vendor-hook], response_sla: 30m}
checks:
  - {id: his-web, system: his, type: http, url: "http://127.0.0.1:1/"}
notifiers:
  - {id: it, type: console}
  - {id: er-hook, type: console}
  - {id: vendor-hook, type: console}
plans:
  - id: p
    steps:
      - {after: 0s, notify: ["person:li"], message: outage_it}
      - {after: 0s, notify: [departments], message: department_outage}
      - {after: 0s, notify: [vendor], message: vendor_escalation}
"""


def config(extra: str = "", **replace: str) -> Any:
    text = CONFIG
    for old, new in replace.items():
        text = text.replace(old, new)
    return load_config_text(text + extra, "l.yaml", {})


def incident(**kw: Any) -> Incident:
    return Incident(**{"id": "inc-1", "system": "his", "severity": "critical",
                       "started_at": T0, "opened_at": T0, **kw})


def test_which_messages_carry_which_links() -> None:
    cfg = config()
    common = {"person": None, "notifier": "it", "vendor": False, "note_missing": False,
              "now": T0}
    ack = links_for(cfg, KEY, incident(), "outage_it", departments=(), **common)
    assert list(ack) == ["ack"] and ack["ack"].startswith("https://hismon.hospital.internal/a/")
    assert links_for(cfg, KEY, incident(acknowledged_by="x"), "outage_it", departments=(),
                     **common) == {}, "acknowledged: no ack link"
    assert links_for(cfg, KEY, incident(drill=True), "outage_it", departments=(),
                     **common) == {}, "drill messages carry no links"
    assert links_for(cfg, KEY, incident(), "leadership_report", departments=(),
                     **common) == {}
    assert links_for(cfg, KEY, incident(), "progress_update", departments=(),
                     **{**common, "note_missing": True}).keys() == {"ack"}
    dept = links_for(cfg, KEY, incident(), "department_outage", departments=("er",), **common)
    assert verify(KEY, dept["department"].rsplit("/", 1)[1], "department").recipient == "er"
    vendor = links_for(cfg, KEY, incident(), "vendor_escalation", departments=(),
                       **{**common, "vendor": True})
    assert vendor.keys() == {"vendor"}
    no_url = config(**{'public_url: "https://hismon.hospital.internal", ': ""})
    assert links_for(no_url, KEY, incident(), "outage_it", departments=(), **common) == {}, \
        "no links from the listen address"


def test_a_length_limit_cuts_the_text_before_the_links() -> None:
    links = {"ack": "https://hismon.hospital.internal/a/" + "x" * 60}
    tail = link_lines(links, "en")
    message = OutgoingMessage(kind="outage_it", idempotency_key="k", recipient="it",
                              title="HIS down", text="long text " * 200 + tail,
                              status_url="https://hismon.hospital.internal/",
                              extra={"links_text": tail})
    trimmed = message.trimmed_text(400)
    assert len(trimmed.encode()) <= 400 and trimmed.endswith(tail)
    assert links["ack"] in trimmed
    sms = sms_text(message, 300)
    assert len(sms) <= 300 and sms.endswith(links["ack"])


# ---- the link pages on the real app (in process, real SQLite store) -------------------




@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[tuple[Daemon, AsyncClient, Clock]]:
    async for found in _app(tmp_path):
        yield found


async def _app(tmp_path: Path, **replace: str) -> AsyncIterator[tuple[Daemon, AsyncClient,
                                                                     Clock]]:
    clock = Clock(T0)
    cfg = config(f'state: {{url: "sqlite:///{tmp_path}/s.db"}}\n', **replace)
    daemon = Daemon(cfg, clock=clock, serve_http=False)
    await daemon.store.open()
    daemon.link_key = await daemon.store.link_key()
    daemon.engine.link_key = daemon.link_key
    daemon.leading = True
    states = daemon.engine.states
    for check in cfg.checks:
        from monitor.probing.state import CheckState

        states[check.id] = CheckState(check.id, check.system, check.type, probed=True)
    for _ in range(3):
        advance(states["his-web"], Result(State.CRIT, "down"), clock.now, 3, 2)
    daemon.engine.system_changed("his")
    await daemon.engine.tick()
    client = AsyncClient(transport=ASGITransport(app=build_app(DaemonWeb(daemon))),
                         base_url="http://test")
    yield daemon, client, clock
    await client.aclose()
    await daemon.store.close()


def first(daemon: Any) -> str:
    """The id of the first incident of the daemon's store (`inc-1-TAG`, TAG of its identity)."""
    return f"inc-1-{daemon.store.tag}"


def link(messages: list[Any], kind: str) -> str:
    for message in messages:
        if kind in (message.payload.get("links") or {}):
            url = message.payload["links"][kind]
            assert url in message.payload["text"], "the link is in the text too"
            return "/" + url.split("/", 3)[3]
    raise AssertionError(f"no {kind} link in {[m.payload.get('links') for m in messages]}")


async def test_get_changes_nothing_post_acknowledges_as_the_person(app) -> None:
    daemon, client, _ = app
    messages = await daemon.store.list_messages()
    path = link(messages, "ack")
    page = await client.get(path)
    assert page.status_code == 200 and "以 李娜 身份确认接手" in page.text
    assert "<script" not in page.text
    incident = await daemon.store.get_incident(first(daemon))
    assert incident is not None and incident.acknowledged_by is None, "GET changed nothing"
    done = await client.post(path)
    assert done.status_code == 200 and "李娜" in done.text
    incident = await daemon.store.get_incident(first(daemon))
    assert incident is not None and incident.acknowledged_by == "李娜"
    entry = [e for e in await daemon.store.timeline(first(daemon)) if e.kind == "acknowledged"]
    assert entry[0].data["via"] == "link"
    again = await client.post(path)
    assert again.status_code == 200 and "已由 李娜" in again.text


async def test_bad_expired_and_resolved_links_are_403_and_change_nothing(app) -> None:
    daemon, client, clock = app
    path = link(await daemon.store.list_messages(), "ack")
    token = path.rsplit("/", 1)[1]
    forged = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
    assert (await client.post(forged)).status_code == 403
    other = sign(daemon.link_key or b"", Claim("ack", "inc-999", "li", int(T0 + 3600)))
    assert (await client.post(f"/a/{other}")).status_code == 403, "another incident's token"
    dept = link(await daemon.store.list_messages(), "department")
    assert (await client.post("/a/" + dept.rsplit("/", 1)[1])).status_code == 403
    clock.now = T0 + 3601
    expired = await client.post(path)
    assert expired.status_code == 403 and "链接已失效" in expired.text
    assert (await daemon.store.get_incident(first(daemon))).acknowledged_by is None
    clock.now = T0 + 60
    for _ in range(2):
        advance(daemon.engine.states["his-web"], Result(State.OK, "up"), clock.now, 3, 2)
    daemon.engine.system_changed("his")
    await daemon.engine.tick()
    assert (await daemon.store.get_incident(first(daemon))).status == "resolved"
    resolved = await client.get(path)
    assert resolved.status_code == 403, "the incident resolved: the link is spent"
    assert token not in resolved.text


async def test_department_and_vendor_links_record_their_answers(app) -> None:
    daemon, client, _ = app
    messages = await daemon.store.list_messages()
    dept = link(messages, "department")
    page = await client.get(dept)
    assert page.status_code == 200 and "我们已启用纸质流程" in page.text
    assert (await daemon.store.get_incident(first(daemon))).departments_confirmed == {}
    done = await client.post(dept, content=b"what=on_paper&by=%E5%BC%A0%E6%8A%A4%E5%A3%AB",
                             headers={"content-type": "application/x-www-form-urlencoded"})
    assert done.status_code == 200
    confirmed = (await daemon.store.get_incident(first(daemon))).departments_confirmed["er"]
    assert confirmed["on_paper_by"] == "张护士" and confirmed["on_paper_at"] == T0
    vendor = link(messages, "vendor")
    answered = await client.post(vendor, content=b"by=Engineer+Wu&eta=30m",
                                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert answered.status_code == 200
    stored = await daemon.store.get_incident(first(daemon))
    assert stored.vendor_responded_by == "Engineer Wu" and stored.vendor_eta == "30m"


async def test_link_forms_that_are_too_large_or_not_utf8_change_nothing(app) -> None:
    """The signed link skips the API's write gate, not its body rules (SPEC 10)."""
    daemon, client, _ = app
    messages = await daemon.store.list_messages()
    form = {"content-type": "application/x-www-form-urlencoded"}
    dept, vendor, ack = (link(messages, k) for k in ("department", "vendor", "ack"))
    latin1 = await client.post(dept, content=b"what=on_paper&by=Schwester+J\xfcrgen",
                               headers=form)
    assert latin1.status_code == 422 and "未做任何更改" in latin1.text
    huge = await client.post(vendor, content=b"by=" + b"x" * 20_000, headers=form)
    assert huge.status_code == 413
    big_ack = await client.post(ack, content=b"by=" + b"y" * 20_000, headers=form)
    assert big_ack.status_code == 413
    stored = await daemon.store.get_incident(first(daemon))
    assert stored is not None and stored.departments_confirmed == {}
    assert stored.vendor_responded_at is None and stored.acknowledged_by is None
    fine = await client.post(dept, content=b"what=on_paper&by=J%C3%BCrgen", headers=form)
    assert fine.status_code == 200
    stored = await daemon.store.get_incident(first(daemon))
    assert stored is not None and stored.departments_confirmed["er"]["on_paper_by"] == "Jürgen"


async def test_a_standby_records_the_post_for_the_leader(app) -> None:
    daemon, client, _ = app
    path = link(await daemon.store.list_messages(), "ack")
    daemon.leading = False
    answer = await client.post(path)
    assert answer.status_code == 200, "never 503 to a link"
    assert (await daemon.store.get_incident(first(daemon))).acknowledged_by is None
    assert [a["kind"] for _, a in await daemon.store.link_actions()] == ["ack"]
    daemon.leading = True
    await daemon.engine.tick()  # the leader acts on what the standby recorded
    assert (await daemon.store.get_incident(first(daemon))).acknowledged_by == "李娜"
    assert await daemon.store.link_actions() == []


async def test_the_department_page_speaks_the_departments_language(tmp_path: Path) -> None:
    """A zh site, a department that reads English (SPEC 7: the reader's language)."""
    async for daemon, client, _ in _app(tmp_path, **{
            "{id: er, name: 急诊科, notify: [er-hook]}":
            "{id: er, name: {zh: 急诊科, en: Emergency}, language: en, notify: [er-hook]}"}):
        dept = link(await daemon.store.list_messages(), "department")
        page = await client.get(dept)
        assert page.status_code == 200 and 'lang="en"' in page.text
        assert "We are on paper" in page.text and "Emergency" in page.text
        assert "我们已启用纸质流程" not in page.text
        assert "我们已启用纸质流程" in (await client.get(dept + "?lang=zh")).text
        done = await client.post(dept, data={"what": "on_paper"})
        assert "Recorded: Emergency is on paper." in done.text


async def test_a_department_link_works_until_7_days_after_recovery(app) -> None:
    """SPEC 13.3: back-entry takes time; the link lives 7 days past the resolution, while
    the acknowledgement link ends with the incident."""
    daemon, client, clock = app
    messages = await daemon.store.list_messages()
    dept, ack = link(messages, "department"), link(messages, "ack")
    clock.now = T0 + 60
    for _ in range(2):
        advance(daemon.engine.states["his-web"], Result(State.OK, "up"), clock.now, 3, 2)
    daemon.engine.system_changed("his")
    await daemon.engine.tick()
    resolved = await daemon.store.get_incident(first(daemon))
    assert resolved is not None and resolved.resolved_at is not None
    assert (await client.get(ack)).status_code == 403
    clock.now = resolved.resolved_at + 7 * 86400 - 1
    page = await client.get(dept)
    assert page.status_code == 200 and "补录已完成" in page.text
    clock.now = resolved.resolved_at + 7 * 86400 + 1
    late = await client.post(dept, data={"what": "backfill_done"})
    assert late.status_code == 403
    stored = await daemon.store.get_incident(first(daemon))
    assert stored is not None and "er" not in stored.departments_confirmed


async def test_a_gateway_that_echoes_the_body_puts_no_token_in_last_error(
        tmp_path: Path) -> None:
    """SPEC 13.2 (tokens never logged) and 10 (never in API answers): a channel that refuses
    with an echo of what it got must not carry the signed link into `last_error`."""
    import asyncio

    from aiohttp import web

    from monitor.core.models import OutboxMessage
    from monitor.delivery.outbox import Outbox
    from monitor.store.sqlite import SqliteStore
    from tests.conftest import serve_route

    async def echo(request: web.Request) -> web.Response:
        # What a strict gateway says about a field it rejects: the field, verbatim.
        links = (await request.json()).get("links")
        return web.Response(status=400, text=f"bad request: unknown field links={links}")

    token = sign(KEY, Claim("ack", "inc-1", "li", int(T0 + 3600)))
    url = f"https://hismon.hospital.internal/a/{token}"
    store = SqliteStore(f"sqlite:///{tmp_path}/o.db")
    await store.open()
    try:
        async with serve_route("/hook", echo) as hook:
            cfg = load_config_text(f"site: {{language: en}}\nnotifiers:\n"
                                   f"  - {{id: hook, type: webhook, url: \"{hook}\"}}\n",
                                   "o.yaml", {})
            outbox = Outbox(cfg, store)
            await store.enqueue([OutboxMessage(
                idempotency_key="inc-1:step-0:hook:0", notifier="hook", kind="outage_it",
                payload={"title": "HIS down", "text": f"details\n\nAcknowledge: {url}",
                         "recipient": "hook", "links": {"ack": url}},
                incident_id="inc-1", created_at=0.0, next_attempt_at=0.0)])
            outbox.start()
            try:
                for _ in range(100):
                    stored = (await store.list_messages())[0]
                    if stored.last_error:
                        break
                    await asyncio.sleep(0.05)
            finally:
                await outbox.stop()
    finally:
        await store.close()
    assert stored.last_error and "HTTP 400" in stored.last_error
    assert "bad request" in stored.last_error, "the echo is kept, only the token is masked"
    assert token not in stored.last_error and token[:40] not in stored.last_error


async def test_the_incident_page_names_what_people_did(app) -> None:
    """SPEC 13: confirmations, the vendor's response and the confirmed cause show on the
    incident page in its language, not as raw timeline kinds."""
    daemon, client, clock = app
    inc = first(daemon)
    clock.now = T0 + 60
    await daemon.engine.confirm_department(inc, "er", "on_paper", "护士长 吴")
    await daemon.engine.vendor_response(inc, "Engineer Wu", None)
    await daemon.engine.patch(inc, "王主任", {"confirmed_cause": "hardware"})
    page = (await client.get(f"/incidents/{inc}")).text
    for label in ("科室已启用纸质流程", "厂商已响应", "确认原因"):
        assert label in page, label
    for raw in ("department_on_paper", "vendor_responded", "cause_confirmed"):
        assert f">{raw}<" not in page, raw
    english = (await client.get(f"/incidents/{inc}?lang=en")).text
    assert "Department on paper" in english and "Vendor responding" in english
