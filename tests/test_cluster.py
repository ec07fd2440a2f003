"""Cluster membership, check assignment and fencing (SPEC 9).

The assignment is pure (rendezvous hashing) and tested as such; membership and fencing run
against the real PostgreSQL, each test on a fresh schema.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from monitor.cluster import assign
from monitor.cluster.leader import Leadership
from monitor.cluster.membership import Membership, default_member_id
from monitor.core.models import OutboxMessage
from monitor.store import Store, open_store
from monitor.store.base import Fenced
from tests.test_store_contract import drop_schema, new_schema_name, require_pg, with_params

CHECKS = [f"check-{i:04d}" for i in range(600)]


# ---- assignment (pure) ---------------------------------------------------------------------


def test_every_check_has_exactly_one_owner_and_the_split_is_even() -> None:
    members = ["a:9464", "b:9464", "c:9464"]
    owned = {m: assign.owned_by(m, [(c, 1) for c in CHECKS], members) for m in members}
    assert set().union(*owned.values()) == set(CHECKS)
    assert sum(len(s) for s in owned.values()) == len(CHECKS), "a check probed twice"
    for share in owned.values():
        assert 150 < len(share) < 250, {m: len(s) for m, s in owned.items()}


def test_a_dead_member_moves_only_its_own_checks() -> None:
    before = {c: assign.owners(c, ["a", "b", "c"])[0] for c in CHECKS}
    after = {c: assign.owners(c, ["a", "c"])[0] for c in CHECKS}
    moved = {c for c in CHECKS if before[c] != after[c]}
    assert moved == {c for c in CHECKS if before[c] == "b"}


def test_a_new_member_takes_a_share_from_everyone_and_nothing_else_moves() -> None:
    before = {c: assign.owners(c, ["a", "b", "c"])[0] for c in CHECKS}
    after = {c: assign.owners(c, ["a", "b", "c", "d"])[0] for c in CHECKS}
    moved = {c for c in CHECKS if before[c] != after[c]}
    assert all(after[c] == "d" for c in moved)
    assert 100 < len(moved) < 200
    assert {before[c] for c in moved} == {"a", "b", "c"}


def test_the_answer_does_not_depend_on_the_order_members_are_listed() -> None:
    for check in CHECKS[:50]:
        assert assign.owners(check, ["a", "b", "c"], 2) == assign.owners(check, ["c", "a", "b"], 2)


def test_replicas_and_quorum_give_distinct_members_capped_by_who_is_alive() -> None:
    assert len(set(assign.owners("x", ["a", "b", "c"], 2))) == 2
    assert assign.owners("x", ["a"], 3) == ["a"]
    assert assign.owners("x", [], 1) == []
    assert assign.replicas_for(vantage_quorum=2, replicas=1) == 2
    assert assign.replicas_for(vantage_quorum=1, replicas=3) == 3


def test_a_member_nobody_sees_yet_owns_nothing() -> None:
    assert assign.owned_by("ghost", [("x", 1)], ["a", "b"]) == set()


def test_the_default_member_id_is_the_host_and_the_listen_port() -> None:
    assert default_member_id("127.0.0.1:9464").endswith(":9464")
    assert default_member_id("[::1]:19000").endswith(":19000")


# ---- membership on the real PostgreSQL ------------------------------------------------------


@pytest.fixture
async def pg_stores() -> AsyncIterator[Callable[[], Awaitable[Store]]]:
    schema = new_schema_name()
    url = with_params(require_pg(), schema=schema)
    made: list[Store] = []

    async def make() -> Store:
        store = open_store(url)
        await store.open()
        made.append(store)
        return store

    try:
        yield make
    finally:
        for store in made:
            await store.close()
        await drop_schema(schema)


def _member(store: Store, me: str, ttl: float, changes: list[set[str]]) -> Membership:
    return Membership(store, me, ttl, lambda: [(c, 1) for c in CHECKS[:90]], changes.append)  # type: ignore[arg-type]


async def test_members_split_the_checks_and_take_over_a_silent_member(
    pg_stores: Callable[[], Awaitable[Store]]
) -> None:
    ttl = 1.0  # b's; a and c keep theirs long so only b's row can run out in this test
    changes: dict[str, list[set[str]]] = {m: [] for m in "abc"}
    members = {m: _member(await pg_stores(), m, ttl if m == "b" else 30.0, changes[m])
               for m in "abc"}
    for member in members.values():
        await member.beat()
    for member in members.values():  # the first ones saw fewer members: beat again
        await member.beat()
    assert all(m.member_ids == ["a", "b", "c"] for m in members.values())
    shares = [members[m].owned for m in "abc"]
    assert set().union(*shares) == set(CHECKS[:90])
    assert sum(len(s) for s in shares) == 90
    b_share = set(members["b"].owned)
    assert b_share, "b owns something"

    # b stops heartbeating (SIGKILL, frozen VM): after the TTL the others cover its checks.
    await asyncio.sleep(ttl + 0.3)
    await members["a"].beat()
    await members["c"].beat()
    assert members["a"].member_ids == ["a", "c"]
    assert members["a"].owned | members["c"].owned == set(CHECKS[:90])
    assert members["a"].owned.isdisjoint(members["c"].owned)
    assert "b" in members["a"].lost
    assert changes["a"][-1] == members["a"].owned


async def test_a_joining_member_takes_its_share_and_a_leaving_one_hands_over_at_once(
    pg_stores: Callable[[], Awaitable[Store]]
) -> None:
    changes: list[set[str]] = []
    a = _member(await pg_stores(), "a", 30.0, changes)
    await a.beat()
    assert a.owned == set(CHECKS[:90])
    b = _member(await pg_stores(), "b", 30.0, [])
    await b.beat()
    await a.beat()
    assert b.owned and a.owned.isdisjoint(b.owned)
    assert a.owned | b.owned == set(CHECKS[:90])

    stop = asyncio.Event()
    stop.set()
    await b.run(stop)  # a clean stop leaves the member table at once, not after 30 s
    await a.beat()
    assert a.member_ids == ["a"] and a.owned == set(CHECKS[:90])


# ---- fencing --------------------------------------------------------------------------------


def _message(key: str) -> OutboxMessage:
    return OutboxMessage(id=None, idempotency_key=key, notifier="it", kind="outage_it",
                         incident_id="inc-1", payload={"text": "x"}, created_at=0.0,
                         status="pending", attempts=0, next_attempt_at=0.0)


async def test_terms_grow_with_each_new_holder(pg_stores: Callable[[], Awaitable[Store]]) -> None:
    store_a, store_b = await pg_stores(), await pg_stores()
    a, b = Leadership(store_a, ttl=5, me="a"), Leadership(store_b, ttl=5, me="b")
    assert await a.acquire_or_renew()
    first = a.term
    assert await a.acquire_or_renew() and a.term == first, "a renewal keeps the term"
    assert not await b.acquire_or_renew() and b.term == first
    await a.release()
    assert await b.acquire_or_renew() and b.term == first + 1
    await b.release()
    assert await a.acquire_or_renew() and a.term == first + 2, "a released term is remembered"


async def test_a_paused_leader_writes_and_sends_nothing_after_another_took_over(
    pg_stores: Callable[[], Awaitable[Store]]
) -> None:
    old, new = await pg_stores(), await pg_stores()
    holder, _, term = await old.acquire_lease("hismon", "old", 0.5)  # type: ignore[attr-defined]
    assert holder == "old"
    old.fence = ("hismon", "old", term)  # type: ignore[attr-defined]
    early = _message("inc-1:step-0:it:0")
    assert await old.record_step("inc-1", "step-0", 0, 1.0, "sent", [early])
    assert await old.begin_attempt(early) is not None

    await asyncio.sleep(0.7)  # old is frozen past its lease; new takes over
    holder, _, new_term = await new.acquire_lease("hismon", "new", 30)  # type: ignore[attr-defined]
    assert holder == "new" and new_term == term + 1
    new.fence = ("hismon", "new", new_term)  # type: ignore[attr-defined]

    with pytest.raises(Fenced):
        await old.record_step("inc-1", "step-1", 0, 2.0, "sent", [_message("inc-1:step-1:it:0")])
    with pytest.raises(Fenced):
        await old.enqueue([_message("inc-1:late:it:0")])
    assert await old.begin_attempt(early) is None, "the old leader must not start a send"
    assert await new.steps_recorded("inc-1") == {("step-0", 0): "sent"}
    assert await new.record_step("inc-1", "step-1", 0, 2.0, "sent",
                                 [_message("inc-1:step-1:it:0")])
    assert await new.begin_attempt(early) is not None


async def test_a_send_attempt_learns_how_long_the_lease_still_runs(
    pg_stores: Callable[[], Awaitable[Store]]
) -> None:
    store = await pg_stores()
    _, _, term = await store.acquire_lease("hismon", "me", 3)  # type: ignore[attr-defined]
    store.fence = ("hismon", "me", term)  # type: ignore[attr-defined]
    message = _message("k")
    await store.enqueue([message])
    left = await store.begin_attempt(message)
    assert left is not None and 2.0 < left <= 3.0


def test_the_leader_allows_for_the_owners_save_cadence_before_calling_a_check_stale(
        tmp_path: Path) -> None:
    """Another member saves a check's state every max(interval, 5 s): its `last_run` as the
    leader reads it may be that much older than the probe. bench/cluster.py saw hundreds of
    moved checks flagged stale on the leader while their takeover was within TTL + interval."""
    from monitor.config.loader import load_config_text
    from monitor.probing.state import CheckState, stale_after
    from monitor.runtime.daemon import Daemon
    from tests.conftest import Clock
    from tests.test_engine import CONFIG, T0

    config = load_config_text(
        CONFIG + f'state: {{url: "sqlite:///{tmp_path}/s.db"}}\n', "t.yaml", {})
    daemon = Daemon(config, clock=Clock(T0), serve_http=False, shard=(0, 2))
    mine = next(c for c in config.checks if c.interval and daemon.scheduler.owns(c.id))
    theirs = next(c for c in config.checks if c.interval and not daemon.scheduler.owns(c.id))
    for check in (mine, theirs):
        assert check.interval is not None
        bound = stale_after(check.interval, check.timeout or 0.0)
        state = CheckState(check.id, check.system, check.type, probed=True)
        state.last_run = T0 - bound - 2.0  # past the bound by less than a save cadence
        daemon.states[check.id] = state
    daemon._mark_stale()
    assert daemon.states[mine.id].stale, "a check this instance probes has no slack"
    assert not daemon.states[theirs.id].stale, "the owner may simply not have saved yet"
    assert theirs.interval is not None
    daemon.states[theirs.id].last_run = T0 - stale_after(
        theirs.interval, theirs.timeout or 0.0) - max(theirs.interval, 5.0) - 2.0
    daemon._mark_stale()
    assert daemon.states[theirs.id].stale, "past the cadence too: nobody probes it"


async def test_the_leader_reads_only_the_states_saved_since_its_last_read(
        tmp_path: Path) -> None:
    """Each second the leader takes the states other members saved since its previous read,
    not every state again (that was O(checks) decoded rows a second); a new term reads them
    all before the engine's first tick (SPEC 9)."""
    from monitor.config.loader import load_config_text
    from monitor.core.result import State
    from monitor.probing.state import CheckState, to_record
    from monitor.runtime.daemon import Daemon
    from tests.conftest import Clock
    from tests.test_engine import CONFIG, T0

    url = f"sqlite:///{tmp_path}/s.db"
    config = load_config_text(CONFIG + f'state: {{url: "{url}"}}\n', "t.yaml", {})
    daemons = [Daemon(config, clock=Clock(T0), serve_http=False, shard=(i, 2)) for i in (0, 1)]
    daemon = max(daemons, key=lambda d: sum(not d.scheduler.owns(c.id) for c in config.checks))
    theirs = [c for c in config.checks if c.interval and not daemon.scheduler.owns(c.id)]
    assert len(theirs) >= 2
    first, second = theirs[:2]

    def record(check_id: str, state: State, message: str, last_run: float) -> dict:  # type: ignore[type-arg]
        check = config.check(check_id)
        cs = CheckState(check.id, check.system, check.type, state=state, hard_state=state,
                        message=message, last_run=last_run)
        return to_record(cs)

    other = open_store(url)  # the member that probes `theirs`
    await daemon.store.open()
    await other.open()
    try:
        await other.save_check_states({c.id: record(c.id, State.OK, "fine", T0) for c in theirs})
        await daemon._adopt_member_states(everything=True)
        assert all(daemon.states[c.id].message == "fine" and daemon.states[c.id].probed
                   for c in theirs)

        daemon.states[first.id].message = "as read"  # not saved again: not read again
        await daemon._adopt_member_states()
        assert daemon.states[first.id].message == "as read"

        daemon.engine._dirty.clear()
        await other.save_check_states({second.id: record(second.id, State.CRIT, "down", T0)})
        await daemon._adopt_member_states()
        assert daemon.states[second.id].hard_state is State.CRIT
        assert second.system in daemon.engine._dirty, "a hard change is looked at"
        assert daemon.states[first.id].message == "as read"

        # A stale check whose owner saves a fresh result is fresh again, and that is a change
        # for its system (the adopted state keeps `stale` until `_mark_stale` judges it).
        daemon.states[second.id].stale = True
        daemon.engine._dirty.clear()
        await other.save_check_states({second.id: record(second.id, State.CRIT, "down", T0)})
        await daemon._adopt_member_states()
        daemon._mark_stale()
        assert not daemon.states[second.id].stale
        assert second.system in daemon.engine._dirty

        daemon.states[first.id].message = "as read"
        await daemon._on_leadership(True)  # a new term: all of them again, before any tick
        try:
            assert daemon.leading
            assert daemon.states[first.id].message == "fine"
        finally:
            await daemon._on_leadership(False)
    finally:
        await other.close()
        await daemon.store.close()


async def test_the_leader_knows_another_member_s_check_flaps_or_is_unstable(
        tmp_path: Path) -> None:
    """SPEC 4 on the leader for checks other members probe: it judged them by the saved
    record, which had no flapping nor unstable, so a check flapping on another member opened
    and resolved an incident at every flap, an unstable one opened none, and a recovering
    check's failure evidence (its last failure message) was gone."""
    from monitor.config.loader import load_config_text
    from monitor.core.result import Result, State
    from monitor.probing.state import CheckState, advance, to_record
    from monitor.runtime.daemon import Daemon
    from tests.conftest import Clock
    from tests.test_engine import CONFIG, T0

    url = f"sqlite:///{tmp_path}/s.db"
    config = load_config_text(CONFIG + f'state: {{url: "{url}"}}\n', "t.yaml", {})
    daemons = [Daemon(config, clock=Clock(T0), serve_http=False, shard=(i, 2)) for i in (0, 1)]
    daemon = max(daemons, key=lambda d: sum(not d.scheduler.owns(c.id) for c in config.checks))
    flappy, shaky = [c for c in config.checks if c.interval
                     and not daemon.scheduler.owns(c.id)][:2]
    # What the member that probes them folded (the real state machine).
    flapping = CheckState(flappy.id, flappy.system, flappy.type)
    for i in range(12):
        advance(flapping, Result(State.CRIT if i % 2 else State.OK, "refused"), T0 + i, 1, 1)
    unstable = CheckState(shaky.id, shaky.system, shaky.type)
    for i in range(12):
        advance(unstable, Result(State.OK if i % 3 == 2 else State.WARN, "slow"), T0 + i, 3, 2)
    assert flapping.flapping and unstable.unstable and not unstable.failing

    other = open_store(url)
    await daemon.store.open()
    await other.open()
    try:
        await other.save_check_states({s.check_id: to_record(s) for s in (flapping, unstable)})
        await daemon._adopt_member_states(everything=True)
        seen = daemon.states
        assert seen[flappy.id].flapping and seen[flappy.id].flap_percent > 20.0
        assert seen[shaky.id].unstable and seen[shaky.id].unstable_state is State.WARN
        assert seen[shaky.id].unstable_since == unstable.unstable_since
        assert seen[shaky.id].troubled, "an unstable check makes its system's incident"
        assert seen[shaky.id].failure_message == "slow"
    finally:
        await other.close()
        await daemon.store.close()
