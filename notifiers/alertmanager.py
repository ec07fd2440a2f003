"""Prometheus Alertmanager v2: incidents become alerts, recoveries resolve them.

`POST {url}/api/v2/alerts` with a list of alerts. Each message of an incident is one alert
with the labels `alertname="HismonIncident"`, `incident`, `system`, `severity`, `kind`
(so Alertmanager routes can send `leadership_report` elsewhere than `outage_it`), and
`drill="true"` in a drill. Annotations carry the title (`summary`) and text
(`description`); `startsAt` is the incident's start, `generatorURL` the status page.

Alertmanager resolves an alert that is not re-sent within `resolve_timeout` (5 minutes by
default), but hismon speaks only when a plan step is due: a firing alert therefore gets an
explicit `endsAt` of now + `alert_ttl` (24h), renewed by every later message.

A `recovery` message resolves every alert the incident can have raised: the same labels
for each kind and severity, with `endsAt` = the incident's `resolved_at`. Alertmanager
never notifies about an alert that was resolved before it fired, so the extra ones cost
nothing. Messages without an incident (maintenance notices) are not alerts: the channel
`ignores` them and the outbox records them as skipped.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Literal

from pydantic import Field

from monitor.core.durations import Duration
from monitor.core.types import INCIDENT_KINDS, Severity
from notifiers._http import HttpRequest, http_error, json_request, send_request
from notifiers.base import NotifierBase, NotifyContext, OutgoingMessage

ALERTNAME = "HismonIncident"
SEVERITIES = tuple(Severity)
"""A recovery resolves the alerts of every incident kind (`INCIDENT_KINDS`) and severity."""
DESCRIPTION_LIMIT = 8_000


def rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def test_labels() -> dict[str, str]:
    """`hismon notify-test`'s alert: route it to a test receiver, or let it pass by."""
    return {"alertname": "HismonTest", "severity": "none", "kind": "test"}


def labels_for(incident: dict[str, Any], kind: str, severity: str, drill: bool) -> dict[str, str]:
    """The identity of an alert: Alertmanager matches a resolve to its alert by these."""
    labels = {"alertname": ALERTNAME, "incident": str(incident.get("id", "")),
              "system": str(incident.get("system", "")), "severity": severity, "kind": kind}
    if drill:
        labels["drill"] = "true"
    return labels


def annotations_for(message: OutgoingMessage, limit: int) -> dict[str, str]:
    incident = message.incident or {}
    notes = {
        "summary": message.title,
        "description": message.trimmed_text(limit),
        "system_name": incident.get("system_name"),
        "suspected_cause": incident.get("suspected_cause"),
        "affected_departments": ", ".join(incident.get("affected_departments") or []) or None,
        "acknowledged_by": incident.get("acknowledged_by"),
        "caused_by": incident.get("caused_by"),
        "idempotency_key": message.idempotency_key,
    }
    return {k: str(v) for k, v in notes.items() if v}


def build_alerts(
    message: OutgoingMessage, *, now: float, ttl: float, limit: int = DESCRIPTION_LIMIT
) -> list[dict[str, Any]]:
    """Pure: the alerts one message posts (empty for messages without an incident)."""
    incident = message.incident
    if not incident:
        return []
    common: dict[str, Any] = {"annotations": annotations_for(message, limit)}
    if incident.get("started_at"):
        common["startsAt"] = incident["started_at"]
    if message.status_url:
        common["generatorURL"] = message.status_url
    if message.kind == "recovery":
        ends = incident.get("resolved_at") or rfc3339(now)
        return [{**common, "labels": labels_for(incident, kind, severity, message.drill),
                 "endsAt": ends}
                for severity in SEVERITIES for kind in INCIDENT_KINDS]
    severity = str(incident.get("severity") or "critical")
    return [{**common, "labels": labels_for(incident, message.kind, severity, message.drill),
             "endsAt": rfc3339(now + ttl)}]


def build_request(
    message: OutgoingMessage, *, url: str, now: float, ttl: float, limit: int
) -> HttpRequest:
    alerts = build_alerts(message, now=now, ttl=ttl, limit=limit)
    return json_request(url.rstrip("/") + "/api/v2/alerts", alerts)


class AlertmanagerNotifier(NotifierBase):
    type: Literal["alertmanager"]
    url: str = Field(pattern=r"^https?://")
    """The Alertmanager base URL, e.g. `http://alertmanager:9093`."""
    alert_ttl: Duration = 86400.0
    """How long a firing alert stays active without another message from hismon."""

    secret_fields = ("url",)
    default_max_length = DESCRIPTION_LIMIT
    groups_messages = False  # one alert per incident: Alertmanager groups them itself

    def build_request(self, message: OutgoingMessage, *, now: float | None = None) -> HttpRequest:
        return build_request(message, url=self.url, now=time.time() if now is None else now,
                             ttl=self.alert_ttl, limit=self.text_limit)

    def ignores(self, message: OutgoingMessage) -> str | None:
        if not message.incident:
            return f"{message.kind} has no incident, so no alert"
        return None

    async def test(self, message: OutgoingMessage, ctx: NotifyContext) -> str:
        """A real alert (`alertname="HismonTest"`), posted and then resolved: answering 200
        twice is what proves Alertmanager takes hismon's alerts; nothing listening fails."""
        now = time.time()
        base: dict[str, Any] = {"labels": test_labels(), "annotations": {"summary": message.title,
                                                          "description": message.text}}
        if message.status_url:
            base["generatorURL"] = message.status_url
        secrets = self.secrets()
        url = self.url.rstrip("/") + "/api/v2/alerts"
        for ends in (now + 300, now):  # firing for five minutes at most, then resolved now
            request = json_request(url, [{**base, "startsAt": rfc3339(now),
                                          "endsAt": rfc3339(ends)}])
            response = await send_request(ctx, request, channel="alertmanager",
                                          time_limit=self.timeout, secrets=secrets)
            if not response.is_success:
                raise http_error(response, "alertmanager", secrets)
        return f"HTTP {response.status_code}, test alert HismonTest fired and resolved"

    async def send(self, message: OutgoingMessage, ctx: NotifyContext) -> str:
        why = self.ignores(message)
        if why is not None:
            return f"skipped: {why}"
        request = self.build_request(message)
        alerts = request.json()
        secrets = self.secrets()
        response = await send_request(ctx, request, channel="alertmanager",
                                      time_limit=self.timeout, secrets=secrets)
        if not response.is_success:
            raise http_error(response, "alertmanager", secrets)
        verb = "resolved" if message.kind == "recovery" else "firing"
        return f"HTTP {response.status_code}, {len(alerts)} alert(s) {verb}"
