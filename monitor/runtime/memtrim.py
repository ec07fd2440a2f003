"""Give freed heap memory back to the OS (glibc `malloc_trim`, fixed malloc thresholds).

Loading a large YAML config and rendering `/metrics` create many short-lived objects; glibc
keeps the freed pages, so RSS stays at the high-water mark although live objects are about
4 KiB per check. Trimming after start-up and after scrapes keeps RSS near the live size
(SPEC §12: ≤ 6 KiB per configured check). Elsewhere than glibc it does nothing.

glibc also raises its mmap threshold to the size of any mmapped block freed (up to 32 MiB),
and its trim threshold to twice that: after the first `/metrics` body (4.9 MB at 10,000
checks) is freed, every later body and every render slice comes from the heap, and up to
~10 MB of freed heap stays in RSS between scrapes (~1 KiB per check, bench/memory.py).
`settle()` pins both thresholds at glibc's own starting values, which also turns that
adjustment off: a block of 128 KiB or more is always its own mapping, unmapped when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import time

_libc = None
_last = 0.0
MIN_GAP = 5.0
"""Seconds between trims after scrapes: a trim walks the heap (~0.5 ms at 10,000 checks)."""

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""glibc's `mallopt` parameters (malloc.h)."""
MMAP_THRESHOLD = 128 * 1024
"""Blocks this large or larger get their own mapping: glibc's default before it adapts."""
TRIM_THRESHOLD = 128 * 1024
"""Free memory above this at the top of the heap goes back to the OS on `free`: glibc's
default before it adapts."""


def _load() -> object | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name) if name else None
        except OSError:
            libc = None
        _libc = libc if libc is not None and hasattr(libc, "malloc_trim") else False
    return _libc or None


def fix_thresholds() -> bool:
    """Pin glibc's mmap and trim thresholds (no adaptation to freed blocks); True if set."""
    libc = _load()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    ok &= libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return bool(ok)


FULL_PASS_EVERY = 200
"""Collections of the middle generation per full one (CPython's default: 10).

After `gc.freeze()` the old generation holds only what was made since, so CPython's rule
(a full pass once it grew by a quarter) fired every 2-5 s at 1,000 probes/s, and each pass
held the loop 20-42 ms: those passes were the whole scheduler lag p99 at 10,000 checks
(bench/run.py --stalls). At 200 a full pass comes about once a minute; what probes leave
is freed by reference counting, and the rare cycles wait that long."""


def settle() -> None:
    """After start-up: pin the malloc thresholds, move the long-lived objects (config,
    states, jobs) out of the cyclic collector's sight, so full collections stop walking
    10,000 checks' worth of objects in the middle of probing, make full collections rare
    (`FULL_PASS_EVERY`), then trim.

    Only the young generations are collected first: start-up leaves ~100 unreachable objects
    in the old one (a few KiB, frozen with the rest), and the full collection of
    every start-up object took 0.13-0.3 s at 10,000 checks, 0.4 s at 50,000, before
    `/readyz` could answer."""
    global _last
    _last = time.monotonic()
    fix_thresholds()
    gc.collect(1)
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_PASS_EVERY)
    libc = _load()
    if libc is not None:
        libc.malloc_trim(0)  # type: ignore[attr-defined]


def trim(force: bool = False) -> bool:
    """Return free heap pages to the OS; True if it ran.

    No garbage collection here: after `gc.freeze()` a full collection still costs ~20 ms of
    the loop at 10,000 checks (what a scrape leaves is freed by reference counting anyway).
    """
    global _last
    now = time.monotonic()
    if not force and now - _last < MIN_GAP:
        return False
    libc = _load()
    if libc is None:
        return False
    _last = now
    libc.malloc_trim(0)  # type: ignore[attr-defined]
    return True
