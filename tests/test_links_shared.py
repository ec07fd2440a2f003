"""Two departments that share one notifier (one ward-group chat) on the real daemon: the one
post greets both and carries each one's labelled department link, and each link confirms
for its own department (SPEC 13.3). Before, the post carried only the first department's
link, so the second could never confirm from the message."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from monitor.config.loader import load_config_text
from monitor.core.models import Incident
from monitor.incidents import plans
from monitor.links.make import link_lines, links_for
from notifiers.base import OutgoingMessage
from notifiers.sms import sms_text
from tests.conftest import HttpTarget, Receiver, free_port

SHARED = """
site: {{name: Test Hospital, timezone: Asia/Shanghai, language: {language}}}
server:
  listen: "127.0.0.1:{port}"
  api_tokens: [t]
  public_url: "http://127.0.0.1:{port}"
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 1s, timeout: 800ms, retry_interval: 250ms, confirm: 2, recover: 2}}
departments:
  - {{id: er, name: {{zh: 急诊科, en: Emergency}}, notify: [ward-chat]}}
  - {{id: opd, name: {{zh: 门诊部, en: Outpatient}}, notify: [ward-chat]}}
systems:
  - {{id: his, name: {{zh: 门诊医生站, en: Doctor station}}, departments: [er, opd], plan: p,
      downtime_procedure: {{zh: 手写处方, en: Handwritten prescriptions}}}}
checks:
  - {{id: his-web, system: his, type: http, url: "{url}", expect: {{status: [200]}}}}
notifiers:
  - {{id: ward-chat, type: webhook, url: "{hook}"}}
plans:
  - id: p
    steps:
      - {{after: 0s, notify: [departments], message: department_outage}}
    on_recovery: [departments]
"""


def shared_config(language: str = "en", port: int = 8080) -> Any:
    return load_config_text(SHARED.format(language=language, port=port, url="http://127.0.0.1:1/",
                                          hook="http://127.0.0.1:1/h"), "s.yaml", {})


def test_a_shared_notifier_is_one_recipient_speaking_for_both_departments() -> None:
    config = shared_config()
    incident = Incident(id="inc-1", system="his", severity="critical", started_at=0.0,
                        opened_at=0.0, affected_departments=["er", "opd"])
    found = plans.resolve_targets(["departments"], config, incident, 0.0)
    assert [(r.notifier, r.departments) for r in found] == [("ward-chat", ("er", "opd"))]
    assert found[0].key == "ward-chat", "the idempotency key keeps its shape"
    links = links_for(config, b"k" * 32, incident, "department_outage",
                      departments=("er", "opd"), person=None, notifier="ward-chat",
                      vendor=False, note_missing=False, now=0.0)
    assert set(links) == {"department", "department:er", "department:opd"}
    assert links["department"] == links["department:er"] != links["department:opd"]


@pytest.mark.parametrize("language,er,opd", [
    ("en", "Confirm for Emergency (on paper / back-entry done): ",
     "Confirm for Outpatient (on paper / back-entry done): "),
    ("zh", "急诊科确认（已启用纸质流程 / 补录完成）: ",
     "门诊部确认（已启用纸质流程 / 补录完成）: ")])
def test_each_department_has_its_labelled_line_and_a_length_limit_cuts_neither(
        language: str, er: str, opd: str) -> None:
    links = {"department": "https://h/d/AAA", "department:er": "https://h/d/AAA",
             "department:opd": "https://h/d/BBB"}
    names = {"er": "急诊科", "opd": "门诊部"} if language == "zh" else \
        {"er": "Emergency", "opd": "Outpatient"}
    tail = link_lines(links, language, names)
    assert tail == f"\n\n{er}https://h/d/AAA\n{opd}https://h/d/BBB"
    message = OutgoingMessage(kind="department_outage", idempotency_key="k", recipient="c",
                              title="t", text="x" * 2000 + tail, extra={"links_text": tail})
    trimmed = message.trimmed_text(300)
    assert "https://h/d/AAA" in trimmed and "https://h/d/BBB" in trimmed
    sms = sms_text(message, 200)
    assert len(sms) <= 200 and sms.endswith(f"{opd}https://h/d/BBB") and er in sms


@pytest.mark.slow
async def test_both_departments_confirm_on_paper_from_the_one_shared_post(
        http_target: HttpTarget, receiver: Receiver, daemon_factory: Any) -> None:
    port = free_port()
    daemon = await daemon_factory(SHARED.format(language="en", port=port, url=http_target.url,
                                                hook=receiver.url("ward")), port)
    http_target.status = 503
    await receiver.wait_for(lambda: "department_outage" in receiver.kinds(), timeout=20)
    await asyncio.sleep(0.5)  # a second post would come in the same tick
    posts = [m for m in receiver.messages if m["kind"] == "department_outage"]
    assert len(posts) == 1, "one post to the shared chat, not one per department"
    post = posts[0]
    assert "To all staff of Emergency and Outpatient:" in post["text"]
    assert "Handwritten prescriptions" in post["text"]
    found = dict(re.findall(r"Confirm for (\w+) \(on paper / back-entry done\): (\S+)",
                            post["text"]))
    assert set(found) == {"Emergency", "Outpatient"}, post["text"]
    assert found["Emergency"] == post["links"]["department:er"]
    assert found["Outpatient"] == post["links"]["department:opd"]
    incident_id = post["incident"]["id"]
    async with httpx.AsyncClient(trust_env=False) as client:
        for name, by in (("Emergency", "Nurse Wu"), ("Outpatient", "Dr Li")):
            page = await client.get(found[name])
            assert page.status_code == 200 and name in page.text
            done = await client.post(found[name], data={"what": "on_paper", "by": by})
            assert done.status_code == 200, done.text
        api = f"{daemon.url}/api/v1/incidents/{incident_id}"
        confirmed = (await client.get(api)).json()["departments_confirmed"]
    assert confirmed["er"]["on_paper_by"] == "Nurse Wu"
    assert confirmed["opd"]["on_paper_by"] == "Dr Li"


def test_a_maintenance_notice_to_a_shared_chat_names_both_departments_and_their_systems(
        ) -> None:
    """Before, the one notice per notifier was the first department's: Outpatient, in the
    same chat, was not greeted and its own system in the window was not named."""
    from monitor.delivery.messages import MessageRenderer
    from monitor.incidents.compose import maintenance_messages
    from monitor.incidents.maintenance import Window

    text = SHARED.format(language="en", port=8080, url="http://127.0.0.1:1/",
                         hook="http://127.0.0.1:1/h").replace(
        "checks:", "  - {id: pacs, name: {zh: 影像系统, en: PACS}, departments: [opd],\n"
        "      downtime_procedure: {zh: 胶片, en: Print films}}\nchecks:")
    config = load_config_text(text, "s.yaml", {})
    window = Window("config-0@1", ("pacs",), 1.9e9, 1.9e9 + 3600, "upgrade")
    messages = maintenance_messages(config, MessageRenderer(), "maintenance_notice", window,
                                    "k", 1.9e9 - 86400)
    assert [m.notifier for m in messages] == ["ward-chat"], "one notice per notifier"
    notice = messages[0].payload
    assert "To all staff of Emergency and Outpatient:" not in notice["text"], \
        "only the department that uses the system is spoken for"
    assert "To all staff of Outpatient:" in notice["text"] and "PACS" in notice["text"]
    both = Window("config-0@1", ("his", "pacs"), 1.9e9, 1.9e9 + 3600, "upgrade")
    notice = maintenance_messages(config, MessageRenderer(), "maintenance_notice", both, "k",
                                  1.9e9 - 86400)[0].payload
    assert "To all staff of Emergency and Outpatient:" in notice["text"]
    assert "PACS" in notice["text"] and "Doctor station" in notice["text"]
    assert notice["departments"] == ["er", "opd"]
