"""The incident page's ack form on a standby (issue 9 item 2): refused, like the API.

The bug: the form skipped the standby check the API does, so a standby wrote the ack into
the shared store and the leader's next save of the incident (it saves its own copy every
tick that changes it) silently overwrote it. Two real `hismon run` daemons share one
PostgreSQL schema; the form is posted as a browser posts it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import HttpTarget, Receiver, free_port
from tests.test_ha import config, leader_flag
from tests.test_store_contract import drop_schema, new_schema_name, require_pg, with_params

pytestmark = pytest.mark.slow
FORM = {"content-type": "application/x-www-form-urlencoded"}


async def open_incident(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    for _ in range(200):
        found = (await client.get(f"{url}/api/v1/incidents", params={"status": "open"})).json()
        if found["incidents"]:
            return dict(found["incidents"][0])
        await asyncio.sleep(0.1)
    raise AssertionError("no incident opened")


async def test_the_ack_form_on_a_standby_is_refused_and_the_leaders_ack_stands(
    http_target: HttpTarget, receiver: Receiver, daemon_factory: Any
) -> None:
    schema = new_schema_name()
    url = with_params(require_pg(), schema=schema)
    port_a, port_b = free_port(), free_port()
    try:
        a = await daemon_factory(config(url, http_target, receiver, port_a), port_a, "a")
        b = await daemon_factory(config(url, http_target, receiver, port_b), port_b, "b")
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            assert await leader_flag(client, a.url) is True
            assert await leader_flag(client, b.url) is False
            http_target.status = 503
            incident = await open_incident(client, a.url)
            form = f"/incidents/{incident['id']}/ack"
            for _ in range(100):  # the standby follows the store: it shows the incident too
                page = await client.get(f"{b.url}/incidents/{incident['id']}")
                if page.status_code == 200:
                    break
                await asyncio.sleep(0.1)

            refused = await client.post(f"{b.url}{form}", headers=FORM,
                                        content=b"by=Mallory+on+the+standby&token=ha-token")
            assert refused.status_code == 503, refused.text[:500]
            assert "text/html" in refused.headers["content-type"]
            assert "standby" in refused.text and "Nothing was changed" in refused.text
            await asyncio.sleep(2.5)  # the standby's follow loop and the leader's saves run
            for where in (a.url, b.url):
                seen = (await client.get(f"{where}/api/v1/incidents/{incident['id']}")).json()
                assert seen["acknowledged_by"] is None, where
                assert not [e for e in seen["timeline"] if e["kind"] == "acknowledged"]

            accepted = await client.post(f"{a.url}{form}", headers=FORM,
                                         content=b"by=Dr.+Wang&note=on+it&token=ha-token")
            assert accepted.status_code == 303, accepted.text[:500]
            await asyncio.sleep(3)  # several leader ticks: the ack must survive its saves
            for where in (a.url, b.url):
                seen = (await client.get(f"{where}/api/v1/incidents/{incident['id']}")).json()
                assert seen["acknowledged_by"] == "Dr. Wang", where
                acks = [e for e in seen["timeline"] if e["kind"] == "acknowledged"]
                assert len(acks) == 1 and "Dr. Wang" in acks[0]["text"], where

            # The API says the same on the standby, and a wrong token is still a 401 there.
            api = await client.post(f"{b.url}/api/v1/incidents/{incident['id']}/ack",
                                    json={"by": "Mallory"},
                                    headers={"Authorization": "Bearer ha-token"})
            assert api.status_code == 503 and "standby" in api.json()["error"]
            wrong = await client.post(f"{b.url}{form}", headers=FORM,
                                      content=b"by=Mallory&token=wrong")
            assert wrong.status_code == 401
        assert a.terminate() == 0 and b.terminate() == 0
    finally:
        await drop_schema(schema)
