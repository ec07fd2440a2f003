"""Grouping (SPEC 6, `alerting.group_window`): which pending messages of a notifier go together.

When thirty systems fail in the same two seconds, IT should read one message listing thirty
incidents and a ward one notice listing the systems it uses, not thirty of each. Pure: a
function of (pending messages, now, window), so the rule is tested on a moved clock and the
outbox only carries out what it says.

- Messages of the same kind to the same recipient (the notifier, and the person or the
  department the message was for) and of the same world (a drill never groups with live
  messages) that fall due within `window` of the first are sent as one. The window is
  fixed, counted from the first message due: nothing is held longer than `window`.
- A group is bound before its first attempt: every member's payload records the group's key
  and all member keys (`GROUP`), so retries and a restarted daemon send the same members
  under the same key (`group:` + a hash of the member keys), none twice, none lost. A
  message that was once tried alone is retried alone.
- Never grouped: window 0 (off), an Alertmanager notifier (each incident is its own alert),
  messages about hismon itself (`monitor_degraded`, `monitor_ok`: they must not wait, and a
  monitor has one state) and maintenance notices (one per window and department already).
- Fallback copies are late already: they are not held, but copies of one kind for one
  recipient that are due at the same moment (a failed group's members falling back
  together) go as one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from monitor.core.models import OutboxMessage
from monitor.core.types import INCIDENT_KINDS, MessageKind

GROUP = "group"
"""Payload key of a bound member: {"key": "group:…", "members": [every member's key]}."""
GROUP_ITEM = "group_item"
"""Payload key of what a grouped text needs of each member (set when it is composed)."""
GROUPABLE_KINDS = frozenset({*INCIDENT_KINDS, MessageKind.RECOVERY,
                             MessageKind.BACKFILL_REMINDER})
LONGEST_WAIT = 60.0
"""A sender looks at its queue at least this often."""

GroupOf = tuple[str, str, str, str, str]
"""(kind, person, department, world, language): messages with one value may share a send.
The world is `live` or `drill`, with `+copy` for fallback copies (never held)."""
COPY = "+copy"


@dataclass(frozen=True, slots=True)
class Batch:
    """What one send carries: one message under its own key, or a group under `group:…`."""

    members: tuple[OutboxMessage, ...]
    key: str

    @property
    def grouped(self) -> bool:
        return self.key.startswith("group:")


def group_key(member_keys: Iterable[str]) -> str:
    """`group:` + a hash of the member keys, whatever their order (SPEC 6)."""
    joined = "\n".join(sorted(member_keys)).encode("utf-8")
    return "group:" + hashlib.sha256(joined).hexdigest()[:32]


def groupable(groups_messages: bool, window: float) -> bool:
    """A channel that keeps one record per incident (Alertmanager) is never grouped; a
    window of 0 is off."""
    return window > 0 and groups_messages


def group_of(message: OutboxMessage) -> GroupOf | None:
    """The group a message may join, or None when it goes alone."""
    payload = message.payload
    if message.kind not in GROUPABLE_KINDS or message.attempts or not message.incident_id:
        return None
    person = payload.get("person")
    person_id = person.get("id") if isinstance(person, dict) else None
    item = payload.get(GROUP_ITEM)
    language = item.get("language") if isinstance(item, dict) else None
    world = ("drill" if payload.get("drill") else "live") \
        + (COPY if payload.get("failed_channels") else "")
    return (str(message.kind), str(person_id or ""), str(payload.get("department") or ""),
            world, str(language or ""))


def binding(message: OutboxMessage) -> tuple[str, list[str]] | None:
    """(group key, member keys) of a bound member, else None."""
    bound = message.payload.get(GROUP)
    if isinstance(bound, dict) and isinstance(bound.get("key"), str):
        members = bound.get("members")
        return bound["key"], [str(k) for k in members] if isinstance(members, list) else []
    return None


def bind(batch: Batch) -> list[OutboxMessage]:
    """Record the group in each member that does not carry it yet; returns those changed."""
    keys = [m.idempotency_key for m in batch.members]
    changed = []
    for member in batch.members:
        if binding(member) is None:
            member.payload[GROUP] = {"key": batch.key, "members": keys}
            changed.append(member)
    return changed


def plan(messages: Sequence[OutboxMessage], now: float,
         window: float) -> tuple[list[Batch], float]:
    """The batches to send now (in queue order) and seconds until the next one is due.

    `messages` are one notifier's pending messages; `window` 0 gives every due message a
    batch of its own, exactly as without grouping.
    """
    ready: list[Batch] = []
    wait = LONGEST_WAIT

    def due_alone(message: OutboxMessage) -> None:
        nonlocal wait
        if message.next_attempt_at <= now:
            ready.append(Batch((message,), message.idempotency_key))
        else:
            wait = min(wait, message.next_attempt_at - now)

    bound: dict[str, list[OutboxMessage]] = {}
    owner: dict[str, str] = {}
    for message in messages:
        found = binding(message)
        if found is not None:
            bound.setdefault(found[0], []).append(message)
            owner.update(dict.fromkeys(found[1], found[0]))
    claimed = {m.idempotency_key for members in bound.values() for m in members}
    opening: dict[GroupOf, list[OutboxMessage]] = {}
    for message in messages:
        key = message.idempotency_key
        if key in claimed:
            continue
        if key in owner:
            # Named by a group whose binding a crash cut short: it belongs to that group.
            bound[owner[key]].append(message)
            claimed.add(key)
            continue
        found_group = group_of(message) if window > 0 else None
        if found_group is None:
            due_alone(message)
        else:
            opening.setdefault(found_group, []).append(message)
    for key, members in bound.items():
        at = min(m.next_attempt_at for m in members)
        if at <= now:
            ready.append(Batch(tuple(members), key))
        else:
            wait = min(wait, at - now)
    for opened, members in opening.items():
        members.sort(key=lambda m: (m.next_attempt_at, m.id or 0))
        held = not opened[3].endswith(COPY)
        while members:
            closes = members[0].next_attempt_at + (window if held else 0.0)
            if closes > now:
                wait = min(wait, closes - now)
                break
            inside = [m for m in members
                      if (m.next_attempt_at < closes if held else m.next_attempt_at <= now)]
            members = members[len(inside):]
            if len(inside) == 1:
                ready.append(Batch((inside[0],), inside[0].idempotency_key))
            else:
                inside.sort(key=lambda m: m.id or 0)
                ready.append(Batch(tuple(inside),
                                   group_key(m.idempotency_key for m in inside)))
    ready.sort(key=lambda b: min(m.id or 0 for m in b.members))
    return ready, wait
