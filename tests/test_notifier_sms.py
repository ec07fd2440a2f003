"""SMS through an HTTP gateway described by templates, against local gateways.

Three gateway styles hospitals meet: a JSON REST API with an API key header, a GET with
query parameters, and a form POST. One request per recipient; a retry after a partial
failure goes only to the recipients that did not get the SMS yet.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiohttp import web
from pydantic import ValidationError

from notifiers import NOTIFIER_TYPES
from notifiers.base import DeliveryError, NotifyContext, OutgoingMessage
from notifiers.sms import SmsNotifier, mask, sms_text
from tests.conftest import serve_route

API_KEY = "sk-live-4c1d8e2f9a7b6c5d"
STATUS_URL = "http://hismon.hospital.internal:9464/"
JSON_BODY = '{"mobile": {{ recipient|tojson }}, "content": {{ text|tojson }}, "sign": "市一院"}'
PHONES = ["13800000001", "13900000002", "13700000003"]

TEXT = "门诊医生站故障，已通知科室启用纸质流程。"
SMS = f"【故障】门诊医生站\n{TEXT}"


def message(text: str = TEXT, **changes: Any) -> OutgoingMessage:
    fields: dict[str, Any] = {
        "kind": "outage_it", "idempotency_key": "inc-42:step-0:sms-it:0",
        "recipient": "sms-it", "title": "【故障】门诊医生站", "text": text,
        "incident": {"id": "inc-42", "system": "his-outpatient", "severity": "critical"},
        "status_url": STATUS_URL,
    }
    fields.update(changes)
    return OutgoingMessage(**fields)


class Gateway:
    """Records every SMS request; fails the numbers in `failing` with their HTTP status."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failing: dict[str, int] = {}
        self.reply: dict[str, Any] = {"code": "0", "msg": "提交成功"}

    async def handle(self, request: web.Request) -> web.Response:
        raw = (await request.read()).decode()
        entry = {"method": request.method, "query": dict(request.query), "raw": raw,
                 "content_type": request.headers.get("Content-Type", ""),
                 "api_key": request.headers.get("X-Api-Key")}
        if entry["content_type"].startswith("application/json"):
            entry["json"] = json.loads(raw)
            mobile = entry["json"]["mobile"]
        elif entry["content_type"].startswith("application/x-www-form-urlencoded"):
            entry["form"] = {k: v[0] for k, v in parse_qs(raw).items()}
            mobile = entry["form"]["to"]
        else:
            mobile = request.query.get("to", "")
        self.requests.append(entry)
        if mobile in self.failing:
            return web.json_response({"code": "500", "msg": "upstream carrier error"},
                                     status=self.failing[mobile])
        return web.json_response(self.reply)


@asynccontextmanager
async def serve(gateway: Gateway) -> AsyncIterator[str]:
    async with serve_route("/sms/send", gateway.handle, "*") as url:
        yield url


def sms(url: str, **keys: Any) -> SmsNotifier:
    config: dict[str, Any] = {"id": "sms-it", "type": "sms", "url": url, "body": JSON_BODY,
                              "headers": {"X-Api-Key": API_KEY}, "recipients": PHONES[:1],
                              "timeout": "2s"}
    config.update(keys)
    return SmsNotifier.model_validate(config)


def test_sms_is_registered() -> None:
    """Configs can name `type: sms`."""
    assert NOTIFIER_TYPES["sms"] is SmsNotifier


def test_the_text_is_cut_in_characters_and_keeps_the_status_link() -> None:
    """SMS segments count characters, not bytes; the link to details survives."""
    text = sms_text(message("停机" * 400), limit=300)
    assert len(text) == 300
    assert text.startswith("【故障】门诊医生站\n停机")
    assert text.endswith(f"… {STATUS_URL}")
    assert sms_text(message(), limit=300) == SMS


def test_numbers_are_masked_in_what_we_report() -> None:
    """Errors and answers go to logs and the API: no full mobile numbers there."""
    assert mask("13800000001") == "138****0001"
    assert mask("110") == "***"


async def test_a_json_gateway_gets_one_request_per_recipient(ctx: NotifyContext) -> None:
    """Every recipient gets its own request with the rendered JSON body and the API key."""
    gateway = Gateway()
    async with serve(gateway) as url:
        answer = await sms(url, recipients=PHONES).send(message(), ctx)
    assert answer == "3 of 3 sent (HTTP 200)"
    assert sorted(r["json"]["mobile"] for r in gateway.requests) == sorted(PHONES)
    first = gateway.requests[0]
    assert first["json"]["content"] == SMS
    assert first["json"]["sign"] == "市一院"
    assert first["api_key"] == API_KEY
    assert first["content_type"].startswith("application/json")


async def test_a_get_gateway_takes_the_fields_in_the_url(ctx: NotifyContext) -> None:
    """The url is a template too; urlencode keeps Chinese and newlines intact."""
    gateway = Gateway()
    async with serve(gateway) as url:
        notifier = sms(f"{url}?to={{{{ recipient|urlencode }}}}&msg={{{{ text|urlencode }}}}",
                       method="GET", body=None)
        await notifier.send(message(), ctx)
    (request,) = gateway.requests
    assert request["method"] == "GET"
    assert request["query"]["to"] == PHONES[0]
    assert request["query"]["msg"] == SMS


async def test_a_form_gateway_gets_a_form_content_type(ctx: NotifyContext) -> None:
    """A body of key=value pairs is sent as a form unless a Content-Type header says else."""
    gateway = Gateway()
    async with serve(gateway) as url:
        await sms(url, body="to={{ recipient }}&msg={{ text|urlencode }}&kind={{ kind }}").send(
            message(), ctx)
    (request,) = gateway.requests
    assert request["content_type"].startswith("application/x-www-form-urlencoded")
    assert request["form"]["kind"] == "outage_it"
    assert request["form"]["msg"].startswith("【故障】门诊医生站")


async def test_a_retry_goes_only_to_those_who_missed_it(ctx: NotifyContext) -> None:
    """One number fails (retryable); the retry sends to that number alone."""
    gateway = Gateway()
    gateway.failing[PHONES[1]] = 502
    async with serve(gateway) as url:
        notifier = sms(url, recipients=PHONES)
        with pytest.raises(DeliveryError) as failure:
            await notifier.send(message(), ctx)
        assert failure.value.permanent is False
        assert "1 of 3 recipients failed: 139****0002" in str(failure.value)
        assert PHONES[1] not in str(failure.value)
        gateway.failing.clear()
        answer = await notifier.send(message(), ctx)
    assert answer == "3 of 3 sent (HTTP 200, 2 in an earlier attempt)"
    mobiles = [r["json"]["mobile"] for r in gateway.requests]
    assert sorted(mobiles) == sorted([*PHONES, PHONES[1]])


async def test_all_refused_with_4xx_is_permanent(ctx: NotifyContext) -> None:
    """A gateway that refuses the request (bad key) will refuse it again."""
    gateway = Gateway()
    gateway.failing = {p: 403 for p in PHONES[:2]}
    async with serve(gateway) as url:
        with pytest.raises(DeliveryError) as failure:
            await sms(url, recipients=PHONES[:2]).send(message(), ctx)
    assert failure.value.permanent is True
    assert "2 of 2 recipients failed" in str(failure.value)


async def test_success_contains_catches_a_refusal_in_a_200(ctx: NotifyContext) -> None:
    """HTTP 200 {"code": "1001"}: with success_contains set, that is a failure."""
    gateway = Gateway()
    gateway.reply = {"code": "1001", "msg": "余额不足"}
    async with serve(gateway) as url:
        notifier = sms(url, success_contains='"code": "0"')
        with pytest.raises(DeliveryError) as failure:
            await notifier.send(message(), ctx)
        gateway.reply = {"code": "0", "msg": "ok"}
        assert (await notifier.send(message(idempotency_key="k2"), ctx)).startswith("1 of 1")
    assert failure.value.permanent is True
    assert "1001" in str(failure.value)


async def test_an_unreachable_gateway_is_retryable_and_hides_the_key(
    ctx: NotifyContext,
) -> None:
    """A key in the URL's query stays out of the error text."""
    gateway = Gateway()
    async with serve(gateway) as url:
        pass
    with pytest.raises(DeliveryError) as failure:
        await sms(f"{url}?apikey={API_KEY}").send(message(), ctx)
    assert failure.value.permanent is False
    assert API_KEY not in str(failure.value)


def test_a_misspelt_template_variable_fails_validation() -> None:
    """StrictUndefined plus a sample render: `hismon validate` catches `recipent`."""
    with pytest.raises(ValidationError, match="recipent"):
        sms("http://gw/sms", body='{"to": {{ recipent|tojson }}}')


def test_template_syntax_errors_fail_validation() -> None:
    with pytest.raises(ValidationError, match="invalid template"):
        sms("http://gw/sms", body='{"to": {{ recipient }')


def test_get_has_no_body_and_post_needs_one() -> None:
    with pytest.raises(ValidationError, match="GET request has no body"):
        sms("http://gw/sms", method="GET")
    with pytest.raises(ValidationError, match="body is required"):
        sms("http://gw/sms", body=None)


async def test_a_gateway_for_people_only_needs_no_recipients(ctx: NotifyContext) -> None:
    """SPEC 13.1: a person's page goes to their own mobile; `recipients` may be left out,
    and a message for nobody is a permanent failure (never "0 of 0 sent")."""
    gateway = Gateway()
    async with serve(gateway) as url:
        notifier = sms(url, recipients=[])
        person = message(extra={"person": {"id": "li", "name": "李娜",
                                           "mobile": "+8613800000002"}})
        assert (await notifier.send(person, ctx)) == "1 of 1 sent (HTTP 200)"
        assert [r["json"]["mobile"] for r in gateway.requests] == ["+8613800000002"]
        with pytest.raises(DeliveryError) as nobody:
            await notifier.send(message(idempotency_key="inc-42:step-1:sms-it:0"), ctx)
    assert nobody.value.permanent and "no recipient" in str(nobody.value)
