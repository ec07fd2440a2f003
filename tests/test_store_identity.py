"""A state database deleted or replaced is noticed, and never reuses ids or keys (issue 11
item 6). Real SQLite files and the real PostgreSQL; the daemon as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.store import Store, open_store
from tests.conftest import HttpTarget, Receiver, free_port
from tests.test_store_contract import (  # noqa: F401 (make_store is a fixture)
    StoreFactory,
    drop_schema,
    make_store,
    new_schema_name,
    require_pg,
    with_params,
)


async def _sql(store: Store, statement: str) -> None:
    """Run `statement` on the store's database behind hismon's back, as an operator might."""
    if store.__class__.__name__ == "SqliteStore":
        with sqlite3.connect(store.path) as db:  # type: ignore[attr-defined]
            db.execute(statement)
        return
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(
            store._conninfo, autocommit=True) as conn:  # type: ignore[attr-defined]
        await conn.execute(sql.SQL("SET search_path TO {}").format(
            sql.Identifier(store.schema)))  # type: ignore[attr-defined]
        await conn.execute(statement)  # type: ignore[arg-type]


async def test_a_store_has_one_identity_made_at_creation(
    make_store: StoreFactory,  # noqa: F811
) -> None:
    first = make_store()
    await first.open()
    assert first.created and first.store_id and len(first.tag) == 4
    assert await first.identity_problem() is None
    again = make_store()
    await again.open()
    assert not again.created and again.store_id == first.store_id, "kept, never re-made"


async def test_a_deleted_identity_row_is_noticed(make_store: StoreFactory) -> None:  # noqa: F811
    store = make_store()
    await store.open()
    table = "meta" if make_store.backend == "sqlite" else "settings"  # type: ignore[attr-defined]
    await _sql(store, f"DELETE FROM {table} WHERE key = 'store_id'")
    problem = await store.identity_problem()
    assert problem is not None and "identity row" in problem and "store_id" in problem
    # re-opened, it is a new store: a new identity, and all is well again
    old = store.store_id
    await store.close()
    await store.open()
    assert store.created and store.store_id != old
    assert await store.identity_problem() is None


async def test_a_deleted_or_replaced_sqlite_file_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = open_store(f"sqlite:///{path}")
    await store.open()
    try:
        for name in (str(path), f"{path}-wal", f"{path}-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(name)
        problem = await store.identity_problem()
        assert problem is not None and "deleted" in problem and str(path) in problem
        other = open_store(f"sqlite:///{path}")  # someone puts another database there
        await other.open()
        await other.close()
        problem = await store.identity_problem()
        assert problem is not None and "replaced" in problem
    finally:
        await store.close()


async def test_a_dropped_postgres_schema_is_noticed() -> None:
    schema = new_schema_name()
    url = with_params(require_pg(), schema=schema)
    store = open_store(url)
    await store.open()
    try:
        await drop_schema(schema)
        problem = await store.identity_problem()
        assert problem is not None and "tables are gone" in problem and schema in problem
        await store.close()
        await store.open()  # re-created, a new identity
        assert store.created and await store.identity_problem() is None
    finally:
        await store.close()
        await drop_schema(schema)


# ---- the real daemon -----------------------------------------------------------------------

def _config(port: int, target: HttpTarget, receiver: Receiver) -> str:
    return f"""
site: {{name: Test Hospital, timezone: Asia/Shanghai, language: en}}
server: {{listen: "127.0.0.1:{port}"}}
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 1s, timeout: 500ms, retry_interval: 250ms, confirm: 2, recover: 2}}
roles: {{it_oncall: [it]}}
self_alerts: [self]
systems: [{{id: his, name: HIS, plan: p}}]
checks: [{{id: his-web, system: his, type: http, url: "{target.url}"}}]
notifiers:
  - {{id: it, type: webhook, url: "{receiver.url('it')}"}}
  - {{id: self, type: webhook, url: "{receiver.url('self')}"}}
plans:
  - id: p
    steps: [{{after: 0s, notify: [role:it_oncall], message: outage_it}}]
    on_recovery: [role:it_oncall]
"""


def _outages(receiver: Receiver) -> list[dict[str, Any]]:
    return [m for m in receiver.messages if m["kind"] == "outage_it"]


@pytest.mark.slow
async def test_a_deleted_database_is_noticed_and_never_reuses_ids_or_keys(
    http_target: HttpTarget, receiver: Receiver, daemon_factory: Any, tmp_path: Path
) -> None:
    """An incident is open; the state file is deleted under the running daemon: /readyz
    names it, IT hears it, the daemon carries on in a new store under a new incident id
    (same outage start); after a restart (yet another new store) again new ids and keys."""
    port = free_port()
    http_target.status = 503
    daemon = await daemon_factory(_config(port, http_target, receiver), port)
    await receiver.wait_for(lambda: len(_outages(receiver)) == 1, 30)
    first = _outages(receiver)[0]
    assert re.fullmatch(r"inc-1-[0-9a-f]{4}", first["incident"]["id"]), first["incident"]["id"]
    db = tmp_path / "state.db"
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.unlink(missing_ok=True)
    async with httpx.AsyncClient(trust_env=False, timeout=5) as api:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ready = await api.get(f"{daemon.url}/readyz")
            if ready.status_code == 503:
                break
            await asyncio.sleep(0.2)
        assert ready.status_code == 503, ready.text
        problems = " ".join(ready.json()["problems"])
        assert "deleted" in problems and "state.db" in problems, problems
        await receiver.wait_for(lambda: "monitor_degraded" in receiver.kinds("self"), 30)
        alert = next(m for m in receiver.messages if m["kind"] == "monitor_degraded")
        assert "deleted" in alert["text"] and first["incident"]["id"] in alert["text"]
        # carried on in a new store: the outage again, under a new id, same start
        await receiver.wait_for(lambda: len(_outages(receiver)) == 2, 30)
        second = _outages(receiver)[1]
        assert second["incident"]["id"] != first["incident"]["id"]
        assert second["incident"]["started_at"] == first["incident"]["started_at"]
        assert second["idempotency_key"] != first["idempotency_key"]
        assert db.exists(), "the new store is a file again, where the old one was"
        assert (await api.get(f"{daemon.url}/readyz")).status_code == 503, \
            "stays not ready until an operator reloads or restarts"
    assert "store_replaced" in daemon.log() and "store_adopted" in daemon.log()
    assert daemon.terminate() == 0
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.unlink(missing_ok=True)
    daemon = await daemon_factory(_config(port, http_target, receiver), port)
    await receiver.wait_for(lambda: len(_outages(receiver)) == 3, 30)
    third = _outages(receiver)[2]
    ids = [m["incident"]["id"] for m in _outages(receiver)]
    keys = [m["idempotency_key"] for m in _outages(receiver)]
    assert len(set(ids)) == 3 and len(set(keys)) == 3, (ids, keys)
    assert third["incident"]["id"].startswith("inc-1-"), "a new store counts from 1, tagged"
    assert "store_created" in daemon.log()
    async with httpx.AsyncClient(trust_env=False, timeout=5) as api:
        assert (await api.get(f"{daemon.url}/readyz")).status_code == 200


@pytest.mark.slow
async def test_a_dropped_postgres_schema_under_the_daemon_is_noticed_and_adopted(
    http_target: HttpTarget, receiver: Receiver, daemon_factory: Any
) -> None:
    """The shared store's schema is dropped while an incident is open: /readyz names it, IT
    hears it, and the daemon carries on in the re-created schema under new ids and keys."""
    schema = new_schema_name()
    url = with_params(require_pg(), schema=schema)
    port = free_port()
    text = _config(port, http_target, receiver).replace('"sqlite:///./state.db"', f'"{url}"')
    http_target.status = 503
    try:
        daemon = await daemon_factory(text, port)
        await receiver.wait_for(lambda: len(_outages(receiver)) == 1, 30)
        first = _outages(receiver)[0]
        await drop_schema(schema)
        async with httpx.AsyncClient(trust_env=False, timeout=5) as api:
            deadline = time.monotonic() + 30
            problems = ""
            while time.monotonic() < deadline:
                ready = await api.get(f"{daemon.url}/readyz")
                problems = " ".join(ready.json().get("problems", []))
                if "tables are gone" in problems:
                    break
                await asyncio.sleep(0.2)
            assert "tables are gone" in problems and schema in problems, problems
        await receiver.wait_for(lambda: "monitor_degraded" in receiver.kinds("self"), 30)
        await receiver.wait_for(lambda: len(_outages(receiver)) == 2, 40)
        second = _outages(receiver)[1]
        assert second["incident"]["id"] != first["incident"]["id"]
        assert second["idempotency_key"] != first["idempotency_key"]
        assert second["incident"]["started_at"] == first["incident"]["started_at"]
    finally:
        await drop_schema(schema)
