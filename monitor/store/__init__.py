"""Persistent state behind one interface; `open_store(url)` picks the backend from the URL."""

from __future__ import annotations

from monitor.store.base import Store


def open_store(url: str) -> Store:
    if url.startswith("sqlite://"):
        from monitor.store.sqlite import SqliteStore

        return SqliteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from monitor.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unsupported state.url {url.split('://')[0]}://")


__all__ = ["Store", "open_store"]
