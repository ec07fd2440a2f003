"""The history part of the Store contract, on SQLite and a real PostgreSQL (SPEC §7).

Same fixtures as tests/test_store_contract.py: a temp SQLite file, a fresh PostgreSQL schema.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from monitor.history.model import CheckBucket, SystemBucket
from monitor.store import Store
from tests import test_store_contract as contract
from tests.test_store_contract import StoreFactory

make_store = contract.make_store  # the contract's fixtures: one SQLite file, one PG schema
store = contract.store


def bucket(check: str, start: float, worst: int = 0, n: int = 1, lat: float = 0.1,
           system: str = "his") -> CheckBucket:
    return CheckBucket(check, system, start, worst, n, lat, lat * n, lat)


async def test_check_buckets_merge_on_the_same_check_and_start(store: Store) -> None:
    await store.save_check_buckets([bucket("web", 300.0, 0, 2, 0.2), bucket("db", 300.0)])
    await store.save_check_buckets([bucket("web", 300.0, 2, 1, 0.05),
                                    CheckBucket("web", "his", 300.0, 0, 1, 0.9, 0.9, 0.9)])
    rows = {(r.check_id, r.start): r for r in await store.load_check_buckets(0.0)}
    web = rows[("web", 300.0)]
    assert (web.worst, web.n, web.lat_min, web.lat_max) == (2, 4, 0.05, 0.9)
    assert abs(web.lat_sum - (0.4 + 0.05 + 0.9)) < 1e-9
    assert rows[("db", 300.0)].n == 1


async def test_seconds_in_state_add_up_and_system_worst_gives_each_systems_shares(
        store: Store) -> None:
    """Two writers of one bucket add their seconds; `system_worst` reduces in SQL the way
    `check_shares` does in Python; a row without seconds (older store) counts whole."""
    await store.save_check_buckets([
        CheckBucket("web", "his", 300.0, 2, 10, 0.1, 1.0, 0.1, 20.0, 30.0, 100.0),
        CheckBucket("api", "his", 300.0, 1, 10, 0.1, 1.0, 0.1, 0.0, 50.0, 250.0),
        CheckBucket("pacs-web", "pacs", 300.0, 2, 1, 0.1, 0.1, 0.1)])
    await store.save_check_buckets([
        CheckBucket("web", "his", 300.0, 0, 10, 0.1, 1.0, 0.1, 10.0, 10.0, 100.0)])
    (web,) = [r for r in await store.load_check_buckets(0.0) if r.check_id == "web"]
    assert (web.n, web.down_s, web.bad_s, web.seen_s) == (20, 30.0, 40.0, 200.0)
    found = {r[0]: r for r in await store.system_worst(0.0, 600.0)}
    his = found["his"]
    assert his[:3] == ("his", 300.0, 2)
    assert abs(his[3] - 30 / 200) < 1e-9 and abs(his[4] - 0.2) < 1e-9  # api: 50 of 250
    assert found["pacs"][2:] == (2, 1.0, 1.0), "unmeasured: the whole bucket, as before"
    expected = {c: CheckBucket(c, "his", 300.0, w, 1, 0, 0, 0, d, b, n).shares()
                for c, w, d, b, n in (("web", 2, 30.0, 40.0, 200.0),
                                      ("api", 1, 0.0, 50.0, 250.0))}
    assert abs(his[3] - max(e[0] for e in expected.values())) < 1e-9
    assert abs(his[4] - max(e[1] for e in expected.values())) < 1e-9


async def test_check_buckets_filter_by_range_and_system_ordered_by_start(store: Store) -> None:
    await store.save_check_buckets([bucket("b", 900.0), bucket("a", 300.0),
                                    bucket("x", 600.0, system="pacs"), bucket("a", 600.0)])
    ranged = await store.load_check_buckets(300.0, 900.0)
    assert [r.start for r in ranged] == [300.0, 600.0, 600.0]
    assert {(r.check_id, r.start) for r in ranged} == {("a", 300.0), ("x", 600.0), ("a", 600.0)}
    his = await store.load_check_buckets(0.0, system="his")
    assert [r.start for r in his] == [300.0, 600.0, 900.0]
    assert all(r.system == "his" for r in his)


async def test_rollup_adds_rows_and_moves_the_marker_once(store: Store) -> None:
    assert await store.history_marker() is None
    rows = [SystemBucket("his", "slot", 0.0, 2, ok_s=300.0, down_s=300.0),
            SystemBucket("his", "day", 0.0, 1, degraded_s=600.0)]
    assert await store.rollup_history(None, 600.0, rows)
    assert await store.history_marker() == 600.0
    # A second leader with the old marker adds nothing.
    assert not await store.rollup_history(None, 600.0, rows)
    more = [SystemBucket("his", "slot", 0.0, 3, maint_s=300.0)]
    assert await store.rollup_history(600.0, 900.0, more)
    slot = await store.load_system_buckets("slot", 0.0, system="his")
    assert len(slot) == 1
    assert (slot[0].worst, slot[0].ok_s, slot[0].down_s, slot[0].maint_s) == (3, 300, 300, 300)
    day = await store.load_system_buckets("day", 0.0)
    assert (day[0].worst, day[0].degraded_s) == (1, 600.0)
    assert await store.load_system_buckets("hour", 0.0) == []


async def test_concurrent_rollups_from_one_marker_count_once(make_store: StoreFactory) -> None:
    first, second = make_store(), make_store()
    await first.open()
    await second.open()
    row = [SystemBucket("his", "hour", 0.0, 0, ok_s=300.0)]
    done = await asyncio.gather(*(s.rollup_history(None, 300.0, row)
                                  for s in (first, second, first, second)))
    assert sorted(done) == [False, False, False, True]
    hour = await first.load_system_buckets("hour", 0.0)
    assert hour[0].ok_s == 300.0


async def test_sum_system_buckets_per_system(store: Store) -> None:
    await store.rollup_history(None, 1.0, [
        SystemBucket("his", "hour", 0.0, 0, ok_s=3600.0),
        SystemBucket("his", "hour", 3600.0, 2, ok_s=1800.0, down_s=1800.0),
        SystemBucket("pacs", "hour", 3600.0, 1, degraded_s=3600.0),
        SystemBucket("his", "hour", 7200.0, 0, ok_s=3600.0)])
    sums = await store.sum_system_buckets("hour", 0.0, 7200.0)
    assert set(sums) == {"his", "pacs"}
    assert (sums["his"].worst, sums["his"].ok_s, sums["his"].down_s) == (2, 5400.0, 1800.0)
    assert sums["pacs"].degraded_s == 3600.0


async def test_prune_keeps_each_kind_for_its_retention(store: Store) -> None:
    await store.save_check_buckets([bucket("web", 100.0), bucket("web", 5000.0)])
    await store.rollup_history(None, 1.0, [
        SystemBucket("his", "slot", 100.0, 0, ok_s=1.0),
        SystemBucket("his", "hour", 100.0, 0, ok_s=1.0),
        SystemBucket("his", "day", 100.0, 0, ok_s=1.0)])
    deleted = await store.prune_history({"check": 1000.0, "slot": 1000.0, "hour": 50.0,
                                         "day": 50.0})
    assert deleted == 2
    assert [r.start for r in await store.load_check_buckets(0.0)] == [5000.0]
    assert await store.load_system_buckets("slot", 0.0) == []
    assert len(await store.load_system_buckets("hour", 0.0)) == 1
    assert len(await store.load_system_buckets("day", 0.0)) == 1


async def test_history_survives_a_restart(make_store: StoreFactory) -> None:
    first = make_store()
    await first.open()
    await first.save_check_buckets([bucket("web", 300.0, 2)])
    await first.rollup_history(None, 600.0, [SystemBucket("his", "day", 0.0, 2, down_s=300.0)])
    await first.close()
    again = make_store()
    await again.open()
    assert [r.worst for r in await again.load_check_buckets(0.0)] == [2]
    assert await again.history_marker() == 600.0
    assert (await again.load_system_buckets("day", 0.0))[0].down_s == 300.0


async def test_a_store_written_before_the_seconds_columns_opens_and_reads_as_before(
        tmp_path: Path) -> None:
    """An older SQLite state file: its history rows gain the seconds at 0 (read whole)."""
    import sqlite3

    from monitor.store.sqlite import SqliteStore

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE history_checks (check_id TEXT NOT NULL, start REAL NOT NULL, "
                   "system TEXT NOT NULL, worst INTEGER NOT NULL, n INTEGER NOT NULL, "
                   "lat_min REAL NOT NULL, lat_sum REAL NOT NULL, lat_max REAL NOT NULL, "
                   "PRIMARY KEY (system, start, check_id)) WITHOUT ROWID")
        db.execute("INSERT INTO history_checks VALUES ('web', 300.0, 'his', 2, 3, .1, .3, .1)")
    old = SqliteStore(f"sqlite:///{path}")
    await old.open()
    try:
        (web,) = await old.load_check_buckets(0.0)
        assert (web.worst, web.down_s, web.seen_s) == (2, 0.0, 0.0)
        assert await old.system_worst(0.0, 600.0) == [("his", 300.0, 2, 1.0, 1.0)]
        await old.save_check_buckets([CheckBucket("web", "his", 300.0, 2, 1, .1, .1, .1,
                                                  5.0, 5.0, 10.0)])
        (web,) = await old.load_check_buckets(0.0)
        assert (web.n, web.down_s, web.seen_s) == (4, 5.0, 10.0)
    finally:
        await old.close()
