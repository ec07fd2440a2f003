"""Notify targets that name people: `person:ID`, `schedule:ID`, `schedule:ID:next` (§13.1).

A schedule target is resolved when the step fires, by the rotation at that moment; the
person's own `notify` list says which notifiers carry the message, each addressed to them.
"""

from __future__ import annotations

from typing import Any

from monitor.people.rotation import Rotation, on_duty


def person_of_target(target: str, config: Any, now: float) -> str | None:
    """The person id a `person:`/`schedule:` target means at `now` (None: not such a target)."""
    if target.startswith("person:"):
        return target.removeprefix("person:")
    if target.startswith("schedule:"):
        name = target.removeprefix("schedule:")
        backup = name.endswith(":next")
        schedule = config.schedule(name.removesuffix(":next"))
        duty = on_duty(Rotation.of(schedule), now)
        return duty.next if backup else duty.person
    return None


def person_card(config: Any, person_id: str) -> dict[str, Any]:
    """What a message to a person carries: the webhook's `person` plus the addresses."""
    person = config.person(person_id)
    return {"id": person.id, "name": person.name, "mobile": person.mobile,
            "email": person.email}


def recipient_key(person_id: str, notifier: str) -> str:
    """The recipient part of the idempotency key (SPEC §13.1)."""
    return f"person:{person_id}/{notifier}"
