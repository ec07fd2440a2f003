"""A locked store does not stop probing; the problem shows; nothing is lost afterwards."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import httpx
import pytest

from tests.conftest import HttpTarget, Receiver, free_port
from tests.test_e2e import config

pytestmark = pytest.mark.slow


async def test_a_locked_store_stops_neither_probes_nor_the_outage_page(
    http_target: HttpTarget, receiver: Receiver, daemon_factory
) -> None:
    port = free_port()
    daemon = await daemon_factory(config(http_target, receiver, port), port)
    db = daemon.config_path.parent / "state.db"
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        conn = sqlite3.connect(db, timeout=5, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(30)
        conn.execute("COMMIT")
        conn.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert await asyncio.to_thread(locked.wait, 10)
        http_target.status = 503
        async with httpx.AsyncClient(base_url=daemon.url, trust_env=False) as api:
            deadline = time.monotonic() + 25
            not_ready = None
            while time.monotonic() < deadline:
                ready = await api.get("/readyz", timeout=5)
                if ready.status_code == 503:
                    not_ready = ready.json()
                    break
                await asyncio.sleep(0.5)
            assert not_ready is not None, "/readyz never reported the locked store"
            assert any("store" in p for p in not_ready["problems"])
            before = {c["id"]: c["last_run"] for c in
                      (await api.get("/api/v1/checks", timeout=5)).json()["checks"]}
            await asyncio.sleep(2.5)
            after = {c["id"]: c["last_run"] for c in
                     (await api.get("/api/v1/checks", timeout=5)).json()["checks"]}
            assert after["his-web"] != before["his-web"], "probing stopped with the store"
            assert "hismon_store_up 0.0" in (await api.get("/metrics", timeout=5)).text
            # The lock outlasts SQLite's busy timeout: the writes wait in memory and the
            # page goes out anyway (monitor/store/buffered.py), while the lock is held.
            await receiver.wait_for(lambda: "outage_it" in receiver.kinds("it"), timeout=25)
            assert locked.is_set() and not release.is_set()
    finally:
        release.set()
        await asyncio.to_thread(holder.join, 30)
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False) as api:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "recording" not in (await api.get("/api/v1/incidents", timeout=5)).json():
                break
            await asyncio.sleep(0.5)
    rows = sqlite3.connect(db).execute(
        "SELECT kind, status FROM outbox WHERE notifier = 'it'").fetchall()
    assert ("outage_it", "sent") in rows, rows
    assert receiver.kinds("it").count("outage_it") == 1, "sent once, recorded afterwards"
    assert daemon.terminate() == 0
