"""One timer per probe (checks.base.Deadline): the runner's timeout and the check's own limits
behave exactly as the nested `asyncio.timeout`s they replace."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import pytest

from checks.base import PROBE_DEADLINE, CheckBase, Deadline, ProbeContext, within
from monitor.core.result import Result, State
from monitor.core.types import Cause
from monitor.probing.runner import run_probe

pytestmark = pytest.mark.both_loops  # the daemon probes on uvloop by default


def _deadline(first_look: float = float("inf")) -> tuple[Deadline, float]:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    return Deadline(loop, task, first_look), loop.time()


async def test_a_limit_cuts_its_block_off_with_timeout_error() -> None:
    deadline, now = _deadline()
    with pytest.raises(TimeoutError):
        with deadline.limit(now + 0.05):
            await asyncio.Event().wait()
    assert deadline.armed_at == float("inf"), "no timer left behind"


async def test_nested_limits_of_a_probe_that_ends_early_share_the_first_timer() -> None:
    """Entering the check's budget and its connect limit arms nothing new: the one timer
    set at `first_look` watches them all, and leaving the outermost cancels it."""
    deadline, now = _deadline(first_look=1000.0 + asyncio.get_running_loop().time())
    first_look = deadline.armed_at
    with deadline.limit(now + 2000), deadline.limit(now + 1800), deadline.limit(now + 1620):
        await asyncio.sleep(0)
        assert deadline.armed_at == first_look
    assert deadline.armed_at == float("inf")


async def test_the_timer_looks_again_at_first_look_and_expires_the_limit_in_force() -> None:
    deadline, now = _deadline(first_look=asyncio.get_running_loop().time() + 0.02)
    with pytest.raises(TimeoutError):
        with deadline.limit(now + 0.06):
            await asyncio.Event().wait()


async def test_a_handled_inner_limit_leaves_the_outer_one_watching() -> None:
    """tcp's pattern: a quiet gap ends a read, the probe goes on, the budget still holds."""
    deadline, now = _deadline()
    seen = []
    with pytest.raises(TimeoutError):
        with deadline.limit(now + 0.2):
            try:
                with deadline.limit(now + 0.03):
                    await asyncio.Event().wait()
            except TimeoutError:
                seen.append("inner")
            await asyncio.Event().wait()
    assert seen == ["inner"]


async def test_an_inner_limit_shorter_than_the_armed_timer_rearms_it() -> None:
    deadline, now = _deadline(first_look=asyncio.get_running_loop().time() + 1000)
    with deadline.limit(now + 2000):
        with pytest.raises(TimeoutError), deadline.limit(now + 0.03):
            await asyncio.Event().wait()
        assert deadline.armed_at == now + 2000, "and then watches the limit around it"


async def test_the_outermost_passed_limit_wins_when_the_loop_was_held_up() -> None:
    """As with nested asyncio.timeouts: the inner limit does not claim the cancellation."""
    deadline, now = _deadline()
    caught = []
    try:
        with deadline.limit(now + 0.05):
            try:
                with deadline.limit(now + 0.02):
                    time.sleep(0.1)  # noqa: ASYNC251 - the loop held up past both limits
                    await asyncio.Event().wait()
            except TimeoutError:
                caught.append("inner")
                raise
    except TimeoutError:
        caught.append("outer")
    assert caught == ["outer"]


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    started = asyncio.Event()

    async def probe_like() -> None:
        deadline, now = _deadline()
        with deadline.limit(now + 100):
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(probe_like())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_within_in_a_task_the_probe_started_gets_a_timer_of_its_own() -> None:
    """Sub-tasks inherit the probe's context, not its task: their limits cut them off, and
    the probe's own deadline is left alone."""
    deadline, now = _deadline()
    token = PROBE_DEADLINE.set(deadline)
    try:
        with deadline.limit(now + 100):
            async def child() -> str:
                try:
                    with within(0.03):
                        await asyncio.Event().wait()
                except TimeoutError:
                    return "cut off"
                return "not cut off"

            assert await asyncio.create_task(child()) == "cut off"
            assert deadline.armed_at == now + 100
    finally:
        PROBE_DEADLINE.reset(token)


class _Hanging(CheckBase):
    """A probe that never ends and never looks at its budget."""

    type: Literal["hanging"]
    inner_asyncio_timeout: float | None = None

    async def probe(self, ctx: ProbeContext) -> Result:
        if self.inner_asyncio_timeout is not None:
            try:
                async with asyncio.timeout(self.inner_asyncio_timeout):
                    await asyncio.Event().wait()
            except TimeoutError:
                return Result(State.WARN, "its own asyncio.timeout")
        async with asyncio.timeout(100):  # another check type's own timer, far away
            await asyncio.Event().wait()
        return Result(State.OK, "never")


async def test_the_runner_times_out_a_probe_that_ignores_its_budget() -> None:
    ctx = ProbeContext()
    try:
        result = await run_probe(_Hanging(id="h", system="s", type="hanging", timeout="200ms"), ctx)
    finally:
        await ctx.close()
    assert (result.state, result.message, result.cause) == (
        State.CRIT, "timeout after 200ms", Cause.TIMEOUT)


async def test_a_check_s_own_asyncio_timeout_inside_the_runner_s_deadline_is_its_own() -> None:
    ctx = ProbeContext()
    try:
        result = await run_probe(_Hanging(id="h", system="s", type="hanging", timeout="5s",
                                          inner_asyncio_timeout=0.03), ctx)
    finally:
        await ctx.close()
    assert (result.state, result.message) == (State.WARN, "its own asyncio.timeout")
