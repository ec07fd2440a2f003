"""What every probe produces: a state, a message a human can act on, a duration and numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from monitor.core.types import Cause


class State(IntEnum):
    """Nagios order, so that `max()` gives the worst state and exit codes map directly."""

    OK = 0
    WARN = 1
    CRIT = 2
    UNKNOWN = 3

    @property
    def severity_rank(self) -> int:
        """UNKNOWN ranks between WARN and CRIT when choosing what is worst for an incident."""
        return {0: 0, 1: 1, 3: 2, 2: 3}[int(self)]


def worst(states: list[State]) -> State:
    """The state that matters most: CRIT over UNKNOWN over WARN over OK."""
    return max(states, key=lambda s: s.severity_rank, default=State.OK)


@dataclass(slots=True)
class Result:
    """One probe's outcome. `cause` is a hint for suspected-cause inference (network, tls...)."""

    state: State
    message: str
    duration: float = 0.0
    numbers: dict[str, float] = field(default_factory=dict)
    cause: Cause | None = None
    own_fault: str | None = None
    """Set (to the resource, e.g. "file descriptors") when the probe could not run because
    hismon itself ran out of it: the result is UNKNOWN and judges nothing (SPEC 9)."""

    @classmethod
    def ok(cls, message: str, **numbers: float) -> Result:
        return cls(State.OK, message, numbers=numbers)

    @classmethod
    def crit(cls, message: str, cause: Cause | None = None, **numbers: float) -> Result:
        return cls(State.CRIT, message, numbers=numbers, cause=cause)

    @classmethod
    def unknown(cls, message: str) -> Result:
        return cls(State.UNKNOWN, message)
