"""Results pushed from outside (SPEC §15): a passive check's result, Alertmanager's webhook.

Pure: request bodies as pydantic models, and `AlertBook`, which turns Alertmanager
notifications into one result per passive check. The web side validates a body, the daemon
folds each result into the check's state (`Scheduler.submit`), and from there it is a result
like any probe's: confirm/recover, incident, plan, department notice.

Alertmanager sends, per group, every alert of the group (firing, and resolved since the last
notification), again at `repeat_interval`. Alerts are kept by fingerprint, so two rules
firing for one check (lag warning, then replication stopped) make its state the worst of
those firing now, and it is OK only when none is. The book lives in memory on the leader:
after a restart the check keeps its stored hard state, and Alertmanager's next notification
of the group (at the latest `repeat_interval`) brings the book back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitor.core.result import Result, State
from monitor.core.text import one_line
from monitor.core.types import Cause

CHECK_LABEL = "hismon_check"
MAX_MESSAGE = 500


class PushedResult(BaseModel):
    """`POST /api/v1/checks/{id}/result`: `{"state", "message", "numbers": {}}`."""

    model_config = ConfigDict(extra="forbid")

    state: Literal["OK", "WARN", "CRIT", "UNKNOWN"]
    message: str = Field(default="", max_length=2000)
    numbers: dict[str, float] = Field(default_factory=dict, max_length=64)

    @field_validator("numbers")
    @classmethod
    def _finite(cls, numbers: dict[str, float]) -> dict[str, float]:
        import math

        bad = [name for name, value in numbers.items() if not math.isfinite(value)]
        if bad:
            raise ValueError(f"numbers must be finite: {', '.join(bad)}")
        return numbers

    def result(self) -> Result:
        message = one_line(self.message, MAX_MESSAGE, "...") or \
            f"{self.state} (pushed without a message)"
        state = State[self.state]
        return Result(state, message, numbers=dict(self.numbers),
                      cause=Cause.APPLICATION if state is not State.OK else None)


class AmAlert(BaseModel):
    """One alert of an Alertmanager webhook notification (its other fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = ""
    fingerprint: str = ""

    @property
    def key(self) -> str:
        """Alertmanager's fingerprint; older senders without one: a hash of the labels."""
        if self.fingerprint:
            return self.fingerprint
        text = "\0".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class AlertmanagerPayload(BaseModel):
    """Alertmanager's webhook payload, version 4 (`webhook_configs`)."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    status: Literal["firing", "resolved"] = "firing"
    receiver: str = ""
    alerts: list[AmAlert] = Field(max_length=5000)


@dataclass(slots=True)
class _Firing:
    state: State
    message: str
    starts_at: str


def alert_state(labels: dict[str, str]) -> State:
    """`severity: warning` is WARN, `critical` (or anything else, or none) CRIT."""
    return State.WARN if labels.get("severity", "").lower() == "warning" else State.CRIT


def alert_message(alert: AmAlert) -> str:
    text = alert.annotations.get("summary") or alert.annotations.get("description")
    if not text:
        text = f"alert {alert.labels.get('alertname', '(unnamed)')} firing"
    return one_line(text, MAX_MESSAGE, "...")


@dataclass(frozen=True, slots=True)
class Applied:
    """What one notification did: counts for the answer, one new result per check touched."""

    applied: int
    unknown_check: int
    results: dict[str, Result]
    unknown_names: tuple[str, ...] = ()


class AlertBook:
    """Firing Alertmanager alerts per passive check, kept by fingerprint."""

    def __init__(self) -> None:
        self._firing: dict[str, dict[str, _Firing]] = {}
        self._last_resolved: dict[str, str] = {}

    def apply(self, alerts: list[AmAlert], passive: set[str]) -> Applied:
        """Fold a notification's alerts in; `passive`: ids of the known passive checks."""
        touched: dict[str, None] = {}
        applied = unknown = 0
        unknown_names: list[str] = []
        for alert in alerts:
            check_id = alert.labels.get(CHECK_LABEL, "")
            if check_id not in passive:
                unknown += 1
                unknown_names.append(check_id or f"({alert.labels.get('alertname', '?')} "
                                                 f"has no {CHECK_LABEL} label)")
                continue
            book = self._firing.setdefault(check_id, {})
            if alert.status == "firing":
                book[alert.key] = _Firing(alert_state(alert.labels), alert_message(alert),
                                          alert.startsAt)
            elif book.pop(alert.key, None) is not None or not book:
                self._last_resolved[check_id] = alert_message(alert)
            applied += 1
            touched[check_id] = None
        return Applied(applied, unknown, {c: self.result(c) for c in touched},
                       tuple(unknown_names))

    def result(self, check_id: str) -> Result:
        firing = self._firing.get(check_id) or {}
        if not firing:
            resolved = self._last_resolved.get(check_id)
            text = "no alert firing in Alertmanager"
            return Result(State.OK, f"{text} (resolved: {resolved})" if resolved else text,
                          numbers={"alerts_firing": 0.0})
        worst = max(firing.values(), key=lambda a: (a.state.severity_rank, a.starts_at))
        message = worst.message
        if len(firing) > 1:
            message += f" (+{len(firing) - 1} more firing)"
        return Result(worst.state, message, numbers={"alerts_firing": float(len(firing))},
                      cause=Cause.APPLICATION)

    def forget(self, keep: set[str]) -> None:
        """Drop checks that a reload removed (or that stopped being passive)."""
        for check_id in [c for c in self._firing if c not in keep]:
            del self._firing[check_id]
            self._last_resolved.pop(check_id, None)

    def firing(self, check_id: str) -> dict[str, Any]:
        """Fingerprint -> (state, message) of the alerts firing now, for tests and the log."""
        return {fp: (a.state.name, a.message) for fp, a in self._firing.get(check_id, {}).items()}
