"""The once-a-second staleness scans (monitor/runtime/staleness.py) decide exactly as the
rule per check does (SPEC 9), with checks of several bounds, pieces of a group, checks that
never ran, stale checks that come back, and a reload that changes a check's interval."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from monitor.config.loader import load_config_text
from monitor.probing.state import CheckState, stale_after
from monitor.runtime import staleness
from monitor.runtime.daemon import Daemon
from tests.conftest import Clock

T0 = 1_800_000_000.0


def config_text(tmp_path: Path, slow_interval: str = "60s") -> str:
    checks = [f"  - {{id: a{i}, system: his, type: tcp, host: 127.0.0.1, port: 1}}"
              for i in range(5)]
    checks += [f"  - {{id: b{i}, system: lis, type: tcp, host: 127.0.0.1, port: 1, "
               f"interval: {slow_interval}}}" for i in range(4)]
    checks += ["  - {id: c0, system: lis, type: tcp, host: 127.0.0.1, port: 1, "
               "interval: 20s, timeout: 15s}",
               "  - {id: hb, system: his, type: heartbeat, expect_every: 1h}"]
    return "\n".join([
        "site: {name: t, timezone: UTC, language: en}",
        f'state: {{url: "sqlite:///{tmp_path}/s.db"}}',
        "defaults: {interval: 10s, timeout: 5s}",
        "notifiers:", "  - {id: it, type: console}",
        "self_alerts: [it]",
        "systems:", "  - {id: his, name: HIS}", "  - {id: lis, name: LIS}",
        "checks:", *checks, ""])


def expected_marks(daemon: Daemon, now: float) -> dict[str, bool]:
    """SPEC 9's rule, check by check (what `_mark_stale` did as a loop over the config)."""
    out = {}
    for check in daemon.config.checks:
        state = daemon.states.get(check.id)
        if state is None or check.pushed or check.interval is None:
            continue
        seen_at = now - daemon._share_lag(check.id, check.interval)
        out[check.id] = state.last_run is not None and seen_at - state.last_run > stale_after(
            check.interval, check.timeout or 0.0)
    return out


def expected_self_stale(daemon: Daemon, now: float) -> list[str]:
    """The self-watch's list, check by check (never-run checks count from the start)."""
    out = []
    for check in daemon.config.checks:
        state = daemon.states.get(check.id)
        if state is None or check.type == "heartbeat" or check.pushed:
            continue
        since = state.last_run if state.last_run is not None else daemon.started_at
        lag = daemon._share_lag(check.id, check.interval or 30.0)
        if now - since - lag > stale_after(check.interval or 30.0, check.timeout or 5.0):
            out.append(check.id)
    return sorted(out)


def test_the_grouped_scans_decide_as_the_rule_per_check(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staleness, "PIECE", 2)  # groups of 5 and 4 checks come in pieces
    clock = Clock(T0)
    daemon = Daemon(load_config_text(config_text(tmp_path), "t.yaml", {}), clock=clock,
                    serve_http=False)
    daemon.started_at = T0 - 200
    for check in daemon.config.checks:
        daemon.states[check.id] = CheckState(check.id, check.system, check.type, probed=True)
    rng = random.Random(7)
    changed_seen = 0
    for round_no in range(60):
        if round_no == 30:  # a reload: b* now at 10 s, one bound for all but c0
            daemon.config = load_config_text(config_text(tmp_path, "10s"), "t.yaml", {})
        for state in daemon.states.values():
            if rng.random() < 0.4:
                state.last_run = None if rng.random() < 0.1 else (
                    clock.now - rng.choice([0.0, 20.0, 29.0, 31.0, 100.0, 179.0, 181.0]))
        clock.now += 1.0
        want = expected_marks(daemon, clock.now)
        before = {c: daemon.states[c].stale for c in want}
        daemon._mark_stale()
        assert {c: daemon.states[c].stale for c in want} == want, f"round {round_no}"
        changed_seen += sum(before[c] != want[c] for c in want)
        assert sorted(c for c, _ in daemon._stale_checks(clock.now)) == expected_self_stale(
            daemon, clock.now), f"round {round_no}"
    assert changed_seen > 20, "the rounds marked and cleared checks both ways"
    assert not daemon.states["hb"].stale, "pushed checks keep their own freshness"


def test_a_check_that_stays_fresh_is_never_walked_but_one_gone_quiet_is_marked(
        tmp_path: Path) -> None:
    clock = Clock(T0)
    daemon = Daemon(load_config_text(config_text(tmp_path), "t.yaml", {}), clock=clock,
                    serve_http=False)
    for check in daemon.config.checks:
        state = CheckState(check.id, check.system, check.type, probed=True)
        state.last_run = T0
        daemon.states[check.id] = state
    clock.now = T0 + 31  # past the 10 s checks' bound (30 s), within b*'s (180 s)
    daemon.states["b1"].last_run = T0 - 140  # 171 s old
    daemon.states["hb"].last_run = clock.now
    daemon._mark_stale()
    stale = sorted(c for c, s in daemon.states.items() if s.stale)
    assert stale == ["a0", "a1", "a2", "a3", "a4"]
    assert "c0" not in stale, "its own bound: max(60, 20 + 15 + 10)"
    daemon.states["b1"].last_run = T0 - 150  # 181 s old: past 180
    daemon.states["a2"].last_run = clock.now  # a fresh result
    daemon._mark_stale()
    stale = sorted(c for c, s in daemon.states.items() if s.stale)
    assert stale == ["a0", "a1", "a3", "a4", "b1"]
