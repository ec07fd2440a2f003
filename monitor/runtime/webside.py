"""The daemon as the web layer sees it: `monitor.web.interfaces.ReadView` and `Operations`.

The only place where the HTTP side meets the daemon's parts. It always asks the daemon for
its current engine and config (both are replaced on a leadership change or a reload), and
it is the one place that changes run-time silences for the web.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from monitor.cluster.view import cluster_view
from monitor.core.models import Incident, OutboxMessage, Silence, TimelineEntry
from monitor.core.types import Severity
from monitor.incidents.maintenance import Window
from monitor.probing.state import CheckState
from monitor.runtime import memtrim

if TYPE_CHECKING:
    from monitor.config.model import Config
    from monitor.core.result import Result
    from monitor.history.query import HistoryReader, SystemHistory
    from monitor.probing.pushed import AmAlert, Applied
    from monitor.runtime.daemon import Daemon
    from monitor.store.buffered import Unrecorded


class DaemonWeb:
    """Implements `WebSide` over a running `Daemon`."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    # ---- ReadView --------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self._daemon.config

    @property
    def states(self) -> Mapping[str, CheckState]:
        return self._daemon.states

    @property
    def leading(self) -> bool:
        return self._daemon.leading

    @property
    def leader(self) -> str | None:
        return self._daemon.leadership.holder

    def clock(self) -> float:
        return self._daemon.clock()

    def cluster(self) -> dict[str, Any]:
        d = self._daemon
        me = d.membership.me if d.membership is not None else d.selfwatch.instance
        return cluster_view(d.membership, d.leadership, len(d.scheduler.probing), me)

    def open_incidents(self) -> Sequence[Incident]:
        return list(self._daemon.engine.open.values())

    def windows(self, now: float) -> Sequence[Window]:
        return self._daemon.engine.windows(now)

    def recording(self) -> Unrecorded | None:
        return self._daemon.store.unrecorded()

    async def problems(self) -> list[str]:
        daemon = self._daemon
        problems = []
        if not daemon.ready:
            problems.append("starting")
        try:
            await asyncio.wait_for(daemon.store.ping(), 2.0)
        except Exception as exc:
            problems.append(f"store unreachable: {type(exc).__name__}")
        unrecorded = daemon.store.unrecorded()
        if daemon.store_error:
            problems.append(f"store: {daemon.store_error}")
        elif unrecorded is not None:  # before housekeeping has seen it
            problems.append(f"store: cannot record: {unrecorded.error}")
        if daemon.store_identity_error:
            problems.append(f"store replaced: {daemon.store_identity_error}")
        if daemon.leading:
            problems += daemon.engine.problems()
        return problems

    async def metrics(self) -> list[bytes]:
        self._daemon.refresh_source()
        body = await self._daemon.metrics.exposition_parts()
        memtrim.trim()  # at most every 5 s: a scrape's temporaries must not stay in RSS
        return body

    async def get_incident(self, incident_id: str) -> Incident | None:
        return await self._daemon.store.get_incident(incident_id)

    async def list_incidents(self, status: str | None = None, since: float | None = None,
                             limit: int = 500, system: str | None = None) -> list[Incident]:
        return await self._daemon.store.list_incidents(status=status, since=since, limit=limit,
                                                       system=system)

    async def timeline(self, incident_id: str) -> list[TimelineEntry]:
        return await self._daemon.store.timeline(incident_id)

    async def list_messages(self, status: str | None = None, incident_id: str | None = None,
                            limit: int = 500) -> list[OutboxMessage]:
        return await self._daemon.store.list_messages(status=status, incident_id=incident_id,
                                                      limit=limit)

    async def system_history(self, system_id: str, now: float, days: int) -> SystemHistory:
        return await self._daemon.history_reader.system(system_id, now, days)

    @property
    def history_reader(self) -> HistoryReader:
        return self._daemon.history_reader

    @property
    def link_key(self) -> bytes | None:
        return self._daemon.link_key

    # ---- Operations ------------------------------------------------------------------

    async def push_result(self, check_id: str, result: Result) -> float | None:
        return await self._daemon.push_result(check_id, result)

    async def apply_alerts(self, alerts: list[AmAlert]) -> Applied:
        return await self._daemon.apply_alerts(alerts)

    async def link_action(self, action: dict[str, Any]) -> Incident | None:
        daemon = self._daemon
        if daemon.leading:
            return await daemon.engine.link_action(action)
        await daemon.store.add_link_action(action, daemon.clock())
        return None

    async def acknowledge(self, incident_id: str, by: str, note: str | None) -> Incident | None:
        return await self._daemon.engine.acknowledge(incident_id, by, note)

    async def add_note(self, incident_id: str, by: str, text: str) -> Incident | None:
        return await self._daemon.engine.add_note(incident_id, by, text)

    async def add_silence(self, silence: Silence) -> Silence:
        await self._daemon.store.save_silence(silence)
        self._daemon.engine.add_silence(silence)
        return silence

    async def remove_silence(self, silence_id: str) -> bool:
        if not await self._daemon.store.delete_silence(silence_id):
            return False
        self._daemon.engine.remove_silence(silence_id)
        return True

    async def record_heartbeat(self, check_id: str) -> float:
        now = self._daemon.clock()
        self._daemon.ctx.heartbeats[check_id] = now
        await self._daemon.store.save_heartbeat(check_id, now)
        return now

    async def declare(self, system_id: str, severity: Severity, title: str, by: str,
                      started_at: float | None) -> Incident:
        return await self._daemon.engine.declare(system_id, severity, title, by, started_at)

    async def resolve(self, incident_id: str, by: str, note: str | None) -> Incident:
        return await self._daemon.engine.resolve_by_hand(incident_id, by, note)

    async def patch(self, incident_id: str, by: str, changes: dict[str, Any]) -> Incident:
        return await self._daemon.engine.patch(incident_id, by, changes)

    async def confirm_department(self, incident_id: str, department: str, what: str,
                                 by: str | None) -> Incident:
        return await self._daemon.engine.confirm_department(incident_id, department, what, by,
                                                            via="api")

    async def vendor_response(self, incident_id: str, by: str | None,
                              eta: str | None) -> Incident:
        return await self._daemon.engine.vendor_response(incident_id, by, eta, via="api")
