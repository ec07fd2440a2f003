"""Run one probe safely: the runner owns timeout, timing and turning surprises into UNKNOWN.

This is the only place that catches a probe's exceptions, so that check modules stay small
and a bug in one of them can never take the daemon down.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from checks.base import DEFAULT_TIMEOUT, CheckBase, ProbeContext
from monitor.core.durations import format_duration
from monitor.core.result import Result, State
from monitor.core.types import Cause

log = structlog.get_logger("hismon.runner")


async def run_probe(check: CheckBase, ctx: ProbeContext) -> Result:
    """Probe `check` within its timeout; never raises (except cancellation of the caller)."""
    timeout = check.timeout or DEFAULT_TIMEOUT
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            result = await check.probe(ctx)
    except TimeoutError:
        result = Result(State.CRIT, f"timeout after {format_duration(timeout)}",
                        cause=Cause.TIMEOUT)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a probe bug or driver surprise must not crash the daemon
        log.warning("probe_error", check=check.id, system=check.system, error=repr(exc)[:300])
        result = Result(State.UNKNOWN, f"probe error: {type(exc).__name__}: {str(exc)[:200]}")
    result.duration = time.perf_counter() - started
    # The last line of defence: no result shows a secret hismon knows, whatever the probe
    # (or the plugin, the driver, the target echoing it) put into the text.
    result.message = check.scrub(result.message)
    return result
