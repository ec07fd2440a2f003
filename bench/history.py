"""History at 10,000 checks: what writing it costs per probe, and reading a 90-day page.

    python bench/history.py [--checks 10000] [--interval 10] [--store sqlite|postgresql://...]

1. `HistoryRecorder.observe()` (called once per probe by the scheduler): CPU per call;
2. the once-per-bucket work (write 10,000 finished buckets, leader's roll-up and prune),
   spread over the probes of one 5-minute bucket at `--interval`;
3. reading a system with 20 checks after 400 days of history (48 h of check buckets, 30 days
   of hourly rows, 400 daily rows): `HistoryReader.system(days=90)` plus the 24-hour
   latency series of each check, i.e. everything the `/systems/{id}` page reads, and the
   SVG it draws from it (the bar, the 90 cells, a response-time chart per check).

Targets: per-probe cost (1 + 2) at most 1% of the daemon's CPU per probe (~300 µs TCP,
bench/README.md): 3 µs; the 90-day read and its pictures under 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
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
sys.path.insert(0, str(HERE.parent))

import zoneinfo  # noqa: E402

import structlog  # noqa: E402

from monitor.core.result import State  # noqa: E402
from monitor.history.model import BUCKET_SECONDS, CheckBucket, SystemBucket  # noqa: E402
from monitor.history.query import HistoryReader  # noqa: E402
from monitor.history.recorder import HistoryRecorder  # noqa: E402
from monitor.history.rollup import local_day, local_hour, local_slot  # noqa: E402
from monitor.history.service import HistoryService  # noqa: E402
from monitor.probing.state import CheckState  # noqa: E402
from monitor.store import open_store  # noqa: E402
from monitor.web import charts, whattodo  # noqa: E402
from monitor.web.pages import STRINGS  # noqa: E402

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
PER_PROBE_TARGET_US = 3.0
READ_TARGET_MS = 100.0


def observe_cost(n: int) -> float:
    """µs per observe() over n checks, several probes each, bucket boundaries included."""
    rec = HistoryRecorder()
    states = [CheckState(f"c{i:05d}", f"sys{i % 200:03d}", "tcp") for i in range(n)]
    for i, cs in enumerate(states):
        if i % 97 == 0:
            cs.hard_state = State.CRIT
    now = time.time()
    rounds = 20
    start = time.process_time()
    for r in range(rounds):
        t = now + r * 30.0
        for cs in states:
            rec.observe(cs, 0.0012, t)
    elapsed = time.process_time() - start
    return elapsed / (rounds * n) * 1e6


async def bucket_cost(n: int, url: str) -> tuple[float, float]:
    """CPU seconds (all threads) of one bucket's write + roll-up + prune, n checks."""
    store = open_store(url)
    await store.open()
    try:
        rec = HistoryRecorder()
        service = HistoryService(store, rec, lambda: TZ, lambda now: [])
        states = [CheckState(f"c{i:05d}", f"sys{i % 200:03d}", "tcp") for i in range(n)]
        t0 = time.time()
        t0 -= t0 % BUCKET_SECONDS
        times = []
        for b in range(4):
            for cs in states:
                rec.observe(cs, 0.001, t0 + b * BUCKET_SECONDS + 1)
            now = t0 + (b + 1) * BUCKET_SECONDS + 1
            start = time.process_time()  # CPU of every thread: the store's runs in one
            await service.tick(now, leading=True)
            times.append(time.process_time() - start)
        return statistics.median(times[1:]), max(times)
    finally:
        await store.close()


def page_pictures(history: Any, series: dict[str, list[CheckBucket]], now: float) -> list[str]:
    """What `/systems/{id}` draws from what it read: the 24-hour bar, the 90 daily cells and
    one response-time chart per check (inline SVG, monitor/web/charts.py)."""
    words = whattodo.worst_words(STRINGS["en"])
    drawn = [str(charts.bar_24h(history.slots, TZ, words, "HIS, last 24 hours")),
             str(charts.strip_days([(d.date, d.worst, d.availability) for d in history.days],
                                   words, "HIS, last 90 days"))]
    drawn += [str(charts.latency_chart(rows, now, TZ, f"Response time: {check}", "no data"))
              for check, rows in sorted(series.items())]
    return drawn


async def read_cost(url: str, checks: int = 20) -> tuple[float, float, int]:
    """CPU and wall ms to read a 90-day system page's history and draw its pictures (median
    of 20), rows stored."""
    store = open_store(url)
    await store.open()
    try:
        now = time.time()
        first = now - 48 * 3600
        first -= first % BUCKET_SECONDS
        rows = [CheckBucket(f"c{c:02d}", "his", first + b * BUCKET_SECONDS,
                            2 if c % 3 == 0 and b % 50 == 0 else 0, 10, 0.001, 0.02, 0.004)
                for c in range(checks) for b in range(576)]
        for i in range(0, len(rows), 2000):
            await store.save_check_buckets(rows[i:i + 2000])
        system_rows: list[SystemBucket] = []
        seen: set[tuple[str, float]] = set()
        for b in range(0, int(400 * 86400 / BUCKET_SECONDS), 6):  # a row per 30 minutes
            ts = now - 400 * 86400 + b * BUCKET_SECONDS
            for resolution, start, keep in (("slot", local_slot(ts, TZ), 48 * 3600),
                                            ("hour", local_hour(ts, TZ), 30 * 86400),
                                            ("day", local_day(ts, TZ), 400 * 86400)):
                if ts >= now - keep and (resolution, start) not in seen:
                    seen.add((resolution, start))
                    system_rows.append(SystemBucket("his", resolution, start, 0, ok_s=1800.0))
        # Other systems share the tables (200 systems' worth of day rows).
        for s in range(199):
            system_rows += [SystemBucket(f"sys{s:03d}", "day", local_day(now - d * 86400, TZ),
                                         0, ok_s=86400.0) for d in range(400)]
        await store.rollup_history(None, now - now % BUCKET_SECONDS - BUCKET_SECONDS,
                                   system_rows)
        reader = HistoryReader(store, HistoryRecorder(), lambda: TZ, lambda now: [])
        cpu, wall = [], []
        for _ in range(20):
            start, start_cpu = time.perf_counter(), time.process_time()
            history = await reader.system("his", now, 90)
            series = await reader.latency("his", now)
            pictures = page_pictures(history, series, now)
            wall.append((time.perf_counter() - start) * 1000)
            cpu.append((time.process_time() - start_cpu) * 1000)
        assert len(history.days) == 90 and len(series) == checks
        assert len(pictures) == checks + 2 and all("<svg" in p for p in pictures)
        return statistics.median(cpu), statistics.median(wall), len(rows) + len(system_rows)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=10.0,
                        help="probe interval: how many probes share one bucket's write")
    parser.add_argument("--store", default="")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store or f"sqlite:///{tmp}/bench.db"
        per_observe = observe_cost(args.checks)
        median_bucket, worst_bucket = asyncio.run(bucket_cost(args.checks, url))
        probes_per_bucket = args.checks * BUCKET_SECONDS / args.interval
        per_probe_flush = median_bucket / probes_per_bucket * 1e6
        read_url = args.store or f"sqlite:///{tmp}/read.db"
        read_ms, read_wall, rows = asyncio.run(read_cost(read_url))
    total = per_observe + per_probe_flush
    print(f"history at {args.checks:,} checks, {args.interval:g} s interval, "
          f"store {url.split(':')[0]}")
    print(f"  observe() per probe             {per_observe:6.2f} µs")
    print(f"  write+roll-up+prune per bucket  {median_bucket * 1000:6.1f} ms "
          f"(worst {worst_bucket * 1000:.1f} ms, off the loop in the store's thread/server)")
    print(f"  ... spread over {probes_per_bucket:,.0f} probes   {per_probe_flush:6.2f} µs")
    verdict = "ok" if total <= PER_PROBE_TARGET_US else "OVER"
    print(f"  per-probe total                 {total:6.2f} µs   target <= "
          f"{PER_PROBE_TARGET_US:g} µs (1% of ~300 µs/probe): {verdict}")
    verdict = "ok" if read_ms < READ_TARGET_MS else "OVER"
    print(f"  90-day page read + SVG, 20 ch.  {read_ms:6.1f} ms CPU ({read_wall:.1f} ms wall)   "
          f"target < {READ_TARGET_MS:g} ms ({rows:,} rows stored): {verdict}")
    load = os.getloadavg()[0]
    print(f"  (load average {load:.1f} on {os.cpu_count()} CPUs: wall times grow with load; "
          "the CPU figures are what the daemon spends)")


if __name__ == "__main__":
    main()
