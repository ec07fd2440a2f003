"""`GET /api/v1/cluster` (SPEC 7, 9): who is alive, how many checks each probes, who leads."""

from __future__ import annotations

import datetime as dt
from typing import Any

from monitor.cluster.leader import Leadership
from monitor.cluster.membership import Membership


def cluster_view(membership: Membership | None, leadership: Leadership,
                 checks_here: int, me: str) -> dict[str, Any]:
    """The cluster as this instance sees it. A single instance (or `--shard`) is a cluster of
    one: itself, with the checks it probes."""
    if membership is None:
        members = [{"id": me, "checks": checks_here, "last_seen": None}]
    else:
        members = [{"id": m.id, "checks": m.checks,
                    "last_seen": dt.datetime.fromtimestamp(m.last_seen, dt.UTC).isoformat()}
                   for m in membership.members]
    return {"members": members, "leader": leadership.holder, "term": leadership.term}
