"""Which event loop the daemon runs on: uvloop where it is installed, asyncio's own otherwise.

At 1,000 probes/s the loop itself is a large share of hismon's CPU: every probe is a
connection, a few callbacks, a timer and a task. uvloop (libuv, the loop Node.js uses) does
that work in C: a bare new-connection HTTP exchange costs ~86 µs of CPU on it against
~193 µs on asyncio's selector loop, and a TCP connect through a Protocol ~58 µs against
~104 µs (bench/clients.py, bench/README.md). Nothing in hismon depends on which loop runs it;
`HISMON_LOOP=asyncio` in the daemon's environment chooses asyncio's loop (for a platform
without uvloop, or to rule the loop out when chasing a problem), and the test suite runs the
real daemon on both.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

ENV = "HISMON_LOOP"


def wanted() -> str:
    """`uvloop` or `asyncio`: what the environment asks for (uvloop unless told otherwise)."""
    value = os.environ.get(ENV, "uvloop").strip().lower()
    return "asyncio" if value in ("asyncio", "default", "0", "no", "false") else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on uvloop if it is wanted and installed."""
    if wanted() == "uvloop":
        try:
            import uvloop
        except ImportError:  # an optional speed-up: its absence is not an error
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """`uvloop` or `asyncio`: what the running (or given) loop is, for logs and metrics."""
    loop = loop or asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
