"""Run one probe safely: the runner owns timeout, timing and turning surprises into UNKNOWN.

This is the only place that catches a probe's exceptions, so that check modules stay small
and a bug in one of them can never take the daemon down. It is also the one place that tells
hismon's own resource exhaustion (out of file descriptors, socket buffers) from the target's
failure: such a result is UNKNOWN with `own_fault` set and judges nothing (SPEC 9,
monitor/core/exhaustion.py). So is a failure whose time limit expired while the loop was
held up (`own_fault="loop"`): a starved daemon must not page anyone about healthy targets.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from checks.base import (
    DEFAULT_TIMEOUT,
    FIRST_LOOK,
    PROBE_DEADLINE,
    CheckBase,
    Deadline,
    ProbeContext,
)
from monitor.core.durations import format_duration
from monitor.core.exhaustion import (
    EXHAUSTION_ERRNOS,
    RESOURCE_WORDS,
    WITNESSED,
    FdUsage,
    exhaustion_error,
    fd_usage,
    late_limit,
)
from monitor.core.result import Result, State
from monitor.core.types import Cause

log = structlog.get_logger("hismon.runner")


async def run_probe(check: CheckBase, ctx: ProbeContext) -> Result:
    """Probe `check` within its timeout; never raises (except cancellation of the caller)."""
    timeout = check.timeout or DEFAULT_TIMEOUT
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("run_probe() must be awaited inside a task")
    now = loop.time()
    # One timer for the probe's timeout and every limit the check sets inside it
    # (checks.base.within): a timer per limit cost more than the state machine.
    deadline = Deadline(loop, task, now + timeout * FIRST_LOOK)
    witnessed: list[BaseException] = []
    token = WITNESSED.set(witnessed)
    deadline_token = PROBE_DEADLINE.set(deadline)
    try:
        with deadline.limit(now + timeout):
            result = await check.probe(ctx)
    except TimeoutError:
        result = Result(State.CRIT, f"timeout after {format_duration(timeout)}",
                        cause=Cause.TIMEOUT)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a probe bug or driver surprise must not crash the daemon
        witnessed.append(exc)
        result = Result(State.UNKNOWN, f"probe error: {type(exc).__name__}: {str(exc)[:200]}")
        if exhaustion_error([exc]) is None:
            log.warning("probe_error", check=check.id, system=check.system,
                        error=repr(exc)[:300])
    finally:
        PROBE_DEADLINE.reset(deadline_token)
        WITNESSED.reset(token)
        deadline.close()  # (closed already, unless the limit was never entered)
    if result.state is not State.OK:
        if deadline.late >= late_limit(timeout):
            result = _overloaded(check, ctx, deadline.late)
        else:
            result = _own_fault(check, ctx, result, witnessed)
    result.duration = time.perf_counter() - started
    # The last line of defence: no result shows a secret hismon knows, whatever the probe
    # (or the plugin, the driver, the target echoing it) put into the text.
    result.message = check.scrub(result.message)
    return result


def _overloaded(check: CheckBase, ctx: ProbeContext, late: float) -> Result:
    """The UNKNOWN of a probe whose time limit expired while hismon's loop was held up.

    Its failure says nothing about the target: the answer may have sat unread in the socket
    while the loop was busy (SPEC 12: overload shows as lag and missed runs, never as false
    failures). Like running out of descriptors, it judges nothing and tells IT (self-alert
    `exhausted:loop`, `hismon_probe_resource_errors_total{resource="loop"}`).
    """
    message = (f"not judged: hismon's event loop was {format_duration(late)} late at this "
               "probe's time limit (hismon overloaded); this says nothing about the target")
    count = ctx.exhaustion.record("loop", None, time.time())
    if count:
        log.error("probe_own_fault", check=check.id, system=check.system, resource="loop",
                  late_seconds=round(late, 3), results=count,
                  hint="hismon is short of CPU: give it more or probe less often")
    return Result(State.UNKNOWN, message, own_fault="loop")


def _own_fault(check: CheckBase, ctx: ProbeContext, result: Result,
               witnessed: list[BaseException]) -> Result:
    """`result`, or the UNKNOWN that says hismon itself ran out of a resource."""
    error = exhaustion_error(witnessed)
    usage: FdUsage | None = None
    if error is not None:
        what = EXHAUSTION_ERRNOS[error.errno or 0]
        reason = error.strerror or str(error)
        if what == "fd":
            usage = fd_usage()
    else:
        # No OSError to show for it: a driver written in C (libpq says "connection is bad:
        # no error message available", or "could not create socket: Too many open files").
        # Ours only if this process is at its limit now; a database server that answers
        # "Too many open files" about itself stays the target's failure.
        usage = ctx.exhaustion.usage_now()
        if not usage.exhausted:
            return result
        what, reason = "fd", "at its descriptor limit"
    held = f", {usage.describe()}" if usage is not None else ""
    message = (f"not judged: hismon itself is out of {RESOURCE_WORDS[what]} ({reason}{held}); "
               "this says nothing about the target")
    count = ctx.exhaustion.record(what, usage, time.time())
    if count:
        log.error("probe_own_fault", check=check.id, system=check.system, resource=what,
                  reason=reason, usage=usage.describe() if usage else None, results=count,
                  hint="raise LimitNOFILE (systemd) or ulimit -n, or find what holds them")
    return Result(State.UNKNOWN, message, own_fault=what)
