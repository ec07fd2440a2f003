"""HA (SPEC 13.2): two real daemons on one PostgreSQL store share the link key; a link
opened on the standby works — the standby records the POST, the leader acknowledges."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.conftest import HttpTarget, Receiver, free_port
from tests.test_ha import config as ha_config
from tests.test_ha import leader_flag
from tests.test_store_contract import drop_schema, new_schema_name, require_pg, with_params

pytestmark = pytest.mark.slow


def config(url: str, target: HttpTarget, rec: Receiver, port: int, public: str) -> str:
    text = ha_config(url, target, rec, port)
    return text.replace("api_tokens: [ha-token]}",
                        f'api_tokens: [ha-token], public_url: "{public}"}}')


async def test_a_link_opened_on_the_standby_acknowledges(
        http_target: HttpTarget, receiver: Receiver, daemon_factory) -> None:
    schema = new_schema_name()
    url = with_params(require_pg(), schema=schema)
    port_a, port_b = free_port(), free_port()
    public = f"http://127.0.0.1:{port_a}"
    try:
        a = await daemon_factory(config(url, http_target, receiver, port_a, public), port_a, "a")
        b = await daemon_factory(config(url, http_target, receiver, port_b, public), port_b, "b")
        async with httpx.AsyncClient(trust_env=False) as client:
            assert await leader_flag(client, a.url) is True
            assert await leader_flag(client, b.url) is False
            http_target.status = 503
            await receiver.wait_for(lambda: "outage_it" in receiver.kinds("it"), timeout=15)
            outage = next(m for m in receiver.messages if m["kind"] == "outage_it")
            link = outage["links"]["ack"]
            assert link.startswith(public + "/a/") and link in outage["text"]
            on_standby = link.replace(public, b.url)
            page = await client.get(on_standby)
            assert page.status_code == 200, "the standby verifies with the shared key"
            posted = await client.post(on_standby, data={"by": "Wang Wei"})
            assert posted.status_code == 200, "never 503 to a link"
            incident = outage["incident"]["id"]
            api = f"{a.url}/api/v1/incidents/{incident}"
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                detail = (await client.get(api)).json()
                # The incident and its timeline entry are two writes: wait for both.
                if detail["acknowledged_by"] and any(
                        e["kind"] == "acknowledged" for e in detail["timeline"]):
                    break
                await asyncio.sleep(0.3)
            assert detail["acknowledged_by"] == "Wang Wei"
            ack = next(e for e in detail["timeline"] if e["kind"] == "acknowledged")
            assert ack["data"]["via"] == "link"
            again = await client.post(on_standby)
            assert again.status_code == 200 and "Already acknowledged by Wang Wei" in again.text
        assert b.terminate() == 0 and a.terminate() == 0
    finally:
        await drop_schema(schema)
