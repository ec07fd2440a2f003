"""Alertmanager notifier against a real Alertmanager (Debian `prometheus-alertmanager`).

The binary runs on a free loopback port with a temporary config and storage directory and
clustering disabled. An outage message makes an active alert with our labels; the
recovery message resolves it, so it leaves `GET /api/v2/alerts`.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from notifiers import NOTIFIER_TYPES
from notifiers.alertmanager import INCIDENT_KINDS, AlertmanagerNotifier, build_alerts
from notifiers.base import DeliveryError, NotifyContext, OutgoingMessage

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
STATUS_URL = "http://hismon.hospital.internal:9464/"
CONFIG = """\
route:
  receiver: blackhole
  group_by: [incident]
  group_wait: 1s
receivers:
  - name: blackhole
"""


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone(dt.timedelta(hours=8))).isoformat(
        timespec="seconds")


def incident(incident_id: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": incident_id, "system": "his-outpatient", "system_name": "门诊医生站",
        "severity": "critical", "status": "open", "started_at": iso(time.time() - 300),
        "acknowledged_by": None, "resolved_at": None, "suspected_cause": "database",
        "caused_by": None, "affected_departments": ["emergency", "outpatient"],
        "failing_checks": [],
    }
    data.update(changes)
    return data


def message(kind: str, incident_data: dict[str, Any] | None, **changes: Any) -> OutgoingMessage:
    fields: dict[str, Any] = {
        "kind": kind, "idempotency_key": f"{(incident_data or {}).get('id')}:{kind}:am:0",
        "recipient": "alertmanager", "title": "门诊医生站 故障",
        "text": "门诊医生站自 08:05 起无法使用。", "incident": incident_data,
        "status_url": STATUS_URL,
    }
    fields.update(changes)
    return OutgoingMessage(**fields)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if BINARY is None:
        pytest.skip("prometheus-alertmanager is not installed "
                    "(apt-get install prometheus-alertmanager)")
    workdir: Path = tmp_path_factory.mktemp("alertmanager")
    (workdir / "alertmanager.yml").write_text(CONFIG)
    port = free_port()
    log = (workdir / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [BINARY, f"--config.file={workdir / 'alertmanager.yml'}",
         f"--storage.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address=", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (workdir / "alertmanager.log").read_text()
            try:
                if httpx.get(f"{url}/-/ready", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "alertmanager did not become ready in 20s"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


def notifier(url: str) -> AlertmanagerNotifier:
    return AlertmanagerNotifier.model_validate(
        {"id": "alertmanager", "type": "alertmanager", "url": url, "timeout": "5s"})


async def active_alerts(ctx: NotifyContext, url: str, incident_id: str) -> list[dict[str, Any]]:
    response = await ctx.http.get(f"{url}/api/v2/alerts",
                                  params={"filter": f'incident="{incident_id}"'})
    response.raise_for_status()
    return list(response.json())


def test_alertmanager_is_registered() -> None:
    """Configs can name `type: alertmanager`."""
    assert NOTIFIER_TYPES["alertmanager"] is AlertmanagerNotifier


def test_an_outage_message_is_one_firing_alert() -> None:
    """Pure: labels identify incident, system, severity and kind; endsAt is now + ttl."""
    (alert,) = build_alerts(message("outage_it", incident("inc-1")), now=1000.0, ttl=3600)
    assert alert["labels"] == {"alertname": "HismonIncident", "incident": "inc-1",
                               "system": "his-outpatient", "severity": "critical",
                               "kind": "outage_it"}
    assert alert["annotations"]["summary"] == "门诊医生站 故障"
    assert alert["annotations"]["description"] == "门诊医生站自 08:05 起无法使用。"
    assert alert["endsAt"] == "1970-01-01T01:16:40+00:00"
    assert alert["generatorURL"] == STATUS_URL


def test_a_recovery_resolves_every_kind_and_severity() -> None:
    """Pure: one resolved alert per kind and severity the incident could have raised."""
    resolved = iso(time.time())
    alerts = build_alerts(message("recovery", incident("inc-1", resolved_at=resolved,
                                                       status="resolved")),
                          now=time.time(), ttl=3600)
    assert len(alerts) == 2 * len(INCIDENT_KINDS)
    assert {a["endsAt"] for a in alerts} == {resolved}
    assert {(a["labels"]["kind"], a["labels"]["severity"]) for a in alerts} == {
        (k, s) for k in INCIDENT_KINDS for s in ("warning", "critical")}


def test_messages_without_an_incident_are_not_alerts() -> None:
    """A maintenance notice has no incident to alert on."""
    assert build_alerts(message("maintenance_notice", None), now=0, ttl=60) == []


async def test_an_outage_becomes_active_and_the_recovery_resolves_it(
    alertmanager: str, ctx: NotifyContext
) -> None:
    """The real Alertmanager lists the alert with our labels, then drops it when resolved."""
    am = notifier(alertmanager)
    data = incident("inc-am-1")
    assert await am.send(message("early_warning", {**data, "severity": "warning"}), ctx) == \
        "HTTP 200, 1 alert(s) firing"
    await am.send(message("outage_it", data), ctx)
    await am.send(message("department_outage", data), ctx)

    alerts = await active_alerts(ctx, alertmanager, "inc-am-1")
    assert sorted((a["labels"]["kind"], a["labels"]["severity"]) for a in alerts) == [
        ("department_outage", "critical"), ("early_warning", "warning"),
        ("outage_it", "critical")]
    outage = next(a for a in alerts if a["labels"]["kind"] == "outage_it")
    assert outage["labels"] == {"alertname": "HismonIncident", "incident": "inc-am-1",
                                "system": "his-outpatient", "severity": "critical",
                                "kind": "outage_it"}
    assert outage["status"]["state"] == "active"
    assert outage["annotations"]["summary"] == "门诊医生站 故障"
    assert outage["annotations"]["affected_departments"] == "emergency, outpatient"
    assert outage["generatorURL"] == STATUS_URL
    starts = dt.datetime.fromisoformat(outage["startsAt"].replace("Z", "+00:00"))
    assert starts == dt.datetime.fromisoformat(data["started_at"])
    ends = dt.datetime.fromisoformat(outage["endsAt"].replace("Z", "+00:00"))
    assert ends > dt.datetime.now(dt.UTC) + dt.timedelta(hours=23)

    recovered = {**data, "status": "resolved", "resolved_at": iso(time.time())}
    answer = await am.send(message("recovery", recovered, title="门诊医生站 已恢复"), ctx)
    assert answer == f"HTTP 200, {2 * len(INCIDENT_KINDS)} alert(s) resolved"
    assert await active_alerts(ctx, alertmanager, "inc-am-1") == []


async def test_drill_alerts_are_labelled(alertmanager: str, ctx: NotifyContext) -> None:
    """A rehearsal is visible as such in Alertmanager and can be routed away from pagers."""
    am = notifier(alertmanager)
    data = incident("inc-am-drill")
    await am.send(message("outage_it", data, drill=True), ctx)
    (alert,) = await active_alerts(ctx, alertmanager, "inc-am-drill")
    assert alert["labels"]["drill"] == "true"
    await am.send(message("recovery", {**data, "resolved_at": iso(time.time())}, drill=True),
                  ctx)
    assert await active_alerts(ctx, alertmanager, "inc-am-drill") == []


async def test_a_maintenance_notice_is_skipped_not_sent(
    alertmanager: str, ctx: NotifyContext
) -> None:
    """The answer says why nothing was posted; Alertmanager has no such alert."""
    answer = await notifier(alertmanager).send(message("maintenance_notice", None), ctx)
    assert answer.startswith("skipped:")
    response = await ctx.http.get(f"{alertmanager}/api/v2/alerts",
                                  params={"filter": 'kind="maintenance_notice"'})
    assert response.json() == []


async def test_an_alert_alertmanager_refuses_is_permanent(
    alertmanager: str, ctx: NotifyContext
) -> None:
    """A 400 (here: a start time that is not a time) will be refused again: permanent."""
    with pytest.raises(DeliveryError) as failure:
        await notifier(alertmanager).send(
            message("outage_it", incident("inc-am-bad", started_at="gestern")), ctx)
    assert failure.value.permanent is True
    assert "HTTP 400" in str(failure.value)
    assert "gestern" in str(failure.value)  # Alertmanager's reason reaches the operator


async def test_an_unreachable_alertmanager_is_retryable(ctx: NotifyContext) -> None:
    """Nothing listens: retry later."""
    with pytest.raises(DeliveryError) as failure:
        await notifier(f"http://127.0.0.1:{free_port()}").send(
            message("outage_it", incident("inc-x")), ctx)
    assert failure.value.permanent is False
    assert "cannot reach 127.0.0.1" in str(failure.value)


async def received(ctx: NotifyContext, url: str) -> dict[str, float]:
    """Alertmanager's own count of alerts received, by status (its /metrics)."""
    text = (await ctx.http.get(f"{url}/metrics")).text
    counts = {"firing": 0.0, "resolved": 0.0}
    for line in text.splitlines():
        if line.startswith("alertmanager_alerts_received_total{"):
            for status in counts:
                if f'status="{status}"' in line:
                    counts[status] += float(line.rsplit(" ", 1)[1])
    return counts


async def test_notify_test_posts_a_real_test_alert_and_resolves_it(
    alertmanager: str, ctx: NotifyContext
) -> None:
    """It always said OK (the test message has no incident, so nothing was posted)."""
    before = await received(ctx, alertmanager)
    test = message("outage_it", None)
    answer = await notifier(alertmanager).test(test, ctx)
    assert answer == "HTTP 200, test alert HismonTest fired and resolved"
    after = await received(ctx, alertmanager)
    assert after["firing"] == before["firing"] + 1
    assert after["resolved"] == before["resolved"] + 1
    response = await ctx.http.get(f"{alertmanager}/api/v2/alerts",
                                  params={"filter": 'alertname="HismonTest"'})
    assert response.json() == []  # resolved: nothing left firing


async def test_notify_test_fails_when_nothing_listens(ctx: NotifyContext) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DeliveryError) as failure:
        await notifier(f"http://127.0.0.1:{port}").test(message("outage_it", None), ctx)
    assert "cannot reach 127.0.0.1" in str(failure.value)
