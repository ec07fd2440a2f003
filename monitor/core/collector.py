"""The cyclic garbage collector paused while a burst of long-lived objects is made.

Loading a config allocates a YAML node per value, then the merged data, then a model per
check; applying it to the scheduler makes a state and a job per check. Nearly all of it lives
on, so every collection those allocations trigger finds no garbage, and each full one walks
the whole grown heap again: at 10,000 checks that was ~60% of a load (3.5 s -> 1.4 s CPU
without it, bench/config_load.py) and ~0.4 s of applying it. Whatever cycles such a burst
leaves are collected once the collector is back on.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """`gc` off inside the block, back on after it (if it was on).

    The switch is process-wide: a reload in a worker thread pauses it for the loop too, for
    the second a load takes, which only delays collections. Nested or concurrent pauses
    never leave it off: only the outermost one that found it on turns it back on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
