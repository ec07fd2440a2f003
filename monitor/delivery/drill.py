"""Where a drill's messages go (SPEC §10): a rehearsal never reaches a real channel.

Pure functions of the config, so the engine (or the incident rules) and `hismon drill` agree
on the route and a test can check it without a network.

- `--live`: the step's own recipients, as in a real outage.
- Otherwise each step goes to those of its recipients that are `drill: true`; a step none of
  whose recipients is a drill notifier goes to *every* drill notifier instead (department
  steps render as the first of the step's departments would read them), so a dedicated test
  group sees the whole plan.
- A drill message never falls back to a notifier that is not `drill: true`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from monitor.config.model import Config


class _Recipient(Protocol):
    @property
    def notifier(self) -> str: ...

    @property
    def department(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class DrillRoute:
    """The drill recipients of one step: (notifier, department) pairs, in order."""

    recipients: tuple[tuple[str, str | None], ...]
    instead: bool
    """True when no recipient of the step is a drill notifier: every drill notifier gets it."""


def drill_notifiers(config: Config) -> list[str]:
    return [n.id for n in config.notifiers if n.drill]


def may_receive(config: Config, notifier: str, live: bool) -> bool:
    """Whether a drill message may be delivered to `notifier` (also as a fallback)."""
    if live:
        return True
    try:
        return bool(config.notifier(notifier).drill)
    except KeyError:
        return False


def route(recipients: Sequence[_Recipient], config: Config, live: bool) -> DrillRoute:
    """The drill route of one step whose real recipients are `recipients`."""
    pairs = tuple((r.notifier, r.department) for r in recipients)
    if live:
        return DrillRoute(pairs, False)
    kept = tuple(p for p in pairs if may_receive(config, p[0], live))
    if kept:
        return DrillRoute(kept, False)
    department = next((d for _, d in pairs if d is not None), None)
    return DrillRoute(tuple((n, department) for n in drill_notifiers(config)), True)
