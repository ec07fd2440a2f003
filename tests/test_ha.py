"""Two real daemons on one PostgreSQL store (SPEC §9): one leads, the other takes over.

Both probe; only the leader sends. The leader is killed with SIGKILL mid-incident; the
standby takes over within the lease TTL and sends the next step, with nothing repeated.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.conftest import HttpTarget, Receiver, free_port
from tests.test_store_contract import drop_schema, new_schema_name, require_pg, with_params

pytestmark = pytest.mark.slow


def config(url: str, target: HttpTarget, rec: Receiver, port: int) -> str:
    return f"""
site: {{name: HA Hospital, timezone: Asia/Shanghai, language: en}}
server: {{listen: "127.0.0.1:{port}", api_tokens: [ha-token]}}
state: {{url: "{url}"}}
defaults: {{interval: 1s, timeout: 500ms, retry_interval: 250ms, confirm: 2, recover: 2}}
roles: {{it_oncall: [it]}}
departments:
  - {{id: er, name: Emergency, notify: [er-hook]}}
systems:
  - {{id: his, name: HIS, departments: [er], plan: p}}
checks:
  - {{id: his-web, system: his, type: http, url: "{target.url}"}}
notifiers:
  - {{id: it, type: webhook, url: "{rec.url('it')}"}}
  - {{id: er-hook, type: webhook, url: "{rec.url('er')}"}}
plans:
  - id: p
    steps:
      - {{after: 0s, notify: [role:it_oncall], message: outage_it}}
      - {{after: 12s, notify: [departments], message: department_outage}}
    on_recovery: [role:it_oncall, departments]
"""


async def leader_flag(client: httpx.AsyncClient, url: str) -> bool | None:
    try:
        return bool((await client.get(f"{url}/readyz", timeout=2)).json().get("leader"))
    except (httpx.HTTPError, ValueError):
        return None


async def test_a_standby_takes_over_without_losing_or_repeating_messages(
    http_target: HttpTarget, receiver: Receiver, daemon_factory
) -> None:
    schema = new_schema_name()
    url = with_params(require_pg(), schema=schema)
    port_a, port_b = free_port(), free_port()
    try:
        a = await daemon_factory(config(url, http_target, receiver, port_a), port_a, "a")
        b = await daemon_factory(config(url, http_target, receiver, port_b), port_b, "b")
        async with httpx.AsyncClient(trust_env=False) as client:
            assert await leader_flag(client, a.url) is True
            assert await leader_flag(client, b.url) is False
            standby_ack = await client.post(f"{b.url}/api/v1/incidents/inc-1/ack",
                                            json={"by": "x"},
                                            headers={"Authorization": "Bearer ha-token"})
            assert standby_ack.status_code == 503

            http_target.status = 503
            await receiver.wait_for(lambda: "outage_it" in receiver.kinds("it"), timeout=15)
            await asyncio.sleep(0.5)
            a.kill()
            killed_at = time.monotonic()
            deadline = killed_at + 15
            while time.monotonic() < deadline:
                if await leader_flag(client, b.url):
                    break
                await asyncio.sleep(0.2)
            took = time.monotonic() - killed_at
            assert await leader_flag(client, b.url), "the standby never took over"
            assert took < 2 * 5 + 2, f"takeover took {took:.1f}s"

            await receiver.wait_for(lambda: "department_outage" in receiver.kinds("er"),
                                    timeout=20)
            http_target.status = 200
            await receiver.wait_for(lambda: "recovery" in receiver.kinds("er"), timeout=20)
        keys = [m["idempotency_key"] for m in receiver.messages]
        assert len(keys) == len(set(keys)), f"sent twice: {keys}"
        assert receiver.kinds("it") == ["outage_it", "recovery"]
        assert len({m["incident"]["id"] for m in receiver.messages}) == 1
        assert b.terminate() == 0
    finally:
        await drop_schema(schema)


async def test_a_vantage_quorum_ignores_a_failure_only_one_instance_sees(
    receiver: Receiver, daemon_factory
) -> None:
    """Instance A's own network is broken (its target fails); B still sees the system up."""
    from tests.conftest import HttpTarget

    seen_by_a, seen_by_b = await HttpTarget().start(), await HttpTarget().start()
    schema = new_schema_name()
    url = with_params(require_pg(), schema=schema)
    text = config(url, seen_by_a, receiver, 0).replace(
        f'url: "{seen_by_a.url}"}}', 'url: "${TARGET_URL}", vantage_quorum: 2}')
    try:
        port_a, port_b = free_port(), free_port()
        a = await daemon_factory(text.replace('127.0.0.1:0"', f'127.0.0.1:{port_a}"'), port_a,
                                 "a", env={"TARGET_URL": seen_by_a.url})
        async with httpx.AsyncClient(trust_env=False) as client:
            assert await leader_flag(client, a.url), "A leads: without the quorum it would page"
        await daemon_factory(text.replace('127.0.0.1:0"', f'127.0.0.1:{port_b}"'), port_b,
                             "b", env={"TARGET_URL": seen_by_b.url})
        seen_by_a.status = 503
        await asyncio.sleep(6)
        assert receiver.messages == [], "one vantage point is not a quorum"
        seen_by_b.status = 503
        await receiver.wait_for(lambda: "outage_it" in receiver.kinds("it"), timeout=15)
    finally:
        await seen_by_a.stop()
        await seen_by_b.stop()
        await drop_schema(schema)
