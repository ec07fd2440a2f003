"""The two narrow interfaces the web layer sees of the daemon: what it may read, what it may do.

The HTTP side (API, pages, metrics) never holds the daemon itself. It reads a `ReadView` and
changes state only through `Operations`, the same for the JSON API and the page forms, so an
operator action has one path with one set of rules (token, standby, validated body: see
`monitor.web.guard`). `monitor.runtime.webside.DaemonWeb` implements both over the daemon.

To add an action: add one method to `Operations`, implement it in the runtime adapter, and
write the endpoint with `@write(...)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from monitor.config.model import Config
    from monitor.core.models import Incident, OutboxMessage, Silence, TimelineEntry
    from monitor.core.result import Result
    from monitor.core.types import Severity
    from monitor.history.query import HistoryReader, SystemHistory
    from monitor.incidents.maintenance import Window
    from monitor.probing.pushed import AmAlert, Applied
    from monitor.probing.state import CheckState
    from monitor.store.buffered import Unrecorded


class ReadView(Protocol):
    """Live state for reading. Nothing returned here may be changed by the caller."""

    @property
    def config(self) -> Config:
        """The running config (replaced as a whole on reload: read it once per request)."""

    @property
    def states(self) -> Mapping[str, CheckState]:
        """Check id -> its live state."""

    @property
    def leading(self) -> bool:
        """True when this instance runs incidents and notifications (SPEC §9)."""

    @property
    def leader(self) -> str | None:
        """The instance id holding the lease, if any: named in a standby's refusal."""

    def clock(self) -> float:
        """Now, from the daemon's (injectable) clock."""

    def open_incidents(self) -> Sequence[Incident]:
        """Open incidents as the incident side sees them now (drills included)."""

    def windows(self, now: float) -> Sequence[Window]:
        """Maintenance windows (config and run-time silences) around `now`."""

    def recording(self) -> Unrecorded | None:
        """Set while the store refuses writes: hismon goes on from memory and cannot record
        (pages show a banner, the API says so)."""

    async def problems(self) -> list[str]:
        """Why this instance is not ready (empty when it is): starting, store unreachable..."""

    async def metrics(self) -> list[bytes]:
        """The Prometheus exposition, refreshed for this scrape, in the pieces it was
        rendered in (to be sent one after another: no joined copy)."""

    async def get_incident(self, incident_id: str) -> Incident | None: ...

    async def list_incidents(self, status: str | None = None, since: float | None = None,
                             limit: int = 500, system: str | None = None
                             ) -> list[Incident]: ...

    async def timeline(self, incident_id: str) -> list[TimelineEntry]: ...

    async def list_messages(self, status: str | None = None, incident_id: str | None = None,
                            limit: int = 500) -> list[OutboxMessage]: ...

    async def system_history(self, system_id: str, now: float, days: int) -> SystemHistory:
        """A system's days, half-hour slots and availability (SPEC §7)."""

    @property
    def history_reader(self) -> HistoryReader:
        """The history (bars, days, latency series) the pages draw; reading only."""

    def cluster(self) -> dict[str, Any]:
        """`GET /api/v1/cluster`: live members, how many checks each probes, leader, term."""

    @property
    def link_key(self) -> bytes | None:
        """The key message links are signed with (SPEC 13.2); None until the store has one."""


class Operations(Protocol):
    """Every change the web side may make. Each returns what the answer shows."""

    async def acknowledge(self, incident_id: str, by: str, note: str | None) -> Incident | None:
        """Record who takes an open incident; None when no such incident is open."""

    async def add_note(self, incident_id: str, by: str, text: str) -> Incident | None:
        """The incident lead's progress note; None when no such incident is open."""

    async def add_silence(self, silence: Silence) -> Silence:
        """Store a run-time maintenance window and apply it at once."""

    async def remove_silence(self, silence_id: str) -> bool:
        """End a run-time maintenance window; False when there is none with this id."""

    async def record_heartbeat(self, check_id: str) -> float:
        """A job's ping for a heartbeat check; returns when it was received."""

    async def push_result(self, check_id: str, result: Result) -> float | None:
        """A passive check's pushed result (SPEC 15); None when another member probes it."""

    async def apply_alerts(self, alerts: list[AmAlert]) -> Applied:
        """An Alertmanager notification: each alert naming a passive check sets that check."""

    async def link_action(self, action: dict[str, Any]) -> Incident | None:
        """What a message link asks (SPEC 13.2-13.4): the leader acts now and returns the
        incident; a standby leaves it in the store for the leader and returns None."""

    # SPEC §13: each raises `monitor.people.actions.Refused` when the incident's state does
    # not allow it (its status is the HTTP answer).

    async def declare(self, system_id: str, severity: Severity, title: str, by: str,
                      started_at: float | None) -> Incident:
        """An incident declared by hand; its system's plan runs."""

    async def resolve(self, incident_id: str, by: str, note: str | None) -> Incident:
        """Resolve by hand."""

    async def patch(self, incident_id: str, by: str, changes: dict[str, Any]) -> Incident:
        """Set `confirmed_cause`, `root_cause`, `actions` (only the keys given)."""

    async def confirm_department(self, incident_id: str, department: str, what: str,
                                 by: str | None) -> Incident:
        """A department is on paper / done with back-entry (taken by phone)."""

    async def vendor_response(self, incident_id: str, by: str | None,
                              eta: str | None) -> Incident:
        """The vendor's engineer responds (taken by phone)."""


class WebSide(ReadView, Operations, Protocol):
    """Both faces at once: what `monitor.web.app.build_app` is given."""
