"""FILE:LINE checks of `people`, `schedules` and the targets that name them (SPEC §13.1).

Runs on the raw YAML data before pydantic, like the loader's other reference checks, so a
dangling `schedule:it-oncall` or a person nobody can reach is reported with its line: a
schedule that pages nobody is found by `hismon validate`, not by the next outage.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

KeyPath = tuple[str | int, ...]
Report = Callable[[KeyPath, str], None]

ADDRESS_NEEDED = {"sms": "mobile", "email": "email"}
"""Channels that send to the person's own address, and the key that address lives in."""
DEPARTMENT_TARGETS = ("departments:unconfirmed", "departments:backfill_pending")


def _items(data: dict[str, Any], section: str) -> Iterator[tuple[int, dict[str, Any]]]:
    block = data.get(section)
    if isinstance(block, list):
        for index, item in enumerate(block):
            if isinstance(item, dict):
                yield index, item


def _ids(data: dict[str, Any], section: str, report: Report) -> set[str]:
    seen: dict[str, int] = {}
    for index, item in _items(data, section):
        ident = item.get("id")
        if isinstance(ident, str):
            if ident in seen:
                report((section, index, "id"),
                       f'duplicate id "{ident}" (also {section}[{seen[ident]}])')
            else:
                seen[ident] = index
    return set(seen)


def _time(value: Any) -> float | None:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.timestamp()
    return None


def check_people(data: dict[str, Any], report: Report) -> None:
    people = _ids(data, "people", report)
    _ids(data, "schedules", report)
    notifier_types = {n.get("id"): n.get("type") for _, n in _items(data, "notifiers")
                      if isinstance(n.get("id"), str)}
    for index, person in _items(data, "people"):
        notify = person.get("notify")
        if not isinstance(notify, list) or not notify:
            report(("people", index, "notify") if "notify" in person else ("people", index),
                   "a person needs `notify`: the notifiers that reach them")
            continue
        for i, notifier in enumerate(notify):
            if not isinstance(notifier, str):
                continue
            if notifier not in notifier_types:
                report(("people", index, "notify", i), f'unknown notifier "{notifier}"')
                continue
            key = ADDRESS_NEEDED.get(str(notifier_types[notifier]))
            if key is not None and not person.get(key):
                report(("people", index, "notify", i),
                       f'{notifier} is {notifier_types[notifier]}: the person needs `{key}`')
    for index, schedule in _items(data, "schedules"):
        members = schedule.get("members")
        if not isinstance(members, list) or not members:
            report(("schedules", index, "members") if "members" in schedule
                   else ("schedules", index), "a schedule needs at least one member")
        else:
            for i, member in enumerate(members):
                if isinstance(member, str) and member not in people:
                    report(("schedules", index, "members", i), f'unknown person "{member}"')
        overrides = schedule.get("overrides")
        spans: list[tuple[float, float, int]] = []
        for i, override in enumerate(overrides if isinstance(overrides, list) else []):
            if not isinstance(override, dict):
                continue
            who = override.get("person")
            if isinstance(who, str) and who not in people:
                report(("schedules", index, "overrides", i, "person"),
                       f'unknown person "{who}"')
            start, end = _time(override.get("start")), _time(override.get("end"))
            if start is None or end is None or end <= start:
                continue  # the model says what is wrong with the times themselves
            for other_start, other_end, j in spans:
                if start < other_end and other_start < end:
                    report(("schedules", index, "overrides", i),
                           f"overlaps overrides[{j}]: one person is on duty at a time")
            spans.append((start, end, i))


DIRECT_ADDRESS = {"sms": "recipients", "email": "to"}
"""Channels whose own address list a message that is for no person goes to."""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _direct_uses(data: dict[str, Any]) -> dict[str, str]:
    """Notifier id -> one place that sends to it directly, not to a person through it."""
    found: dict[str, str] = {}

    def add(notifier: Any, where: str) -> None:
        if isinstance(notifier, str):
            found.setdefault(notifier, where)

    roles = data.get("roles")
    for role, members in roles.items() if isinstance(roles, dict) else []:
        for member in _list(members):
            add(member, f"role {role}")
    for index, dept in _items(data, "departments"):
        for notifier in _list(dept.get("notify")):
            add(notifier, f"departments[{index}].notify")
    for index, system in _items(data, "systems"):
        vendor = system.get("vendor")
        for notifier in _list(vendor.get("notify")) if isinstance(vendor, dict) else []:
            add(notifier, f"systems[{index}].vendor.notify")
    for index, notifier in _items(data, "notifiers"):
        add(notifier.get("fallback"), f"notifiers[{index}].fallback")
        if notifier.get("drill") is True:
            add(notifier.get("id"), f"notifiers[{index}].drill")
    for index, plan in _items(data, "plans"):
        lists = [plan.get("early_warning"), plan.get("on_recovery")]
        lists += [s.get("notify") for s in _list(plan.get("steps")) if isinstance(s, dict)]
        for targets in lists:
            for target in _list(targets):
                if isinstance(target, str) and ":" not in target and target not in (
                        "departments", "vendor"):
                    add(target, f"plans[{index}]")
    for target in _list(data.get("self_alerts")):
        if isinstance(target, str) and ":" not in target:
            add(target, "self_alerts")
    return found


def check_addresses(data: dict[str, Any], report: Report) -> None:
    """An sms/email notifier without its own recipients may only carry messages for people
    (each to their own mobile or address, SPEC 13.1): anything else would reach nobody."""
    direct = _direct_uses(data)
    for index, notifier in _items(data, "notifiers"):
        key = DIRECT_ADDRESS.get(str(notifier.get("type")))
        ident = notifier.get("id")
        if key is None or notifier.get(key) or not isinstance(ident, str):
            continue
        if ident in direct:
            report(("notifiers", index, key),
                   f"missing: {direct[ident]} sends to {ident} directly (only messages "
                   "for people go to their own address)")


def target_problem(target: str, data: dict[str, Any]) -> str | None:
    """Why a notify target of the people kinds is wrong; None if fine or not ours."""
    people = {p.get("id") for _, p in _items(data, "people") if isinstance(p.get("id"), str)}
    schedules = {s.get("id") for _, s in _items(data, "schedules")
                 if isinstance(s.get("id"), str)}
    if target.startswith("person:"):
        if target[7:] not in people:
            return f'unknown person "{target[7:]}"'
        return None
    if target.startswith("schedule:"):
        name = target[9:].removesuffix(":next")
        if name not in schedules:
            return f'unknown schedule "{name}"'
        return None
    if target.startswith("departments:") and target not in DEPARTMENT_TARGETS:
        return f'unknown target "{target}" (departments:unconfirmed or ' \
               "departments:backfill_pending)"
    return None


def is_people_target(target: str) -> bool:
    return target.startswith(("person:", "schedule:", "departments:"))
