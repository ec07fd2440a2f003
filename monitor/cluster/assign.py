"""Which live members probe which check (SPEC 9, `cluster: {shards: auto}`): rendezvous hashing.

Every member computes the same answer from the same list of live members, with no
coordinator: for each check, the members are ranked by a hash of (check id, member id) and
the first `replicas` of them probe it. When a member dies only its checks move (each to the
member ranked next for that check); when one joins it takes about 1/N of the checks from
the others and nothing else moves. That is why rendezvous and not `hash % N`, which
reshuffles almost every check whenever N changes.

Pure functions; hashing is blake2b (stable across processes and Python versions, unlike
`hash()`), 8 bytes, which is plenty to rank a handful of members.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence


def _score(check_id: str, member_id: str) -> int:
    digest = hashlib.blake2b(f"{check_id}\0{member_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owners(check_id: str, members: Sequence[str], replicas: int = 1) -> list[str]:
    """The members that probe `check_id`, best-ranked first; at most `replicas`, at least one
    while any member is alive. Ties (impossible in practice) break on the member id."""
    if not members:
        return []
    count = max(1, min(replicas, len(members)))
    ranked = sorted(members, key=lambda m: (-_score(check_id, m), m))
    return ranked[:count]


def owned_by(member: str, check_ids: Iterable[tuple[str, int]],
             members: Sequence[str]) -> set[str]:
    """The checks `member` probes, given (check id, replicas for it) and the live members.

    A member that is not (yet) in the live list owns nothing: it starts probing once its own
    heartbeat is visible to everyone, so no check is probed by a member the others cannot see.
    """
    if member not in members:
        return set()
    return {check_id for check_id, replicas in check_ids
            if member in owners(check_id, members, replicas)}


def replicas_for(vantage_quorum: int, replicas: int) -> int:
    """A check that needs N votes is probed by at least N members (SPEC 9)."""
    return max(replicas, vantage_quorum, 1)
