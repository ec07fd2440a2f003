"""Leader election on a real PostgreSQL: one leader, takeover after the TTL, blips survived.

Each test gets its own schema (dropped afterwards) and short TTLs; every wait is bounded.
Settings as in test_store_contract (HISMON_TEST_PG_URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from monitor.cluster.leader import MAX_TTL, MIN_TTL, Leadership, config_lease_ttl, lease_ttl
from monitor.store import Store, open_store
from tests import test_store_contract as contract

TTL = 1.5


@pytest.fixture
async def pg() -> AsyncIterator[Callable[..., Awaitable[Store]]]:
    """Open stores (one per simulated instance) on a fresh schema; closed and dropped after."""
    base = contract.require_pg()
    schema = contract.new_schema_name()
    made: list[Store] = []

    async def make(app: str | None = None, base_url: str | None = None,
                   **params: str) -> Store:
        url = contract.with_params(base_url or base, schema=schema,
                                   application_name=app or f"{schema}_{len(made)}", **params)
        store = open_store(url)
        made.append(store)
        await asyncio.wait_for(store.open(), 20)
        return store

    try:
        yield make
    finally:
        for store in made:
            await store.close()
        await contract.drop_schema(schema)


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float,
                     step: float = 0.05) -> float:
    """Poll until true; returns the seconds it took. Fails the test after `timeout`."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not await predicate():
        if loop.time() - started > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(step)
    return loop.time() - started


# ---- the lease ------------------------------------------------------------------------


async def test_exactly_one_of_two_leads(pg: Callable[..., Awaitable[Store]]) -> None:
    a = Leadership(await pg(), ttl=TTL, me="a")
    b = Leadership(await pg(), ttl=TTL, me="b")
    assert a.shared and b.shared
    results = await asyncio.gather(a.acquire_or_renew(1.0), b.acquire_or_renew(1.0))
    assert sorted(results) == [False, True]
    leader, follower = (a, b) if results[0] else (b, a)
    assert leader.is_leader and not follower.is_leader
    assert leader.holder == follower.holder == leader.me
    assert leader.since == 1.0 and follower.since is None
    for _ in range(3):  # renewals keep it; the follower keeps being refused
        assert await leader.acquire_or_renew(2.0) is True
        assert await follower.acquire_or_renew(2.0) is False
    assert leader.since == 1.0


async def test_many_racing_instances_elect_one(pg: Callable[..., Awaitable[Store]]) -> None:
    store = await pg(pool_size="8")
    instances = [Leadership(store, ttl=TTL, me=f"i{n}") for n in range(8)]
    results = await asyncio.gather(*[i.acquire_or_renew() for i in instances])
    assert results.count(True) == 1
    assert len({i.holder for i in instances}) == 1


async def test_follower_takes_over_after_the_ttl(pg: Callable[..., Awaitable[Store]]) -> None:
    """The leader dies (stops renewing): the follower takes over once the TTL ran out."""
    a = Leadership(await pg(), ttl=TTL, me="a")
    b = Leadership(await pg(), ttl=TTL, me="b")
    assert await a.acquire_or_renew()
    loop = asyncio.get_running_loop()
    died = loop.time()
    assert await b.acquire_or_renew() is False
    # Locally the dead-man stops trusting its lease first (0.8 × TTL), without any call...
    await wait_until(lambda: _false(a.is_leader), timeout=TTL)
    assert loop.time() - died >= 0.75 * TTL
    assert await b.acquire_or_renew() is False  # ...before the database would let b in

    async def b_leads() -> bool:
        return await b.acquire_or_renew()

    await wait_until(b_leads, timeout=TTL + 2)
    took = loop.time() - died
    assert TTL * 0.9 <= took <= TTL + 1.5, took
    assert b.is_leader and b.holder == "b"
    # The old leader, back from the dead, is a follower now.
    assert await a.acquire_or_renew() is False
    assert a.holder == "b" and not a.is_leader


async def test_release_hands_over_at_once(pg: Callable[..., Awaitable[Store]]) -> None:
    a = Leadership(await pg(), ttl=30.0, me="a")
    b = Leadership(await pg(), ttl=30.0, me="b")
    assert await a.acquire_or_renew()
    assert not await b.acquire_or_renew()
    await a.release()
    assert not a.is_leader
    assert await b.acquire_or_renew()
    await a.release()  # not the holder: must not take b's lease away
    assert await b.acquire_or_renew() and not await a.acquire_or_renew()


async def _false(value: bool) -> bool:
    return not value


# ---- the run loop, as the daemon uses it ---------------------------------------------


async def test_run_loop_starts_and_stops_exactly_one_engine(
        pg: Callable[..., Awaitable[Store]]) -> None:
    events: list[tuple[str, bool]] = []
    running: set[str] = set()

    def callback(name: str) -> Callable[[bool], Awaitable[None]]:
        async def on_change(lead: bool) -> None:
            events.append((name, lead))
            (running.add if lead else running.discard)(name)
        return on_change

    stops = {n: asyncio.Event() for n in "ab"}
    leaders = {n: Leadership(await pg(), ttl=TTL, me=n) for n in "ab"}
    tasks = {n: asyncio.create_task(leaders[n].run(stops[n], callback(n))) for n in "ab"}
    try:
        async def one_running() -> bool:
            return len(running) == 1

        await wait_until(one_running, timeout=5)
        first = next(iter(running))
        other = "b" if first == "a" else "a"
        for _ in range(int(2 * TTL / 0.05)):  # across several renewals: never two, never none
            assert running == {first}
            await asyncio.sleep(0.05)

        # Clean stop of the leader: it stops its engine, then releases; the other starts.
        stops[first].set()
        await asyncio.wait_for(tasks[first], 5)
        assert (first, False) in events

        async def other_running() -> bool:
            return running == {other}

        took = await wait_until(other_running, timeout=TTL)
        assert took < TTL  # a release is not a TTL wait
    finally:
        for stop in stops.values():
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks.values(), return_exceptions=True), 10)
    assert running == set()


async def test_failed_start_gives_the_lease_away(pg: Callable[..., Awaitable[Store]]) -> None:
    """An instance whose engine cannot start must not sit on the lease."""
    sick = Leadership(await pg(), ttl=TTL, me="sick")
    healthy = Leadership(await pg(), ttl=TTL, me="healthy")

    async def broken(lead: bool) -> None:
        if lead:
            raise RuntimeError("engine failed to load")

    started = asyncio.Event()

    async def works(lead: bool) -> None:
        if lead:
            started.set()

    assert await sick.acquire_or_renew()
    await sick.release()
    stop = asyncio.Event()
    sick_task = asyncio.create_task(sick.run(stop, broken))
    await asyncio.sleep(0.1)
    healthy_task = asyncio.create_task(healthy.run(stop, works))
    try:
        await asyncio.wait_for(started.wait(), 3 * TTL)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(sick_task, healthy_task), 10)


# ---- connection trouble ------------------------------------------------------------


async def test_terminated_backend_does_not_crash_store_or_leadership(
        pg: Callable[..., Awaitable[Store]]) -> None:
    app = f"leader_{uuid.uuid4().hex[:8]}"
    store = await pg(app=app)
    a = Leadership(store, ttl=TTL, me="a")
    assert await a.acquire_or_renew()
    assert await contract.terminate_backends(app) >= 1
    await asyncio.sleep(0.1)
    assert await a.acquire_or_renew() is True  # reconnected, still the leader
    assert a.last_error is None
    assert await contract.terminate_backends(app) >= 1
    await asyncio.sleep(0.1)
    assert await store.list_incidents() == []  # the next store call succeeds
    await store.ping()


class Proxy:
    """A TCP relay in front of PostgreSQL that a test can cut and restore (a partition,
    a restarting server) without touching the real server other tests share."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}


async def test_unreachable_store_leader_steps_down_then_recovers(
        pg: Callable[..., Awaitable[Store]]) -> None:
    """The leader loses the database: calls fail fast, it steps down before the lease
    runs out, another instance takes over; when the link is back, calls work again."""
    from urllib.parse import urlsplit

    base = contract.require_pg()
    target = urlsplit(base)
    proxy = Proxy(target.port or 5432)
    await proxy.start()
    proxied = base.replace(f"{target.hostname}:{target.port or 5432}",
                           f"127.0.0.1:{proxy.port}", 1)
    if proxied == base:
        pytest.skip("HISMON_TEST_PG_URL has no host:port to put a relay in front of")
    cut_store = await pg(base_url=proxied, connect_timeout="2", query_timeout="2")
    a = Leadership(cut_store, ttl=TTL, me="a")
    b = Leadership(await pg(), ttl=TTL, me="b")
    assert await a.acquire_or_renew()

    await proxy.cut()
    loop = asyncio.get_running_loop()
    cut_at = loop.time()
    with pytest.raises(Exception):  # noqa: B017 - OperationalError, or a timeout
        await cut_store.list_incidents()
    assert loop.time() - cut_at < 3  # bounded: the caller's loop goes on probing

    async def a_stepped_down() -> bool:
        await a.acquire_or_renew()  # never raises, even with the store gone
        return not a.is_leader

    await wait_until(a_stepped_down, timeout=TTL + 3)
    assert a.last_error is not None and "s3cret" not in a.last_error

    async def b_leads() -> bool:
        return await b.acquire_or_renew()

    await wait_until(b_leads, timeout=TTL + 2)

    await proxy.start()  # the link is back (same port)

    async def store_back() -> bool:
        try:
            await cut_store.ping()
        except Exception:
            return False
        return True

    await wait_until(store_back, timeout=10, step=0.2)
    assert await cut_store.list_incidents() == []
    assert await a.acquire_or_renew() is False and a.holder == "b"
    await proxy.cut()


# ---- SQLite and the TTL rule ---------------------------------------------------------


async def test_sqlite_instance_always_leads(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    await store.open()
    try:
        lead = Leadership(store, ttl=5.0)
        assert not lead.shared
        assert await lead.acquire_or_renew(10.0) is True
        assert lead.is_leader and lead.holder == lead.me and lead.since == 10.0
        await lead.release()
        assert not lead.is_leader
        assert await lead.acquire_or_renew(11.0) is True
    finally:
        await store.close()


def test_lease_ttl_follows_the_shortest_interval() -> None:
    assert lease_ttl([30.0, 10.0, 60.0]) == 15.0
    assert lease_ttl([1.0]) == MIN_TTL
    assert lease_ttl([600.0]) == MAX_TTL
    assert lease_ttl([]) == MAX_TTL
    config = SimpleNamespace(checks=[SimpleNamespace(interval=20.0),
                                     SimpleNamespace(interval=8.0)])
    assert config_lease_ttl(config) == 12.0
    lead = Leadership(SimpleNamespace(), ttl=12.0)  # type: ignore[arg-type]
    assert lead.renew_every == 4.0


async def test_race_for_an_expired_lease(pg: Callable[..., Awaitable[Store]]) -> None:
    """Followers racing for a dead leader's lease: one wins, all name the winner."""
    dead = Leadership(await pg(), ttl=0.3, me="dead")
    assert await dead.acquire_or_renew()
    await asyncio.sleep(0.5)
    store = await pg(pool_size="6")
    racers = [Leadership(store, ttl=TTL, me=f"r{n}") for n in range(6)]
    results = await asyncio.gather(*[r.acquire_or_renew() for r in racers])
    assert results.count(True) == 1
    winner = racers[results.index(True)].me
    assert {r.holder for r in racers} == {winner}
    assert all(r.next_call_in() <= TTL / 3 for r in racers)


async def test_leadership_gained_while_following_keeps_the_new_engines_incidents(
        tmp_path: Path) -> None:
    """A daemon restarted mid-outage follows for a moment, then leads. Leadership gained
    while the follower's once-a-second read was waiting on the store once handed the new
    leader's engine the follower's `open` dict: its applier kept writing to the old one, so an
    acknowledgement never reached the incident the engine acts on (seen as "Already
    acknowledged by None" on the link page, and reminders that went on after the ack)."""
    from monitor.config.loader import load_config_text
    from monitor.core.models import Incident
    from monitor.runtime.daemon import Daemon
    from tests.test_engine import CONFIG

    config = load_config_text(
        CONFIG + f'state: {{url: "sqlite:///{tmp_path}/s.db"}}\n', "t.yaml", {})
    daemon = Daemon(config, serve_http=False)
    await daemon.store.open()
    try:
        await daemon.store.save_incident(Incident(
            id="inc-1", system="his", severity="critical", started_at=1.0, opened_at=1.0))
        inner = daemon.store.inner  # the real store, under the write journal
        real_list = inner.list_incidents

        async def list_then_lead(**kw: object) -> list[Incident]:
            found = await real_list(**kw)  # type: ignore[arg-type]
            inner.list_incidents = real_list  # type: ignore[method-assign]
            await daemon._on_leadership(True)  # the lease arrives during the read
            return found

        inner.list_incidents = list_then_lead  # type: ignore[method-assign]
        await daemon._follow()
        engine = daemon.engine
        assert engine.applier.open is engine.open, "the applier writes where the engine reads"
        acked = await engine.acknowledge("inc-1", "Li Na", None)
        assert acked is not None and acked.acknowledged_by == "Li Na"
        assert engine.open["his"].acknowledged_by == "Li Na"
    finally:
        await daemon._on_leadership(False)
        await daemon.store.close()
