"""Soft and hard check states (SPEC §4), Nagios style, and flapping detection.

A failure is *soft* until `confirm` consecutive equal non-OK results make it *hard*; a hard
failure clears after `recover` consecutive OKs. Only hard changes open or close incidents.
Nothing here does I/O or reads a clock: `advance` folds one result into a `CheckState` *in
place* (the scheduler keeps one live object per check) and is deterministic in (state,
result, now), so tests drive it with numbers.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import SupportsIndex

from monitor.core.result import Result, State

FLAP_WINDOW = 21
UNSTABLE_AT = 7
"""Non-OK results among the last 21 (in at least UNSTABLE_RUNS runs) that make a check unstable."""
UNSTABLE_RUNS = 3
SETTLED_AT = 3
"""An unstable check settles when this many or fewer of its last 21 results are non-OK."""
_OK = int(State.OK)
_OK_BYTE = bytes([_OK])


class StateWindow(bytearray):
    """The states (0-3) of the last FLAP_WINDOW results, oldest first, one byte each.

    What flapping is computed from. A `deque(maxlen=21)` costs ~760 bytes per check even
    empty; this is ~80 (SPEC §12: ≤ 6 KiB per check). It iterates, tests and appends like
    the deque did: appending to a full window drops the oldest.
    """

    __slots__ = ()

    def append(self, item: SupportsIndex, /) -> None:
        if len(self) >= FLAP_WINDOW:
            del self[0]
        super().append(item)


class RecentResults:
    """(time, state) of the results since the last hard change, the last FLAP_WINDOW of them,
    from the first non-OK one on.

    What `unstable` counts. Two packed arrays instead of a deque of tuples: ~330 bytes per
    check where 21 `(float, int)` tuples in a deque took ~2.4 KiB. Iterates as the tuples,
    appends and clears like the deque did, except that OK results before the first non-OK
    one are not kept: nothing `unstable` decides depends on them (it counts the non-OK
    results, their runs, and the first one's time), and a window drops its oldest result
    at the same moment with or without them. The arrays exist only while the window holds a
    result, so a healthy check keeps this object alone (48 bytes) instead of 21 times and
    states (~410 bytes).
    """

    __slots__ = ("_states", "_times")

    def __init__(self, items: Iterable[tuple[float, int]] = ()) -> None:
        self._times: array[float] | None = None
        self._states: bytearray | None = None
        for item in items:
            self.append(item)

    def append(self, item: tuple[float, int]) -> None:
        states, times = self._states, self._times
        if states is None or times is None:
            if item[1] != _OK:  # a leading OK result is not kept
                self._times, self._states = array("d", (item[0],)), bytearray((item[1],))
            return
        if len(states) >= FLAP_WINDOW:
            del times[0]
            del states[0]
            if states and states[0] == _OK:  # OK results now leading: not kept
                leading = len(states) - len(states.lstrip(_OK_BYTE))
                if leading == len(states):
                    self._times = self._states = None
                    self.append(item)
                    return
                del times[:leading]
                del states[:leading]
        times.append(item[0])
        states.append(item[1])

    def clear(self) -> None:
        self._times = self._states = None

    def __iter__(self) -> Iterator[tuple[float, int]]:
        if self._states is None or self._times is None:
            return iter(())
        return zip(self._times, self._states, strict=True)

    def __len__(self) -> int:
        return 0 if self._states is None else len(self._states)

    def count_state(self, state: int) -> int:
        """How many of the results have `state` (counted in C, no tuple made)."""
        return 0 if self._states is None else self._states.count(state)

    def __repr__(self) -> str:
        return f"RecentResults({list(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RecentResults) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the deque it replaces


@dataclass(slots=True)
class CheckState:
    """Live state of one check. `state` is the last result; `hard_state` is the confirmed one."""

    check_id: str
    system: str
    type: str
    state: State = State.OK
    hard: bool = True
    hard_state: State = State.OK
    message: str = "not probed yet"
    duration: float = 0.0
    last_run: float | None = None
    numbers: dict[str, float] = field(default_factory=dict)
    cause: str | None = None
    streak: int = 0
    """Consecutive results equal to `state` (non-OK) or consecutive OKs while recovering."""
    first_failure_at: float | None = None
    """Time of the first failed probe of the current run of failures: the outage start."""
    recovered_at: float | None = None
    """Time of the first OK probe of the run of OKs that cleared the hard failure."""
    last_hard_change: float | None = None
    history: StateWindow = field(default_factory=StateWindow)
    flapping: bool = False
    flap_percent: float = 0.0
    runs: dict[str, int] = field(default_factory=dict)
    missed_runs: int = 0
    probed: bool = False
    failure_message: str | None = None
    """The last non-OK result's message: evidence for a failure that already answers again."""
    failure_cause: str | None = None
    """The last non-OK result's cause hint (see `failure_message`)."""
    recent: RecentResults = field(default_factory=RecentResults)
    """(time, state) of the last 21 results since the last hard change: what `unstable` counts."""
    unstable: bool = False
    """Fails often without ever reaching `confirm` in a row (SPEC 4): 7+ of the last 21 results
    non-OK in 3+ separate runs; settles at 3 or fewer."""
    unstable_since: float | None = None
    """The first non-OK result counted when the check became unstable: the incident's start."""
    unstable_state: State = State.OK
    """CRIT if any counted result was CRIT, else WARN (UNKNOWN counts as WARN here)."""
    stale: bool = False
    """No fresh result for max(3 × interval, interval + timeout + 10 s) (SPEC 9)."""
    judged: State | None = None
    """While `state` shows a result that judged nothing (`hold`): the last judged state."""

    @property
    def failing(self) -> bool:
        """Hard non-OK: what incidents are made of."""
        return self.hard_state is not State.OK

    @property
    def troubled(self) -> bool:
        """Hard non-OK or unstable: what makes (or keeps) its system's incident."""
        return self.failing or self.unstable

    @property
    def incident_state(self) -> State:
        """The state the check contributes to its incident: hard state, else unstable's."""
        return self.hard_state if self.failing else self.unstable_state

    @property
    def unconfirmed(self) -> bool:
        """A failure seen but not yet hard: re-probe at `retry_interval`."""
        return self.state is not State.OK and not self.hard


PERSISTED_FIELDS = ("state", "hard", "hard_state", "message", "streak", "first_failure_at",
                    "recovered_at", "last_hard_change", "last_run", "flapping", "flap_percent",
                    "unstable", "unstable_since", "unstable_state", "failure_message",
                    "failure_cause")
"""What survives a restart, so a confirmed failure stays confirmed and no incident is lost;
and what the leader knows of a check another instance probes (SPEC 9): without flapping
and unstable it opened and resolved an incident at every flap of such a check, and never
opened one for an unstable check, and the cause evidence of a recovering check was lost.
(After a restart the windows behind flapping and unstable start empty: the first result
settles them again, as it did when they were not kept.)"""
_STATES = ("state", "hard_state", "unstable_state")


def to_record(cs: CheckState) -> dict[str, object]:
    record: dict[str, object] = {k: getattr(cs, k) for k in PERSISTED_FIELDS}
    record["state"], record["hard_state"] = cs.state.name, cs.hard_state.name
    record["unstable_state"] = cs.unstable_state.name
    return record


def from_record(check_id: str, system: str, type_: str,
                record: dict[str, object]) -> CheckState:
    cs = CheckState(check_id, system, type_)
    for key in PERSISTED_FIELDS:
        if key in record:
            value = record[key]
            if key in _STATES:
                value = State[str(value)]
            setattr(cs, key, value)
    return cs


@dataclass(frozen=True, slots=True)
class Change:
    """What a result changed, for the incident engine and the log."""

    hard_changed: bool
    old_hard: State
    new_hard: State
    flapping_changed: bool
    unstable_changed: bool = False

    @property
    def notable(self) -> bool:
        """Whether the incident engine must look at the check's system now."""
        return self.hard_changed or self.flapping_changed or self.unstable_changed


def advance(
    cs: CheckState,
    result: Result,
    now: float,
    confirm: int,
    recover: int,
    flap_high: float = 20.0,
    flap_low: float = 5.0,
) -> Change:
    """Fold one probe result into `cs` (mutated in place) and say what changed.

    Not pure in the functional sense: the caller's state object is updated, so the scheduler,
    the engine and the metrics all read the same live state. Deterministic, no I/O, no clock.
    """
    old_hard = cs.hard_state
    previous = cs.state if cs.judged is None else cs.judged
    cs.judged = None
    new = result.state
    cs.runs[new.name] = cs.runs.get(new.name, 0) + 1
    cs.message, cs.duration, cs.numbers, cs.cause = (
        result.message, result.duration, result.numbers, result.cause)
    cs.last_run = now
    cs.probed = True

    if new is State.OK:
        if cs.hard_state is State.OK:
            cs.streak, cs.hard, cs.first_failure_at = 0, True, None
        else:
            cs.streak = cs.streak + 1 if previous is State.OK else 1
            if cs.streak == 1:
                cs.recovered_at = now
            if cs.streak >= recover:
                cs.hard_state, cs.hard, cs.first_failure_at = State.OK, True, None
                cs.last_hard_change = now
            else:
                cs.hard = False
    else:
        cs.failure_message, cs.failure_cause = result.message, result.cause
        if cs.first_failure_at is None or (previous is State.OK and cs.hard_state is State.OK):
            cs.first_failure_at = now
        cs.streak = cs.streak + 1 if previous is new else 1
        cs.recovered_at = None
        if cs.hard_state is new or cs.streak >= confirm:
            if cs.hard_state is not new:
                cs.last_hard_change = now
            cs.hard_state, cs.hard = new, True
        else:
            cs.hard = False
    cs.state = new

    was_flapping = cs.flapping
    cs.history.append(int(new))
    cs.flap_percent = flap_percent(cs.history)
    if cs.flapping and cs.flap_percent < flap_low:
        cs.flapping = False
    elif not cs.flapping and cs.flap_percent > flap_high:
        cs.flapping = True
    was_unstable = cs.unstable
    if old_hard is not cs.hard_state:
        cs.recent.clear()  # only results since the last hard change count
    else:
        cs.recent.append((now, int(new)))
    _judge_unstable(cs)
    return Change(old_hard is not cs.hard_state, old_hard, cs.hard_state,
                  was_flapping is not cs.flapping, was_unstable is not cs.unstable)


def hold(cs: CheckState, result: Result) -> None:
    """Show a result that judged nothing (hismon's own fault: `Result.own_fault`) as the
    check's state, UNKNOWN, without counting it: no confirm or recover step, no flapping or
    unstable history, the hard state kept, so it opens and closes no incident (SPEC 9). The
    next real result continues from the last judged one."""
    if cs.judged is None:
        cs.judged = cs.state
    cs.state = State.UNKNOWN
    cs.message, cs.duration = result.message, result.duration
    cs.runs[State.UNKNOWN.name] = cs.runs.get(State.UNKNOWN.name, 0) + 1
    cs.probed = True


def _judge_unstable(cs: CheckState) -> None:
    """SPEC 4: a third of the last 21 results non-OK, in 3+ runs, is unstable; <= 3 settles."""
    if not cs.unstable and len(cs.recent) - cs.recent.count_state(int(State.OK)) < UNSTABLE_AT:
        return  # the common case, decided without a tuple per result (same as below)
    bad = [(t, s) for t, s in cs.recent if s != int(State.OK)]
    if cs.unstable:
        if len(bad) <= SETTLED_AT:
            cs.unstable, cs.unstable_since, cs.unstable_state = False, None, State.OK
        elif any(s == int(State.CRIT) for _, s in bad):
            cs.unstable_state = State.CRIT
        return
    if len(bad) < UNSTABLE_AT:
        return
    runs, previous_ok = 0, True
    for _, state in cs.recent:
        if state != int(State.OK) and previous_ok:
            runs += 1
        previous_ok = state == int(State.OK)
    if runs >= UNSTABLE_RUNS:
        cs.unstable, cs.unstable_since = True, bad[0][0]
        cs.unstable_state = (State.CRIT if any(s == int(State.CRIT) for _, s in bad)
                             else State.WARN)


def flap_percent(history: Iterable[int]) -> float:
    """Nagios' weighted percent state change: recent changes weigh more (0.8 → 1.2).

    A short history is padded with its oldest state, as Nagios seeds the history with the
    initial state: one outage in a fresh check is one outage, not 50% flapping.
    """
    states = list(history)
    if len(states) < 2 or states.count(states[0]) == len(states):
        return 0.0  # no change at all (the common case): what the loop below would give
    states = [states[0]] * (FLAP_WINDOW - len(states)) + states
    changes = len(states) - 1
    total = 0.0
    for i in range(1, len(states)):
        if states[i] != states[i - 1]:
            total += 0.8 + 0.4 * (i - 1) / max(changes - 1, 1)
    return 100.0 * total / changes


def stale_after(interval: float, timeout: float) -> float:
    """SPEC 9: a probed check is stale after max(3 × interval, interval + timeout + 10 s)."""
    return max(3 * interval, interval + timeout + 10.0)


def mark_stale(cs: CheckState, interval: float, timeout: float, now: float) -> bool:
    """Set `cs.stale` from the age of its last result; returns True when it changed.

    A check never probed yet is not stale (it has no result to be old); a stale check keeps
    its last state and hard state (SPEC 9), only `stale` says the result is old."""
    stale = cs.last_run is not None and now - cs.last_run > stale_after(interval, timeout)
    changed = stale is not cs.stale
    cs.stale = stale
    return changed
