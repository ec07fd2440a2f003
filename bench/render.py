"""/metrics with N checks: the daemon's render against prometheus_client's own objects.

    python bench/render.py --checks 10000 [--changed 0.5] [--rounds 7] [--repo DIR]

Builds N check states the way the daemon does (monitor.probing.state.advance on probe-like results),
then measures, in one process:

1. `Metrics.exposition()`: what `GET /metrics` does (`monitor/telemetry/metrics.py`);
   before each render `--changed` of the checks get a new result (new duration, counts), as
   between two scrapes 5 s apart with a 10 s interval, so texts cached from the last scrape
   are only reused where a real scrape could reuse them;
2. the same per-check and per-system families built as prometheus_client metric families and
   rendered by `generate_latest` (what the daemon did before), as the reference;
3. how late a 1 ms loop timer (like the scheduler's) runs while each is rendered.

`--repo DIR` measures another tree (e.g. `sh bench/snapshot.sh /tmp/before COMMIT`): run it
alternately with this tree for a before/after on a loaded machine.
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


def probe_again(src: Any, fraction: float, round_no: int, repo: Path) -> None:
    """Give `fraction` of the checks one more OK result (a different slice each round)."""
    sys.path.insert(0, str(repo.resolve()))
    from monitor.core.result import Result, State
    from monitor.probing.state import advance

    states = list(src.states.values())
    step = max(1, round(1 / fraction)) if fraction > 0 else 0
    if not step:
        return
    now = time.time() + round_no
    for i, cs in enumerate(states[round_no % step::step]):
        advance(cs, Result(State.OK, "OK", duration=0.0013 + (round_no * 7 + i) * 1e-9,
                           numbers=dict(cs.numbers)), now, 3, 2)


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
    import gc

    gc.collect()
    gc.freeze()  # as the daemon does after start-up (monitor/runtime/memtrim.settle)
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
    parser.add_argument("--changed", type=float, default=0.5,
                        help="share of checks probed again between two renders (0.5)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-reference", action="store_true",
                        help="skip prometheus_client's render (slow: ~10 µs a sample)")
    parser.add_argument("--repo", type=Path, default=HERE.parent)
    args = parser.parse_args()
    metrics, src = build(args.checks, args.repo)
    sys.path.insert(0, str(args.repo.resolve()))
    from prometheus_client import CollectorRegistry, generate_latest

    from tests.test_metrics import Reference

    reference = CollectorRegistry(auto_describe=False)
    reference.register(Reference(src))
    size = 0
    first: dict[str, float] = {}

    async def measure() -> tuple[list[float], list[float], list[dict[str, float]],
                                 dict[str, float]]:
        nonlocal size
        ours, theirs, late = [], [], []
        t0, c0 = time.perf_counter(), time.process_time()
        size = len(await metrics.exposition())  # the first scrape fills the label caches
        first.update(ms=(time.perf_counter() - t0) * 1000, cpu=(time.process_time() - c0) * 1000)
        for round_no in range(args.rounds):
            probe_again(src, args.changed, round_no, args.repo)
            t0 = time.perf_counter()
            await metrics.exposition()
            ours.append((time.perf_counter() - t0) * 1000)
            probe_again(src, args.changed, round_no, args.repo)
            late.append(await lateness(metrics.exposition))
            if not args.no_reference and round_no < 3:
                t0 = time.perf_counter()
                generate_latest(reference)
                theirs.append((time.perf_counter() - t0) * 1000)
        b = ({} if args.no_reference
             else await lateness(lambda: asyncio.to_thread(generate_latest, reference)))
        return ours, theirs, late, b

    ours, theirs, late, b = asyncio.run(measure())
    target = 100.0 if args.checks <= 10000 else 500.0
    median = statistics.median(ours)
    p99 = statistics.median(t["late_p99_ms"] for t in late)
    commit = (args.repo / ".bench-commit").read_text().strip() if (
        args.repo / ".bench-commit").exists() else _commit(args.repo)
    print(f"/metrics with {args.checks} checks ({size / 1e6:.1f} MB), {args.changed:.0%} "
          f"probed again between renders, {args.rounds} rounds; commit {commit}, {_cpu()}")
    print(f"  Metrics.exposition (daemon)      median {median:7.1f} ms "
          f"(min {min(ours):.1f}, max {max(ours):.1f}); target <= {target:.0f} ms: "
          f"{'ok' if median <= target else 'OVER'}")
    print(f"  first render (builds the labels)  {first['ms']:7.1f} ms, CPU {first['cpu']:.1f} ms; "
          f"target <= {target:.0f} ms: {'ok' if first['ms'] <= target else 'OVER'}")
    print(f"  1 ms loop timer late during it   p99 {p99:.2f} ms (median of rounds), max "
          f"{max(t['late_max_ms'] for t in late):.2f} ms; target p99 <= 20 ms: "
          f"{'ok' if p99 <= 20 else 'OVER'}")
    if theirs:
        print(f"  prometheus_client families only  median {statistics.median(theirs):7.1f} ms; "
              f"in a thread: ticker late p99 {b['late_p99_ms']} ms, max {b['late_max_ms']} ms")
    return 0


def _commit(repo: Path) -> str:
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs"


if __name__ == "__main__":
    raise SystemExit(main())
