"""History (SPEC §7): per-probe aggregation, roll-up, the reader and the history endpoint.

Time is a fake clock; the store is a real SQLite file; the API runs in-process on the real
Daemon's app (no network needed: httpx's ASGI transport).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.config.loader import load_config_text
from monitor.core.result import State
from monitor.history.model import DEGRADED, DOWN, MAINTENANCE, OK, CheckBucket
from monitor.history.query import HistoryReader, history_document, slot_starts
from monitor.history.recorder import HistoryRecorder, code_of
from monitor.history.rollup import maintenance_seconds, system_rows
from monitor.history.service import HistoryService
from monitor.incidents.maintenance import Window
from monitor.probing.state import CheckState
from monitor.runtime.daemon import Daemon
from monitor.runtime.webside import DaemonWeb
from monitor.store import Store
from monitor.web.app import build_app

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
# 2026-12-01 10:07:30 in Shanghai: mid-slot (10:00-10:30), mid-bucket (10:05-10:10).
NOW = dt.datetime(2026, 12, 1, 10, 7, 30, tzinfo=SHANGHAI).timestamp()


def state(check: str, hard: State = State.OK, system: str = "his",
          flapping: bool = False) -> CheckState:
    cs = CheckState(check, system, "http")
    cs.hard_state, cs.flapping = hard, flapping
    return cs


# ---- the recorder --------------------------------------------------------------------------


def test_codes_follow_the_spec_down_is_hard_crit_degraded_is_warn_or_unstable() -> None:
    assert code_of(state("a")) == OK
    assert code_of(state("a", State.CRIT)) == DOWN
    assert code_of(state("a", State.WARN)) == DEGRADED
    assert code_of(state("a", State.UNKNOWN)) == DEGRADED
    assert code_of(state("a", flapping=True)) == DEGRADED
    unstable = state("a")
    unstable.unstable = True  # SPEC §4: fails often, never hard: degraded, not OK
    assert code_of(unstable) == DEGRADED
    rec = HistoryRecorder()
    rec.observe(unstable, 0.1, NOW)
    assert rec.unsaved()[0].worst == DEGRADED
    soft = state("a")
    soft.state, soft.hard = State.CRIT, False  # one failed probe, not confirmed: still OK
    assert code_of(soft) == OK


def test_recorder_keeps_worst_and_latency_per_bucket_and_hands_over_finished_ones() -> None:
    rec = HistoryRecorder()
    start = NOW - NOW % 300
    rec.observe(state("web"), 0.2, start + 1)
    rec.observe(state("web", State.CRIT), 0.05, start + 2)
    rec.observe(state("web"), 0.8, start + 3)
    rec.observe(state("db", system="his-db"), 0.01, start + 4)
    assert rec.take_finished(start + 299) == []  # the bucket is still going
    (web,) = rec.unsaved("his")
    assert (web.worst, web.n, web.lat_min, web.lat_max) == (DOWN, 3, 0.05, 0.8)
    assert abs(web.lat_avg - 0.35) < 1e-9
    rec.observe(state("web"), 0.1, start + 301)  # next bucket
    finished = rec.take_finished(start + 302)
    assert {(b.check_id, b.start) for b in finished} == {("web", start), ("db", start)}
    assert [(b.start, b.worst) for b in rec.unsaved()] == [(start + 300, OK)]
    # A failed write gives the rows back; they merge and come out again.
    rec.give_back(finished)
    assert len(rec.take_finished(start + 900)) == 3


def test_seconds_in_each_state_are_measured_between_probes() -> None:
    """A 30-second outage inside a bucket is 30 s down, not the bucket's 300."""
    rec = HistoryRecorder()
    start = NOW - NOW % 300
    for i in range(30):  # a probe every 10 s: down from 100 s to 130 s, degraded 200-220 s
        at = start + i * 10
        hard = State.CRIT if 100 <= i * 10 < 130 else State.WARN if 200 <= i * 10 < 220 \
            else State.OK
        rec.observe(state("web", hard), 0.1, at)
    (web,) = rec.unsaved("his")
    assert (web.worst, web.down_s, web.bad_s, web.seen_s) == (DOWN, 30.0, 50.0, 290.0)
    assert web.shares() == (30 / 290, 50 / 290)
    (row,) = [r for r in system_rows([web], [], SHANGHAI) if r.resolution == "slot"]
    assert (round(row.down_s, 6), round(row.degraded_s, 6)) == (
        round(300 * 30 / 290, 6), round(300 * 20 / 290, 6))
    assert row.worst == DOWN, "the cell still shows the worst state"
    # The next bucket's first probe counts the part of the time since this bucket's last
    # probe that lies in its own bucket, in the state that last probe found.
    rec.observe(state("web", State.CRIT), 0.1, start + 305)
    rec.observe(state("web", State.CRIT), 0.1, start + 315)
    nxt = next(b for b in rec.unsaved("his") if b.start == start + 300)
    assert (nxt.down_s, nxt.seen_s) == (10.0, 15.0), "300-305 OK (as at 290), then down"
    # A gap longer than a bucket (hismon was stopped) is not measured.
    rec.observe(state("web"), 0.1, start + 1300)
    late = next(b for b in rec.unsaved("his") if b.start == start + 1200)
    assert late.seen_s == 0.0 and late.shares() == (0.0, 0.0)


def test_an_unmeasured_bucket_counts_whole_as_before() -> None:
    """A single probe (no earlier one within a bucket) or a row from an older store."""
    start = NOW - NOW % 300
    old = CheckBucket("web", "his", start, DOWN, 1, 0.1, 0.1, 0.1)
    assert old.shares() == (1.0, 1.0)
    assert CheckBucket("web", "his", start, DEGRADED, 1, 0.1, 0.1, 0.1).shares() == (0.0, 1.0)
    # Two checks: the system is down as long as the longest down one (their outages overlap).
    rows = system_rows([CheckBucket("web", "his", start, DOWN, 30, 1, 1, 1, 60.0, 60.0, 300.0),
                        CheckBucket("api", "his", start, DOWN, 30, 1, 1, 1, 30.0, 90.0, 300.0)],
                       [], SHANGHAI)
    (slot,) = [r for r in rows if r.resolution == "slot"]
    assert [round(x, 6) for x in (slot.down_s, slot.degraded_s, slot.ok_s)] == [60, 30, 210]


# ---- roll-up -------------------------------------------------------------------------------


def test_maintenance_wins_over_down_and_its_seconds_are_kept_apart() -> None:
    start = NOW - NOW % 300
    window = Window("w", ("his",), start + 100, start + 200, "patch")
    assert maintenance_seconds([window, window], "his", start, start + 300) == 100
    rows = system_rows([CheckBucket("web", "his", start, DOWN, 1, 1, 1, 1),
                        CheckBucket("api", "his", start, OK, 1, 1, 1, 1)], [window], SHANGHAI)
    by = {r.resolution: r for r in rows}
    assert set(by) == {"slot", "hour", "day"}
    assert by["slot"].worst == MAINTENANCE
    assert (by["slot"].down_s, by["slot"].maint_s, by["slot"].ok_s) == (200, 100, 0)
    # local slot, hour and day in the site's zone
    assert dt.datetime.fromtimestamp(by["slot"].start, SHANGHAI).strftime("%H:%M") == "10:00"
    assert dt.datetime.fromtimestamp(by["day"].start, SHANGHAI).strftime("%d %H:%M") == \
        "01 00:00"


def test_a_system_in_maintenance_without_data_still_shows_maintenance() -> None:
    start = NOW - NOW % 300
    window = Window("w", ("lis",), start, start + 300, "move")
    rows = system_rows([], [window], SHANGHAI, [("lis", start)])
    assert [(r.resolution, r.worst, r.maint_s) for r in rows[:1]] == [ ("slot", MAINTENANCE, 300)]
    assert system_rows([], [], SHANGHAI, [("lis", start)]) == []  # no data, no window


# ---- writer and reader over a real store ---------------------------------------------------


async def test_finished_buckets_are_written_in_batches_and_a_failed_batch_is_kept(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush writes `BATCH` rows a transaction; when one batch fails (here the real store
    refuses a row without a system), the batches written stay written (once: rows merge in
    the store) and that batch and the later ones come back for the next attempt."""
    from monitor.history import service as service_module

    monkeypatch.setattr(service_module, "BATCH", 2)
    start = NOW - NOW % 300
    good = HistoryRecorder()
    for i in range(5):
        good.observe(state(f"c{i}"), 0.1, start + 10)
        good.observe(state(f"c{i}"), 0.2, start + 40)
    service = HistoryService(store, good, lambda: SHANGHAI, lambda now: [])
    assert await service.flush(start + 301) == 5
    rows = await store.load_check_buckets(0.0)
    assert sorted((r.check_id, r.n) for r in rows) == [(f"c{i}", 2) for i in range(5)]

    bad = HistoryRecorder()
    for i in range(5):
        bad.observe(state(f"d{i}", system=None if i == 3 else "his"),  # type: ignore[arg-type]
                    0.1, start + 10)
    service = HistoryService(store, bad, lambda: SHANGHAI, lambda now: [])
    with pytest.raises(Exception, match="NOT NULL"):
        await service.flush(start + 301)
    written = {r.check_id for r in await store.load_check_buckets(0.0)}
    assert {"d0", "d1"} <= written and not {"d2", "d3", "d4"} & written
    assert sorted(r.check_id for r in bad.take_finished(start + 302)) == ["d2", "d3", "d4"]


async def test_a_real_outage_shows_as_down_in_its_slot_and_its_day(store: Store) -> None:
    """Three hours of 30 s probes: OK, 20 minutes down, OK; written once per bucket."""
    rec = HistoryRecorder()
    windows: list[Window] = []
    service = HistoryService(store, rec, lambda: SHANGHAI, lambda now: windows)
    reader = HistoryReader(store, rec, lambda: SHANGHAI, lambda now: windows)
    begin = NOW - 3 * 3600
    outage = (NOW - 2 * 3600, NOW - 2 * 3600 + 1200)
    writes = 0
    t = begin
    while t <= NOW:
        down = outage[0] <= t < outage[1]
        rec.observe(state("web", State.CRIT if down else State.OK), 0.5 if down else 0.1, t)
        rec.observe(state("db", system="his"), 0.01, t)
        before = len(await store.load_check_buckets(0.0))
        await service.tick(t, leading=True)
        writes += len(await store.load_check_buckets(0.0)) > before
        t += 30
    assert writes == 36  # one write per finished bucket, not per probe
    history = await reader.system("his", NOW, 3)
    assert len(history.slots) == 48
    starts = [dt.datetime.fromtimestamp(s, SHANGHAI) for s, _ in history.slots]
    assert all(s.minute in (0, 30) and s.second == 0 for s in starts)
    assert starts[-1] <= dt.datetime.fromtimestamp(NOW, SHANGHAI) < starts[-1] + \
        dt.timedelta(minutes=30)
    codes = {dt.datetime.fromtimestamp(s, SHANGHAI).strftime("%H:%M"): c
             for s, c in history.slots}
    assert codes["08:00"] == DOWN  # 08:07:30-08:27:30 down
    assert codes["07:30"] == OK and codes["09:00"] == OK and codes["10:00"] == OK
    assert codes["06:30"] is None  # before the first probe: no data
    assert [d.worst for d in history.days] == [None, None, DOWN]
    avail = history.days[-1].availability
    # 20 minutes of 3 h down, measured between probes (whole 5-minute buckets gave 25).
    assert avail is not None and abs(avail - (1 - 1200 / 10800)) < 0.005, avail
    assert history.availability_24h == avail
    # The same after a restart: a fresh recorder and reader over the same store.
    await service.flush_all()
    again = await HistoryReader(store, HistoryRecorder(), lambda: SHANGHAI,
                                lambda now: []).system("his", NOW, 3)
    assert again.slots == history.slots and again.days == history.days
    overview = await reader.overview(["his", "pacs"], NOW)
    assert overview["his"].slots == history.slots
    assert overview["his"].availability_30d == history.availability_30d
    assert overview["pacs"].availability_24h is None
    assert {c for _, c in overview["pacs"].slots} == {None}


async def test_maintenance_slot_is_left_out_of_availability(store: Store) -> None:
    rec = HistoryRecorder()
    start = slot_starts(NOW, SHANGHAI)[-2]
    windows = [Window("w", ("his",), start, start + 1800, "patch")]
    reader = HistoryReader(store, rec, lambda: SHANGHAI, lambda now: windows)
    for i in range(90):
        rec.observe(state("web", State.CRIT), 0.1, start + 20 * i)  # down all through it
    for i in range(10):
        rec.observe(state("web"), 0.1, start + 1800 + 30 * i)  # then fine
    history = await reader.system("his", NOW, 1)
    assert history.slots[-2][1] == MAINTENANCE
    assert history.availability_24h == 1.0  # only the OK minutes of the last slot count
    doc = history_document(history, SHANGHAI)
    assert doc["slots_24h"][-2]["worst"] == "maintenance"  # type: ignore[index]


# ---- the endpoint --------------------------------------------------------------------------

CONFIG = """
site: {name: H, timezone: Asia/Shanghai, language: en}
state: {url: "sqlite:///STATE"}
systems:
  - {id: his, name: HIS}
checks:
  - {id: his-web, system: his, type: tcp, host: 127.0.0.1, port: 9}
"""


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Daemon]]:
    config = load_config_text(CONFIG.replace("STATE", str(tmp_path / "s.db")), "h.yaml")
    daemon = Daemon(config, clock=lambda: NOW, serve_http=False)
    await daemon.store.open()
    transport = httpx.ASGITransport(app=build_app(DaemonWeb(daemon)))
    async with httpx.AsyncClient(transport=transport, base_url="http://h") as client:
        yield client, daemon
    await daemon.store.close()


async def test_history_endpoint_shape(api: tuple[httpx.AsyncClient, Daemon]) -> None:
    client, daemon = api
    daemon.history_recorder.observe(state("his-web", State.CRIT), 0.1, NOW - 60)
    answer = await client.get("/api/v1/systems/his/history", params={"days": 7})
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    assert body["system"] == "his"
    assert [d["date"] for d in body["days"]][-1] == "2026-12-01"
    assert len(body["days"]) == 7
    assert body["days"][-1]["worst"] == "down" and body["days"][-1]["availability"] == 0.0
    assert body["days"][0] == {"date": "2026-11-25", "availability": None, "worst": "no_data"}
    assert len(body["slots_24h"]) == 48
    assert body["slots_24h"][-1] == {"start": "2026-12-01T10:00:00+08:00", "worst": "down"}
    assert body["slots_24h"][0]["start"] == "2026-11-30T10:30:00+08:00"
    assert len((await client.get("/api/v1/systems/his/history")).json()["days"]) == 90


@pytest.mark.parametrize("days", ["0", "401", "-1", "x", "1.5"])
async def test_history_days_outside_1_to_400_is_422(
        api: tuple[httpx.AsyncClient, Daemon], days: str) -> None:
    client, _ = api
    answer = await client.get("/api/v1/systems/his/history", params={"days": days})
    assert answer.status_code == 422
    assert "1 to 400" in answer.json()["error"]


async def test_history_of_an_unknown_system_is_404(
        api: tuple[httpx.AsyncClient, Daemon]) -> None:
    client, _ = api
    assert (await client.get("/api/v1/systems/nope/history")).status_code == 404
    assert (await client.get("/api/v1/systems/his/history?days=400")).status_code == 200


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.5, 400.0), st.sampled_from([State.OK, State.WARN,
                                                                  State.CRIT])),
                min_size=1, max_size=80))
def test_measured_seconds_are_bounded_by_the_bucket_and_each_other(
        probes: list[tuple[float, State]]) -> None:
    """Whatever the probe times and states: 0 <= down <= bad <= seen <= bucket, the shares
    lie in [0, 1], and the whole measured time of all buckets is at most the time spanned."""
    rec = HistoryRecorder()
    at = NOW - NOW % 300
    first = at
    for gap, hard in probes:
        at += gap
        rec.observe(state("web", hard), 0.1, at)
    rows = rec.unsaved()
    for b in rows:
        assert 0 <= b.down_s <= b.bad_s <= b.seen_s <= 300 + 1e-9, b
        down, bad = b.shares()
        assert 0 <= down <= bad <= 1
        if b.worst == OK:
            assert (down, bad) == (0.0, 0.0), "a green bucket is never counted down"
    assert sum(b.seen_s for b in rows) <= at - first + 1e-6
