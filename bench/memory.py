"""Where the daemon's memory per check goes: tracemalloc and RSS step by step, in-process.

    python bench/memory.py --checks 10000

Steps, each measured as tracemalloc's traced bytes (Python allocations still alive) and RSS:
loading the config (pydantic models), the scheduler's jobs and check states, the daemon's
settle once ready (malloc thresholds, trim, freeze), states after 25 probe results each
(history, counters, numbers), and `--renders` /metrics renders with half the checks probed
again between them, each followed by the daemon's scrape-time trim (what stays afterwards).
Run it twice: with tracemalloc for the live bytes, with --no-trace for RSS (tracemalloc's
bookkeeping inflates RSS). Divided by N: KiB per check, SPEC §12 ≤ 6 KiB.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _use_project_venv() -> None:
    """`python bench/X.py` from outside the venv: re-run under the project's .venv python."""
    venv = HERE.parent / ".venv" / "bin" / "python"
    if venv.exists() and Path(sys.prefix).resolve() != venv.parent.parent.resolve():
        os.execv(str(venv), [str(venv), *sys.argv])


_use_project_venv()


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def write_config(path: Path, n: int) -> None:
    systems = max(1, n // 50)
    lines = ["systems:"] + [f"  - {{id: sys{s:04d}, name: System {s}}}" for s in range(systems)]
    lines.append("checks:")
    for i in range(n):
        if i % 2 == 0:
            lines.append(f"  - {{id: h{i:05d}, system: sys{i % systems:04d}, type: http, "
                         f"url: 'http://127.0.0.1:{10000 + i % 4}/health'}}")
        else:
            lines.append(f"  - {{id: t{i:05d}, system: sys{i % systems:04d}, type: tcp, "
                         f"host: 127.0.0.1, port: {20000 + i % 4}}}")
    path.write_text("\n".join(lines) + "\n")


async def main_async(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    sys.path.insert(0, str(args.repo.resolve()))
    import aiohttp  # noqa: F401  (imported by the daemon too: not per-check memory)

    from checks.base import ProbeContext
    from monitor.config.loader import load_config
    from monitor.core.result import Result, State
    from monitor.probing.scheduler import Scheduler
    from monitor.probing.state import advance
    from monitor.telemetry.metrics import Metrics, MetricsSource

    steps: list[tuple[str, int, int]] = []

    def mark(name: str) -> None:
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] if args.trace else 0
        steps.append((name, traced, rss_kib()))

    tmp = Path(tempfile.mkdtemp(prefix="hismon-mem-"))
    cfg = tmp / "hismon.yaml"
    write_config(cfg, args.checks)
    if args.trace:
        tracemalloc.start()
    mark("start (modules imported)")
    config = load_config(str(cfg))
    mark("config loaded")
    source = MetricsSource()
    metrics = Metrics(lambda: source)
    states: dict[str, Any] = {}
    source.states = states
    source.systems = [s.id for s in config.systems]
    scheduler = Scheduler(config, ProbeContext(), states, metrics, lambda s: None)
    scheduler.apply_config(config)  # jobs and states, not started: no run happens
    mark("scheduler jobs + check states")
    try:
        from monitor.runtime import memtrim
    except ImportError:  # a tree from before it existed (--repo)
        memtrim = None
    if memtrim is not None:
        memtrim.settle()  # what the daemon does once ready: malloc thresholds, trim, freeze
        mark("settled (as the daemon, ready)")
    now = time.time()
    for k in range(25):
        for cs in states.values():
            numbers = {"latency_seconds": 0.001 + k * 1e-6}
            if cs.type == "http":
                numbers["status_code"] = 200.0
            advance(cs, Result(State.OK, f"connected in {k} ms", duration=0.001 + k * 1e-6,
                               numbers=numbers), now + k, 3, 2)
    mark("after 25 results per check")
    for k in range(args.renders):
        body = await metrics.exposition()  # what GET /metrics does (per-check label cache too)
        del body
        if memtrim is not None:
            memtrim.trim(force=True)  # what the daemon's scrape does (at most every 5 s)
        mark(f"after /metrics render {k + 1}")
        for cs in list(states.values())[::2]:  # half the checks probed again in between
            advance(cs, Result(State.OK, "connected in 2 ms", duration=0.002,
                               numbers={"latency_seconds": 0.002}), now + 25 + k, 3, 2)
    if args.trim:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        mark("after malloc_trim(0)")
    scheduler.shutdown()
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checks", type=int, default=10000)
    parser.add_argument("--repo", type=Path, default=HERE.parent)
    parser.add_argument("--no-trace", dest="trace", action="store_false",
                        help="RSS only (tracemalloc's own bookkeeping inflates RSS)")
    parser.add_argument("--trim", action="store_true", help="end with glibc malloc_trim(0)")
    parser.add_argument("--renders", type=int, default=3,
                        help="/metrics renders, half the checks probed again between them")
    args = parser.parse_args()
    steps = asyncio.run(main_async(args))
    n = args.checks
    print(f"memory per check, {n} checks (half HTTP, half TCP); tracemalloc = live Python "
          "allocations")
    print(f"  {'step':<32} {'traced KiB/check':>17} {'RSS KiB/check':>14}   "
          f"{'Δ traced':>9} {'Δ RSS':>8}")
    prev_t, prev_r = steps[0][1], steps[0][2]
    base_t, base_r = prev_t, prev_r
    for name, traced, rss in steps:
        print(f"  {name:<32} {(traced - base_t) / 1024 / n:>17.2f} {(rss - base_r) / n:>14.2f}"
              f"   {(traced - prev_t) / 1024 / n:>9.2f} {(rss - prev_r) / n:>8.2f}")
        prev_t, prev_r = traced, rss
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
