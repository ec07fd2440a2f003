"""Real daemons on one PostgreSQL with `cluster: {shards: auto}` (SPEC 9).

The targets keep their own request log, so "its checks are probed by the others" is judged
by what the targets saw, not by what hismon says about itself.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.conftest import LocalServer, Receiver, free_port
from tests.test_store_contract import drop_schema, new_schema_name, require_pg, with_params

pytestmark = pytest.mark.slow

CHECKS = 24
TTL = 5.0  # the lease TTL for 1 s checks: 1.5 × 1 s, raised to the 5 s floor
INTERVAL = 1.0
HIS_CHECKS = 6
"""c00 fails; c01-c05 stay OK on whichever members own them. The leader judges them by what
their owners save: saved only on a hard change, they were unknown to it and the HIS incident
could never recover (found by bench/cluster.py)."""


class LoggingTarget(LocalServer):
    """One HTTP server, one path per check; remembers when each path was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.hits: dict[str, list[float]] = defaultdict(list)
        self.failing: set[str] = set()

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits[name].append(time.monotonic())
        return web.Response(status=503 if name in self.failing else 200, text="UP")

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/c/{name}", self._handle)

    def longest_gap(self, name: str, since: float, until: float) -> float:
        """The longest stretch in [since, until] in which `name` was not probed."""
        times = [since, *(t for t in self.hits[name] if since <= t <= until), until]
        return max(b - a for a, b in itertools.pairwise(times))


def config(url: str, port: int, target: LoggingTarget, rec: Receiver) -> str:
    checks = "\n".join(
        f'  - {{id: c{i:02d}, system: {"his" if i < HIS_CHECKS else "lab"}, type: http, '
        f'url: "http://127.0.0.1:{target.port}/c/c{i:02d}"}}' for i in range(CHECKS))
    return f"""
site: {{name: Cluster Hospital, timezone: Asia/Shanghai, language: en}}
server: {{listen: "127.0.0.1:{port}", api_tokens: [t]}}
state: {{url: "{url}"}}
cluster: {{shards: auto, member_id: "member-{port}"}}
defaults: {{interval: 1s, timeout: 500ms, retry_interval: 250ms, confirm: 2, recover: 2}}
roles: {{it_oncall: [it]}}
systems:
  - {{id: his, name: HIS, plan: p}}
  - {{id: lab, name: LIS, plan: p}}
checks:
{checks}
notifiers:
  - {{id: it, type: webhook, url: "{rec.url('it')}"}}
plans:
  - id: p
    steps:
      - {{after: 0s, notify: [role:it_oncall], message: outage_it}}
    on_recovery: [role:it_oncall]
"""


async def gauge(client: httpx.AsyncClient, url: str, name: str) -> float | None:
    try:
        text = (await client.get(f"{url}/metrics", timeout=2)).text
    except httpx.HTTPError:
        return None
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


async def wait_gauges(client: httpx.AsyncClient, urls: list[str], name: str,
                      ok: object, timeout: float = 20) -> list[float | None]:
    deadline = time.monotonic() + timeout
    values: list[float | None] = []
    while time.monotonic() < deadline:
        values = [await gauge(client, u, name) for u in urls]
        if ok(values):  # type: ignore[operator]
            return values
        await asyncio.sleep(0.25)
    raise AssertionError(f"{name} never settled: {values}")


async def wait_sent(schema: str, kind: str, timeout: float = 10.0) -> None:
    """Until the store records a message of `kind` as sent."""
    import psycopg
    from psycopg import sql

    deadline = time.monotonic() + timeout
    async with await psycopg.AsyncConnection.connect(require_pg(), autocommit=True) as conn:
        query = sql.SQL("SELECT count(*) FROM {}.outbox WHERE kind = %s AND status = 'sent'"
                        ).format(sql.Identifier(schema))
        while time.monotonic() < deadline:
            row = await (await conn.execute(query, (kind,))).fetchone()
            if row and row[0]:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"no {kind} recorded as sent within {timeout:g}s")


ClusterEnv = tuple[str, "LoggingTarget", list[Any]]


@pytest.fixture
async def cluster_env() -> AsyncIterator[ClusterEnv]:
    """(store URL in a fresh schema, the logging target, the members to stop): the members
    are stopped before the target and the schema go."""
    schema = new_schema_name()
    url = with_params(require_pg(), schema=schema)
    target = await LoggingTarget().start()
    daemons: list[Any] = []
    try:
        yield url, target, daemons
    finally:
        for daemon in daemons:
            daemon.kill()
        await target.stop()
        await drop_schema(schema)


def assert_one_outage_and_one_recovery(receiver: Receiver) -> None:
    """IT heard the outage and the recovery once each, and no message came twice."""
    keys = [m["idempotency_key"] for m in receiver.messages]
    assert len(keys) == len(set(keys)), f"sent twice: {keys}"
    assert receiver.kinds("it") == ["outage_it", "recovery"]


async def three_members(client: httpx.AsyncClient, daemons: list[Any], daemon_factory: Any,
                        ports: list[int], url: str, target: LoggingTarget,
                        receiver: Receiver) -> list[float | None]:
    """Start a member on each port (appended to `daemons` as they start, so the caller stops
    them), wait until all see three members and own every check; their shares."""
    for i, p in enumerate(ports):
        daemons.append(await daemon_factory(config(url, p, target, receiver), p, f"m{i}"))
    urls = [d.url for d in daemons]
    await wait_gauges(client, urls, "hismon_cluster_members", lambda v: v == [3.0, 3.0, 3.0])
    return await wait_gauges(client, urls, "hismon_checks_owned",
                             lambda v: None not in v and sum(v) == CHECKS)


async def test_a_killed_member_s_checks_move_and_a_new_member_takes_a_share(
    receiver: Receiver, daemon_factory, cluster_env: ClusterEnv
) -> None:
    url, target, daemons = cluster_env
    ports = [free_port() for _ in range(3)]
    async with httpx.AsyncClient(trust_env=False) as client:
        owned = await three_members(client, daemons, daemon_factory, ports, url, target,
                                    receiver)
        urls = [d.url for d in daemons]
        assert all(o and o > 0 for o in owned), owned

        # Each check is probed by one member, not three: about one hit per interval.
        before = {n: len(target.hits[n]) for n in list(target.hits)}
        await asyncio.sleep(3)
        rates = [(len(target.hits[f"c{i:02d}"]) - before.get(f"c{i:02d}", 0)) / 3
                 for i in range(CHECKS)]
        assert max(rates) < 2.0, f"probed by several members: {rates}"

        # An incident on the leader's side while one member is killed.
        target.failing.add("c00")
        await receiver.wait_for(lambda: "outage_it" in receiver.kinds("it"), timeout=15)
        leaders = [await gauge(client, u, "hismon_leader") for u in urls]
        victim = next(i for i, lead in enumerate(leaders) if lead == 0.0)
        daemons[victim].kill()
        killed = time.monotonic()
        survivors = [u for i, u in enumerate(urls) if i != victim]
        await wait_gauges(client, survivors, "hismon_cluster_members",
                          lambda v: v == [2.0, 2.0])
        view = (await client.get(f"{survivors[0]}/api/v1/cluster")).json()
        assert len(view["members"]) == 2 and view["term"] >= 1 and view["leader"]
        assert f"member-{ports[victim]}" not in [m["id"] for m in view["members"]]
        await asyncio.sleep(TTL + 2 * INTERVAL)
        now = time.monotonic()
        bound = TTL + INTERVAL + 1.0  # one interval of slack for the probe itself
        gaps = {f"c{i:02d}": target.longest_gap(f"c{i:02d}", killed, now)
                for i in range(CHECKS)}
        assert max(gaps.values()) <= bound, f"unprobed too long after the kill: {gaps}"

        target.failing.clear()
        await receiver.wait_for(lambda: "recovery" in receiver.kinds("it"), timeout=20)

        # A fourth member joins and takes a share from the others.
        port = free_port()
        fourth = await daemon_factory(config(url, port, target, receiver), port, "m4")
        values = await wait_gauges(client, [*survivors, fourth.url], "hismon_checks_owned",
                                   lambda v: None not in v and v[2] > 0
                                   and sum(v) == CHECKS)
        assert values[2] and values[2] > 0
        fourth.kill()
    assert_one_outage_and_one_recovery(receiver)


async def test_a_paused_leader_sends_nothing_when_it_resumes(
    receiver: Receiver, daemon_factory
) -> None:
    """SIGSTOP the leader past its lease, let the other take over and send, SIGCONT it."""
    schema = new_schema_name()
    url = with_params(require_pg(), schema=schema)
    target = await LoggingTarget().start()
    try:
        ports = [free_port(), free_port()]
        text = [config(url, p, target, receiver).replace(
            "message: outage_it}", "message: outage_it}\n"
            "      - {after: 12s, every: 4s, notify: [role:it_oncall], message: progress_update}")
            for p in ports]
        a = await daemon_factory(text[0], ports[0], "a")
        b = await daemon_factory(text[1], ports[1], "b")
        async with httpx.AsyncClient(trust_env=False) as client:
            assert await gauge(client, a.url, "hismon_leader") == 1.0
            term_a = await gauge(client, a.url, "hismon_leader_term")
            target.failing.add("c00")
            await receiver.wait_for(lambda: "outage_it" in receiver.kinds("it"), timeout=15)
            # Paused between the webhook's answer and recording it as sent, the message is in
            # flight: the next leader sends it again with the same key, as SPEC 9 allows (at
            # least once). Seen on a loaded machine; what this test is about comes after.
            await wait_sent(schema, "outage_it")
            a.proc.send_signal(signal.SIGSTOP)
            try:
                await wait_gauges(client, [b.url], "hismon_leader", lambda v: v == [1.0],
                                  timeout=TTL * 3)
                term_b = await gauge(client, b.url, "hismon_leader_term")
                assert term_a is not None and term_b is not None and term_b > term_a
                await receiver.wait_for(
                    lambda: "progress_update" in receiver.kinds("it"), timeout=20)
            finally:
                a.proc.send_signal(signal.SIGCONT)
            await wait_gauges(client, [a.url], "hismon_leader", lambda v: v == [0.0],
                              timeout=10)
            await asyncio.sleep(5)  # what a resumed old leader would send, it sends now
        keys = [m["idempotency_key"] for m in receiver.messages]
        assert len(keys) == len(set(keys)), f"sent twice: {keys}"
        assert "send_fenced" in a.log() or "engine_tick_failed" not in a.log()
    finally:
        a.kill()
        b.kill()
        await target.stop()
        await drop_schema(schema)


async def test_the_leader_killed_mid_incident_its_successor_keeps_the_incident(
    receiver: Receiver, daemon_factory, cluster_env: ClusterEnv
) -> None:
    """SIGKILL the leader while a check probed by a surviving member keeps failing: the new
    leader takes every member's state before it decides (SPEC 9), so the incident stays
    open (no recovery, no second outage while it fails) and recovers once after the heal."""
    from monitor.cluster import assign

    url, target, daemons = cluster_env
    ports = [free_port() for _ in range(3)]
    async with httpx.AsyncClient(trust_env=False) as client:
        await three_members(client, daemons, daemon_factory, ports, url, target, receiver)
        urls = [d.url for d in daemons]
        leaders = [await gauge(client, u, "hismon_leader") for u in urls]
        leader = leaders.index(1.0)
        ids = [f"member-{p}" for p in ports]
        failing = next(f"c{i:02d}" for i in range(HIS_CHECKS)
                       if assign.owners(f"c{i:02d}", ids)[0] != ids[leader])
        target.failing.add(failing)
        await receiver.wait_for(lambda: "outage_it" in receiver.kinds("it"), timeout=15)

        daemons[leader].kill()
        survivors = [u for i, u in enumerate(urls) if i != leader]
        await wait_gauges(client, survivors, "hismon_leader",
                          lambda v: sorted(v) == [0.0, 1.0], timeout=TTL * 3)
        await asyncio.sleep(TTL + 3 * INTERVAL)  # the new leader has decided by now
        assert receiver.kinds("it") == ["outage_it"], "the incident went on as it was"
        incidents = (await client.get(f"{survivors[0]}/api/v1/incidents?status=open",
                                      headers={"Authorization": "Bearer t"})).json()
        assert [i["system"] for i in incidents["incidents"]] == ["his"], incidents

        target.failing.clear()
        await receiver.wait_for(lambda: "recovery" in receiver.kinds("it"), timeout=20)
        await asyncio.sleep(2)  # a doubled message would come now
    assert_one_outage_and_one_recovery(receiver)
