"""Soft/hard states and flapping, driven by results and a fake clock."""

from __future__ import annotations

from monitor.core.result import Result, State
from monitor.probing.state import CheckState, advance


def feed(cs: CheckState, states: list[State], start: float = 1000.0, step: float = 5.0,
         confirm: int = 3, recover: int = 2) -> list[bool]:
    """Feed results; return for each whether the hard state changed."""
    changed = []
    for i, state in enumerate(states):
        change = advance(cs, Result(state, state.name), start + i * step, confirm, recover)
        changed.append(change.hard_changed)
    return changed


def test_a_failure_becomes_hard_only_after_confirm_equal_results() -> None:
    cs = CheckState("c", "s", "http")
    changed = feed(cs, [State.CRIT, State.CRIT])
    assert cs.state is State.CRIT and not cs.hard and cs.hard_state is State.OK
    assert cs.unconfirmed and changed == [False, False]
    changed = feed(cs, [State.CRIT], start=1010.0)
    assert cs.hard and cs.hard_state is State.CRIT and changed == [True]


def test_the_outage_starts_at_the_first_failed_probe_not_at_confirmation() -> None:
    cs = CheckState("c", "s", "http")
    feed(cs, [State.OK, State.CRIT, State.CRIT, State.CRIT], start=1000.0, step=5.0)
    assert cs.first_failure_at == 1005.0
    assert cs.last_hard_change == 1015.0


def test_a_single_ok_clears_a_soft_failure_without_any_hard_change() -> None:
    cs = CheckState("c", "s", "http")
    changed = feed(cs, [State.CRIT, State.CRIT, State.OK, State.CRIT, State.CRIT])
    assert not any(changed)
    assert cs.hard_state is State.OK


def test_different_non_ok_states_restart_the_count() -> None:
    cs = CheckState("c", "s", "http")
    feed(cs, [State.WARN, State.WARN, State.CRIT, State.CRIT])
    assert cs.hard_state is State.OK
    feed(cs, [State.CRIT], start=1100.0)
    assert cs.hard_state is State.CRIT


def test_hard_failure_clears_after_recover_oks_and_records_when_recovery_began() -> None:
    cs = CheckState("c", "s", "tcp")
    feed(cs, [State.CRIT] * 3)
    changed = feed(cs, [State.OK], start=2000.0)
    assert changed == [False] and cs.failing and not cs.hard
    changed = feed(cs, [State.OK], start=2005.0)
    assert changed == [True] and not cs.failing
    assert cs.recovered_at == 2000.0


def test_a_warning_check_that_gets_worse_becomes_hard_crit() -> None:
    cs = CheckState("c", "s", "http")
    feed(cs, [State.WARN] * 3)
    assert cs.hard_state is State.WARN
    changed = feed(cs, [State.CRIT] * 3, start=2000.0)
    assert changed == [False, False, True] and cs.hard_state is State.CRIT


def test_flapping_is_detected_and_settles_with_hysteresis() -> None:
    cs = CheckState("c", "s", "http")
    feed(cs, [State.OK, State.CRIT] * 8)
    assert cs.flapping and cs.flap_percent > 50
    feed(cs, [State.OK] * 21, start=5000.0)
    assert not cs.flapping and cs.flap_percent == 0


def test_runs_are_counted_per_result() -> None:
    cs = CheckState("c", "s", "http")
    feed(cs, [State.OK, State.CRIT, State.OK, State.UNKNOWN])
    assert cs.runs == {"OK": 2, "CRIT": 1, "UNKNOWN": 1}


def _feed(states: list[State], start: float = 0.0) -> tuple[CheckState, list[bool]]:
    cs = CheckState("c", "s", "http")
    changes = []
    for i, state in enumerate(states):
        changes.append(advance(cs, Result(state, state.name), start + i, 3, 2).unstable_changed)
    return cs, changes


def test_a_check_failing_every_other_probe_is_unstable_from_its_first_counted_failure() -> None:
    cs, changes = _feed([State.OK, State.CRIT] * 7)
    assert cs.unstable and cs.hard_state is State.OK, "never 3 in a row: no hard failure"
    assert cs.unstable_since == 1.0 and cs.unstable_state is State.CRIT
    assert changes.count(True) == 1


def test_one_blip_or_one_long_outage_is_never_unstable() -> None:
    blip, _ = _feed([State.OK] * 5 + [State.CRIT] + [State.OK] * 15)
    assert not blip.unstable
    outage, _ = _feed([State.OK] * 3 + [State.CRIT] * 15)
    assert not outage.unstable and outage.hard_state is State.CRIT


def test_an_unstable_check_settles_at_three_failures_in_twenty_one() -> None:
    cs, _ = _feed([State.OK, State.WARN] * 7 + [State.OK] * 16)
    assert not cs.unstable and cs.unstable_since is None
    still, _ = _feed([State.OK, State.WARN] * 7 + [State.OK] * 10)
    assert still.unstable and still.unstable_state is State.WARN


def test_a_check_without_a_fresh_result_is_stale_and_keeps_its_last_state() -> None:
    from monitor.probing.state import mark_stale, stale_after

    assert stale_after(30, 5) == 90 and stale_after(1, 5) == 16
    cs = CheckState("c", "s", "http")
    assert not mark_stale(cs, 30, 5, 1000.0), "never probed: nothing to be old"
    for i in range(3):
        advance(cs, Result(State.CRIT, "down"), 100.0 + i, 3, 2)
    assert not mark_stale(cs, 30, 5, 190.0) and not cs.stale
    assert mark_stale(cs, 30, 5, 193.0) and cs.stale
    assert cs.hard_state is State.CRIT, "the last hard state stays"
    advance(cs, Result(State.CRIT, "down"), 194.0, 3, 2)
    assert mark_stale(cs, 30, 5, 194.0) and not cs.stale
