"""Trend early warnings: latency against the check's own baseline, and failure ratio."""

from __future__ import annotations

from checks.base import TrendConfig
from monitor.core.result import Result, State
from monitor.probing.runner import run_probe
from monitor.probing.trend import TrendTracker
from tests.conftest import HttpTarget
from tests.probe_helpers import make_check


def ok(latency: float) -> Result:
    return Result(State.OK, "HTTP 200", numbers={"latency_seconds": latency})


def crit(cause: str = "network") -> Result:
    return Result(State.CRIT, "connection refused 10.1.2.3:443", cause=cause)


def tracker(**config: object) -> TrendTracker:
    return TrendTracker(TrendConfig.model_validate({"window": 5, "baseline": 10, **config}))


def test_no_warning_before_the_baseline_is_complete() -> None:
    """A check that starts slow has no baseline to be compared with yet."""
    trend = tracker()
    results = [trend.observe(ok(1.0 if i > 4 else 0.05)) for i in range(14)]
    assert all(r.state is State.OK for r in results)
    assert trend.baseline_median is None


def test_a_slowdown_against_the_baseline_warns() -> None:
    trend = tracker(latency_factor=3)
    for _ in range(10):
        assert trend.observe(ok(0.050)).state is State.OK
    states = [trend.observe(ok(0.200)).state for _ in range(5)]
    assert states[-1] is State.WARN
    assert states[:3] == [State.OK] * 3  # mean of the window is still under 3x
    warned = trend.observe(ok(0.200))
    assert warned.message.startswith("HTTP 200; trend: mean latency 200ms over the last 5 "
                                     "probes is 4.0x the usual 50ms")
    assert warned.cause == "latency"  # SPEC §4: a latency trend is not capacity
    assert warned.numbers == {"latency_seconds": 0.2}


def test_the_input_result_is_never_mutated() -> None:
    trend = tracker(latency_factor=2)
    for _ in range(10):
        trend.observe(ok(0.05))
    for _ in range(4):
        trend.observe(ok(0.5))
    original = ok(0.5)
    degraded = trend.observe(original)
    assert degraded.state is State.WARN
    assert original.state is State.OK
    assert original.message == "HTTP 200"


def test_microsecond_jitter_on_a_fast_baseline_is_not_a_trend() -> None:
    """0.3 ms → 1.2 ms is 4x, but below the 5 ms floor: no warning."""
    trend = tracker(latency_factor=3)
    for _ in range(10):
        trend.observe(ok(0.0003))
    assert all(trend.observe(ok(0.0012)).state is State.OK for _ in range(10))


def test_intermittent_failures_warn_through_the_ratio() -> None:
    trend = tracker(latency_factor=None, failure_ratio=0.3)
    for result in (ok(0.05), crit(), ok(0.05), crit("timeout"), crit()):
        trend.observe(result)
    warned = trend.observe(ok(0.05))  # window now: fail, ok, fail, fail, ok → 3/5
    assert warned.state is State.WARN
    assert warned.message == "HTTP 200; trend: 3 of the last 5 probes failed (60% > 30%)"
    assert warned.cause == "network"


def test_failures_are_left_alone_and_warn_results_do_not_count_as_failures() -> None:
    trend = tracker(failure_ratio=0.2)
    failing = crit()
    assert trend.observe(failing) is failing
    slow = Result(State.WARN, "slow", numbers={"latency_seconds": 1})
    for _ in range(5):
        assert trend.observe(slow).state is State.WARN
    assert trend.observe(ok(0.05)).state is State.OK  # window: 4 WARN + 1 OK, no failures


def test_failed_probes_do_not_pollute_the_latency_baseline() -> None:
    """Timeouts (5 s) in the history must not make a real slowdown look normal."""
    trend = tracker(latency_factor=3)
    for i in range(30):
        trend.observe(ok(0.05) if i % 2 else Result(State.CRIT, "timeout after 5s",
                                                      duration=5.0))
    assert trend.baseline_median == 0.05


def test_a_lasting_slowdown_keeps_warning_then_becomes_the_new_normal() -> None:
    trend = tracker(latency_factor=3)
    for _ in range(15):
        trend.observe(ok(0.05))
    states = [trend.observe(ok(0.5)).state for _ in range(40)]
    first = states.index(State.WARN)
    assert first <= 4
    held = states[first:first + 12]
    assert held == [State.WARN] * 12, "the baseline must not absorb the slowdown at once"
    assert states[-1] is State.OK, "a permanent change is accepted after ~1.5 x baseline"


def test_the_warning_clears_when_latency_returns_to_normal() -> None:
    trend = tracker(latency_factor=3)
    for _ in range(10):
        trend.observe(ok(0.05))
    for _ in range(5):
        trend.observe(ok(0.5))
    assert trend.observe(ok(0.5)).state is State.WARN
    for _ in range(4):
        trend.observe(ok(0.05))
    assert trend.observe(ok(0.05)).state is State.OK


async def test_a_target_that_slows_down_step_by_step_warns_before_any_threshold(
    http_target: HttpTarget,
) -> None:
    """A real HTTP target gets slower every few probes; the trend warns long before the
    check's own latency CRIT (1 s) would fire, and never while it is stable."""
    from checks.base import ProbeContext

    check = make_check({
        "type": "http", "url": http_target.url, "timeout": "3s",
        "expect": {"latency": {"crit": "1s"}},
        "trend": {"window": 5, "baseline": 10, "latency_factor": 2},
    })
    assert check.trend is not None
    trend = TrendTracker(check.trend)
    ctx = ProbeContext()
    seen: list[tuple[float, Result]] = []
    try:
        for delay in [0.02] * 15 + [0.03] * 5 + [0.04] * 5 + [0.06] * 5 + [0.09] * 5 + \
                [0.14] * 5 + [0.2] * 5:
            http_target.delay = delay
            seen.append((delay, trend.observe(await run_probe(check, ctx))))
    finally:
        await ctx.close()
    assert all(r.state is State.OK for _, r in seen[:15]), "warned while stable"
    first = next(i for i, (_, r) in enumerate(seen) if r.state is State.WARN)
    delay, warned = seen[first]
    assert all(r.state is State.WARN for _, r in seen[first + 1:]), \
        "the warning must stay up while the target keeps slowing down"
    assert "trend: mean latency" in warned.message
    assert delay < 0.2, "the trend should warn well before the 1 s threshold"
    assert all(r.state is not State.CRIT for _, r in seen)
