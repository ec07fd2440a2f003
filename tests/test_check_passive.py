"""Passive checks: pushed results through confirm/recover, freshness, the Alertmanager book.

The scheduler runs with a fake clock and its job never fires on its own (interval 1h):
the tests call `submit` (what the API does) and `_run` (what the schedule does).
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from checks.base import ProbeContext
from checks.passive import PassiveCheck
from monitor.config.model import Config
from monitor.core.result import Result, State
from monitor.probing.pushed import AlertBook, AlertmanagerPayload, AmAlert, PushedResult
from monitor.probing.scheduler import Scheduler
from monitor.probing.state import CheckState
from monitor.telemetry.metrics import Metrics, MetricsSource
from tests.conftest import Clock
from tests.probe_helpers import make_check

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z




def config(**check: Any) -> Config:
    return Config.model_validate({
        "site": {"timezone": "Asia/Shanghai"},
        "defaults": {"interval": "1h", "timeout": "5s"},
        "systems": [{"id": "pacs", "name": "PACS"}],
        "checks": [{"id": "pacs-vendor", "system": "pacs", "type": "passive", **check}],
    })


class Harness:
    def __init__(self, **check: Any) -> None:
        self.clock = Clock(T0)
        self.ctx = ProbeContext()
        self.ctx.app_state["started_at"] = T0
        self.states: dict[str, CheckState] = {}
        self.changes: list[State] = []
        self.config = config(**check)
        self.scheduler = Scheduler(self.config, self.ctx, self.states,
                                   Metrics(lambda: MetricsSource()),
                                   lambda s: self.changes.append(s.hard_state), self.clock)
        self.scheduler.apply_config(self.config)

    @property
    def check(self) -> Any:
        return self.config.check("pacs-vendor")

    @property
    def state(self) -> CheckState:
        return self.states["pacs-vendor"]

    def push(self, state: str, message: str = "", **numbers: float) -> bool:
        pushed = PushedResult.model_validate({"state": state, "message": message,
                                              "numbers": numbers})
        return self.scheduler.submit("pacs-vendor", pushed.result())

    async def tick(self, seconds: float) -> None:
        self.clock.now += seconds
        await self.scheduler._run("pacs-vendor", self.clock.now, 0)


async def test_a_pushed_crit_is_hard_at_once_and_one_ok_recovers() -> None:
    h = Harness()
    assert h.push("CRIT", "PACS archive: 2 of 12 disks failed", failed_disks=2)
    assert (h.state.hard_state, h.state.hard) == (State.CRIT, True)
    assert h.state.message == "PACS archive: 2 of 12 disks failed"
    assert h.state.numbers == {"failed_disks": 2}
    assert h.changes == [State.CRIT]
    assert h.push("OK", "all disks healthy")
    assert h.state.hard_state is State.OK
    assert h.changes == [State.CRIT, State.OK]


async def test_configured_confirm_counts_pushes_and_the_schedule_never_repeats_one() -> None:
    h = Harness(confirm=2)
    h.push("CRIT", "down")
    assert (h.state.hard_state, h.state.hard) == (State.OK, False)
    await h.tick(3600)  # a scheduled run is no result: it must not confirm the push
    assert (h.state.hard_state, h.state.runs) == (State.OK, {"CRIT": 1})
    h.push("CRIT", "still down")
    assert h.state.hard_state is State.CRIT


def test_passive_checks_default_to_confirm_and_recover_one() -> None:
    check = config().check("pacs-vendor")
    assert (check.confirm, check.recover) == (1, 1)
    other = Config.model_validate({
        "defaults": {"confirm": 4, "recover": 3},
        "systems": [{"id": "pacs", "name": "PACS"}],
        "checks": [{"id": "p", "system": "pacs", "type": "passive"}],
    }).check("p")
    assert (other.confirm, other.recover) == (1, 1)


async def test_without_expect_every_silence_is_never_judged() -> None:
    h = Harness()
    h.push("OK", "fine")
    await h.tick(30 * 86400)
    assert h.state.state is State.OK
    assert h.state.message == "fine"


async def test_no_result_in_time_is_stale_naming_the_last_one_and_opens_nothing() -> None:
    h = Harness(expect_every="5m", grace="1m")
    h.push("CRIT", "array degraded")  # at 16:00:00 in Shanghai
    await h.tick(6 * 60)  # within expect_every + grace
    assert h.state.message == "array degraded"
    await h.tick(60)
    assert h.check.overdue(h.ctx, h.clock.now, None).state is State.UNKNOWN
    assert h.state.message == ("no result since 16:00:00 (7m ago; expected every 5m + 1m "
                               "grace)")
    # SPEC 9: a stale check keeps its last hard state and changes no incident
    assert (h.state.state, h.state.hard_state, h.changes) == (State.CRIT, State.CRIT,
                                                              [State.CRIT])
    h.push("OK", "back")
    assert (h.state.state, h.state.message) == (State.OK, "back")


async def test_stale_crit_makes_silence_an_outage() -> None:
    h = Harness(expect_every="5m", grace="1m", stale="crit")
    await h.tick(7 * 60)  # nothing ever came: since hismon started
    assert (h.state.hard_state, h.state.hard) == (State.CRIT, True)
    assert h.state.message.startswith("no result since hismon started at 16:00:00 (7m ago")
    assert h.changes == [State.CRIT]


def test_bad_pushed_bodies_are_refused() -> None:
    for body in ({"state": "DOWN"}, {"state": "OK", "numbers": {"x": "many"}},
                 {"state": "OK", "extra": 1}, {"state": "OK", "numbers": {"x": float("inf")}}):
        with pytest.raises(ValidationError):
            PushedResult.model_validate(body)


def test_the_token_is_a_secret_and_grace_needs_a_period() -> None:
    check = make_check({"type": "passive", "token": "push-token-1"})
    assert isinstance(check, PassiveCheck)
    assert check.public_config()["token"] == "***"
    with pytest.raises(ValidationError, match="grace needs expect_every"):
        make_check({"type": "passive", "grace": "1m"})


def alert(status: str, fingerprint: str, check: str = "his-db-repl", **labels: str) -> AmAlert:
    summary = labels.pop("summary", f"{fingerprint} summary")
    return AmAlert.model_validate({
        "status": status, "fingerprint": fingerprint,
        "labels": {"alertname": "X", "hismon_check": check, **labels},
        "annotations": {"summary": summary}, "startsAt": "2027-01-15T08:00:00Z"})


def test_the_worst_firing_alert_sets_the_check_and_ok_only_when_none_fires() -> None:
    book = AlertBook()
    passive = {"his-db-repl"}
    first = book.apply([alert("firing", "a1", severity="warning",
                              summary="replication lag 45s")], passive)
    assert (first.applied, first.unknown_check) == (1, 0)
    assert first.results["his-db-repl"].state is State.WARN
    assert first.results["his-db-repl"].message == "replication lag 45s"
    second = book.apply([alert("firing", "a2", severity="critical",
                               summary="replication stopped")], passive)
    result = second.results["his-db-repl"]
    assert (result.state, result.message) == (State.CRIT, "replication stopped (+1 more firing)")
    assert result.numbers == {"alerts_firing": 2}
    third = book.apply([alert("resolved", "a2", severity="critical",
                              summary="replication stopped")], passive)
    assert third.results["his-db-repl"].state is State.WARN  # a1 still fires
    last = book.apply([alert("resolved", "a1", severity="warning",
                             summary="replication lag 45s")], passive)
    assert last.results["his-db-repl"].state is State.OK
    assert last.results["his-db-repl"].message == (
        "no alert firing in Alertmanager (resolved: replication lag 45s)")


def test_severity_other_than_warning_is_crit_and_description_is_the_fallback() -> None:
    book = AlertBook()
    item = AmAlert.model_validate({"status": "firing", "fingerprint": "f",
                                   "labels": {"hismon_check": "c", "severity": "page"},
                                   "annotations": {"description": "line one\nline two"}})
    result = book.apply([item], {"c"}).results["c"]
    assert (result.state, result.message) == (State.CRIT, "line one line two")


def test_alerts_naming_no_known_passive_check_are_counted_not_applied() -> None:
    book = AlertBook()
    out = book.apply([alert("firing", "x", check="no-such-check"),
                      AmAlert.model_validate({"status": "firing", "labels": {"alertname": "Y"}}),
                      alert("firing", "ok1", check="c")], {"c"})
    assert (out.applied, out.unknown_check) == (1, 2)
    assert set(out.results) == {"c"}
    assert out.unknown_names[0] == "no-such-check"


def test_the_payload_must_be_version_4() -> None:
    AlertmanagerPayload.model_validate({"version": "4", "alerts": [], "groupKey": "{}"})
    with pytest.raises(ValidationError):
        AlertmanagerPayload.model_validate({"version": "3", "alerts": []})


def test_a_result_from_the_book_is_a_plain_result() -> None:
    assert isinstance(AlertBook().result("never-seen"), Result)
