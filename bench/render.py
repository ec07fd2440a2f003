"""/metrics with N checks: the daemon's render against prometheus_client's own objects.

    python bench/render.py --checks 10000

Builds N check states the way the daemon does (monitor.probing.state.advance on probe-like results),
then measures, in one process:

1. `Metrics.exposition()`: what `GET /metrics` does (per-check lines from cached label
   strings, on the loop in slices; `monitor/telemetry/metrics.py`);
2. the same per-check families built as prometheus_client metric families and rendered by
   `generate_latest` in a thread (what the daemon did before), as the reference;
3. how late a 1 ms loop timer (like the scheduler's) runs while each is rendered.

`tests/test_metrics.py` asserts that both give the same samples.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _use_project_venv() -> None:
    """`python bench/X.py` from outside the venv: re-run under the project's .venv python."""
    venv = HERE.parent / ".venv" / "bin" / "python"
    if venv.exists() and Path(sys.prefix).resolve() != venv.parent.parent.resolve():
        os.execv(str(venv), [str(venv), *sys.argv])


_use_project_venv()


def build(n: int, repo: Path) -> tuple[Any, Any]:
    sys.path.insert(0, str(repo.resolve()))
    from monitor.core.result import Result, State
    from monitor.probing.state import CheckState, advance
    from monitor.telemetry.metrics import Metrics, MetricsSource

    src = MetricsSource()
    systems = max(1, n // 50)
    now = time.time()
    for i in range(n):
        http = i % 2 == 0
        cs = CheckState(f"{'h' if http else 't'}{i:05d}", f"sys{i % systems:04d}",
                        "http" if http else "tcp")
        numbers = ({"latency_seconds": 0.0011 + i * 1e-9, "status_code": 200.0} if http
                   else {"latency_seconds": 0.00021 + i * 1e-9})
        for k in range(3):
            advance(cs, Result(State.OK, "OK", duration=0.0012 + k * 1e-7 + i * 1e-9,
                               numbers=dict(numbers)), now + k, 3, 2)
        src.states[cs.check_id] = cs
    src.systems = [f"sys{i:04d}" for i in range(systems)]
    metrics = Metrics(lambda: src)
    metrics.scheduler_lag.observe(0.001)
    metrics.probe_duration.labels("http").observe(0.001)
    return metrics, src


# ---- loop lateness while rendering --------------------------------------------------------

async def lateness(render: Any) -> dict[str, float]:
    """Run a 1 ms ticker while `render()` runs; report how late its ticks were (ms)."""
    loop = asyncio.get_running_loop()
    late: list[float] = []
    stop = False

    async def ticker() -> None:
        while not stop:
            due = loop.time() + 0.001
            await asyncio.sleep(0.001)
            late.append((loop.time() - due) * 1000)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    late.clear()
    t0 = time.perf_counter()
    await render()
    took = (time.perf_counter() - t0) * 1000
    stop = True
    await task
    late.sort()
    return {"render_ms": round(took, 1), "ticks": len(late),
            "late_p99_ms": round(late[int(len(late) * 0.99) - 1], 2) if late else 0.0,
            "late_max_ms": round(late[-1], 2) if late else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checks", type=int, default=10000)
    parser.add_argument("--repo", type=Path, default=HERE.parent)
    args = parser.parse_args()
    metrics, src = build(args.checks, args.repo)
    sys.path.insert(0, str(args.repo.resolve()))
    from prometheus_client import CollectorRegistry, generate_latest

    from tests.test_metrics import Reference

    reference = CollectorRegistry(auto_describe=False)
    reference.register(Reference(src))

    async def measure() -> tuple[list[float], list[float], dict[str, float], dict[str, float]]:
        ours, theirs = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            await metrics.exposition()
            ours.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            generate_latest(reference)
            theirs.append((time.perf_counter() - t0) * 1000)
        a = await lateness(metrics.exposition)
        b = await lateness(lambda: asyncio.to_thread(generate_latest, reference))
        return ours, theirs, a, b

    ours, theirs, a, b = asyncio.run(measure())
    print(f"/metrics with {args.checks} checks")
    print(f"  Metrics.exposition (daemon)      median {statistics.median(ours):7.1f} ms; "
          f"1 ms ticker late p99 {a['late_p99_ms']} ms, max {a['late_max_ms']} ms")
    print(f"  prometheus_client families only  median {statistics.median(theirs):7.1f} ms; "
          f"in a thread: ticker late p99 {b['late_p99_ms']} ms, max {b['late_max_ms']} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
