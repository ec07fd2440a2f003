"""The real daemon with a state store that refuses writes (issue 11 item 4).

Real faults, no mock (tests/store_faults.py): the state file made immutable with
`chattr +i` (SQLite: "disk I/O error", as on a read-only file system; `chmod` would not stop
root), and a real full disk (a tiny tmpfs filled up: "database or disk is full"). Outages
must still page IT, show on the API and the page with "cannot record", reach the store with
their real times when it is back, and nothing may be sent twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import HttpTarget, Receiver, free_port
from tests.store_faults import can_make_immutable, fill, set_read_only, tiny_disk
from tests.test_e2e import config

pytestmark = pytest.mark.slow


def stored(db: Path) -> tuple[list[dict[str, Any]], list[tuple[str, str, str]]]:
    """(incident records, (notifier, kind, status) of messages) as they are on disk."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        incidents = [json.loads(r[0]) for r in conn.execute("SELECT record FROM incidents")]
        messages = conn.execute("SELECT notifier, kind, status FROM outbox ORDER BY id").fetchall()
    finally:
        conn.close()
    return incidents, messages


async def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await predicate()
        if found:
            return found
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_read_only_state_file_still_pages_shows_and_records_afterwards(
        http_target: HttpTarget, receiver: Receiver, daemon_factory: Any,
        tmp_path: Path) -> None:
    if not can_make_immutable(tmp_path):
        pytest.skip("chattr +i not available (needs root on ext4)")
    port = free_port()
    text = config(http_target, receiver, port, dept_after="1h", leader_after="2h") \
        + "self_alerts: [it]\n"
    daemon = await daemon_factory(text, port)
    db = daemon.config_path.parent / "state.db"
    set_read_only(db, True)
    try:
        async with httpx.AsyncClient(base_url=daemon.url, trust_env=False) as api:
            http_target.status = 503
            await receiver.wait_for(lambda: "outage_it" in receiver.kinds("it"), timeout=30)

            async def shown() -> Any:
                body = (await api.get("/api/v1/incidents", timeout=5)).json()
                return body if body["incidents"] and "recording" in body else None

            body = await wait_until(shown, 15, "the incident on the API")
            [incident] = body["incidents"]
            assert incident["system"] == "his" and incident["status"] == "open"
            assert body["recording"]["ok"] is False and body["recording"]["waiting"] > 0
            assert incident["recorded"] is False
            assert body["recording"]["incidents"] == [incident["id"]]
            started = dt.datetime.fromisoformat(incident["started_at"]).timestamp()
            page = (await api.get("/", timeout=5)).text
            assert "cannot record" in page and incident["id"] in page
            ready = await api.get("/readyz", timeout=5)
            assert ready.status_code == 503
            assert any("cannot record" in p for p in ready.json()["problems"])
            assert stored(db)[0] == [], "nothing reached the file yet"
            # IT is told hismon cannot record (SPEC 9 self_alerts), directly.
            await receiver.wait_for(lambda: "monitor_degraded" in receiver.kinds("it"),
                                    timeout=60)
            degraded = next(m for m in receiver.messages if m["kind"] == "monitor_degraded")
            assert "cannot record" in degraded["text"]
            back_at = time.time()
        set_read_only(db, False)

        async def recorded() -> Any:
            incidents, messages = stored(db)
            return (incidents, messages) if incidents and ("it", "outage_it", "sent") \
                in messages else None

        incidents, _ = await wait_until(recorded, 20, "the record on disk")
        [record] = incidents
        assert record["id"] == incident["id"]
        assert abs(record["started_at"] - started) < 1.0, "its real start, not the write time"
        assert record["started_at"] < back_at - 25
        await receiver.wait_for(lambda: "monitor_ok" in receiver.kinds("it"), timeout=30)
        async with httpx.AsyncClient(base_url=daemon.url, trust_env=False) as api:
            await wait_until(lambda: _no_recording(api), 15, "the API to drop `recording`")
            [after] = (await api.get("/api/v1/incidents", timeout=5)).json()["incidents"]
            assert "recorded" not in after
            assert "cannot record" not in (await api.get("/", timeout=5)).text
        http_target.status = 200
        await receiver.wait_for(lambda: "recovery" in receiver.kinds("it"), timeout=30)
        assert receiver.kinds("it").count("outage_it") == 1, "nothing sent twice"
    finally:
        set_read_only(db, False)
    assert daemon.terminate() == 0


async def _no_recording(api: httpx.AsyncClient) -> bool:
    return "recording" not in (await api.get("/api/v1/incidents", timeout=5)).json()


async def test_an_outage_that_ends_on_a_full_disk_is_notified_and_recorded_afterwards(
        http_target: HttpTarget, receiver: Receiver, daemon_factory: Any,
        tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "disk", "4m") as disk:
        port = free_port()
        text = config(http_target, receiver, port, dept_after="1h", leader_after="2h") \
            .replace("sqlite:///./state.db", f"sqlite:///{disk}/state.db")
        daemon = await daemon_factory(text, port)
        db = disk / "state.db"
        filler = fill(disk)
        try:
            async with httpx.AsyncClient(base_url=daemon.url, trust_env=False) as api:
                http_target.status = 503
                await receiver.wait_for(lambda: "outage_it" in receiver.kinds("it"),
                                        timeout=30)
                body = (await api.get("/api/v1/incidents", timeout=5)).json()
                assert "recording" in body, "the full disk refused the incident"
                [incident] = body["incidents"]
                http_target.status = 200
                await receiver.wait_for(lambda: "recovery" in receiver.kinds("it"),
                                        timeout=30)
                assert stored(db)[0] == [], "the whole outage happened in memory"
            filler.unlink()  # the disk has room again

            async def recorded() -> Any:
                incidents, messages = stored(db)
                kinds = {(n, k) for n, k, s in messages if s == "sent"}
                done = incidents and incidents[0]["status"] == "resolved" \
                    and {("it", "outage_it"), ("it", "recovery")} <= kinds
                return (incidents, messages) if done else None

            incidents, _ = await wait_until(recorded, 30, "the resolved outage on disk")
            [record] = incidents
            assert record["id"] == incident["id"]
            assert record["resolved_at"] > record["started_at"]
            assert abs(record["started_at"] - dt.datetime.fromisoformat(
                incident["started_at"]).timestamp()) < 1.0
            assert receiver.kinds("it").count("outage_it") == 1
            assert receiver.kinds("it").count("recovery") == 1
        finally:
            if filler.exists():
                filler.unlink()
            assert daemon.terminate() == 0
