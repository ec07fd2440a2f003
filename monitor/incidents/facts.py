"""The read-only snapshot the incident rules decide from: config, check states, open incidents,
maintenance windows and silences, latest notes. The engine builds one per tick; a test builds
one by hand. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from monitor.config.model import Config, Plan
from monitor.core.models import Incident
from monitor.delivery.messages import MessageRenderer
from monitor.incidents.maintenance import Window
from monitor.probing.state import CheckState


@dataclass(frozen=True, slots=True)
class Facts:
    config: Config
    states: Mapping[str, CheckState]
    """Live check states by check id (read, never written, by the rules)."""
    open: Mapping[str, Incident]
    """Open incidents by system id."""
    windows: Sequence[Window] = ()
    """Maintenance windows and silences around now (maintenance.windows)."""
    renderer: MessageRenderer | Any = None
    unconfirmed: Set[str] = frozenset()
    """Checks failing here but not yet confirmed by `vantage_quorum` instances."""
    notes: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    """Latest progress note per incident id: {by, text, at}."""
    drill: bool = False
    live: bool = False
    link_key: bytes | None = None
    """The store's link-signing key (SPEC 13.2); None: messages carry no links."""

    def plan_of(self, incident: Incident) -> Plan | None:
        if not self.config.has_system(incident.system):
            return None
        plan_id = self.config.system(incident.system).plan
        return self.config.plan(plan_id) if plan_id else None

    def in_maintenance(self, system_id: str, now: float) -> bool:
        return any(w.covers(system_id, now) for w in self.windows)

    def states_of(self, system_id: str) -> list[CheckState]:
        return [self.states[c.id] for c in self.config.checks_of(system_id)
                if c.id in self.states]
