"""Loop-stall watch for a benchmarked daemon (bench/run.py --stalls FILE; not product code).

Imported by Python at start-up when this directory is on PYTHONPATH and
HISMON_BENCH_STALLS names a file. It wraps `asyncio.Runner.run` (which both `asyncio.run`
and `uvloop.run` go through) so that the daemon's loop also runs a 1 ms timer, and a thread
that, while that timer is overdue by more than `HISMON_BENCH_STALL_MS` (10), samples the
main thread's Python stack every 2 ms: what held the loop. Every 5 s one JSON line goes
to the file: how late the timer ran (p50/p99/max, counts past 5/20/50/100 ms), the loop
thread's own CPU time between two ticks (`cpu_*`: the same without the time the process
waited for a core, which dominates wall figures on a loaded machine) and each stall past
20 ms with its length, its CPU and the stacks seen during it; `gc`: per generation, the
cyclic collector's passes on the main thread and the longest (ms).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import threading
import time

_PATH = os.environ.get("HISMON_BENCH_STALLS")
_THRESHOLD = float(os.environ.get("HISMON_BENCH_STALL_MS", "10")) / 1000


def _stack(frame: object, depth: int = 14) -> list[str]:
    out = []
    while frame is not None and len(out) < depth:
        code = frame.f_code  # type: ignore[attr-defined]
        out.append(f"{code.co_qualname}@{os.path.basename(code.co_filename)}:"
                   f"{frame.f_lineno}")  # type: ignore[attr-defined]
        frame = frame.f_back  # type: ignore[attr-defined]
    return out


class _Watch:
    def __init__(self, path: str) -> None:
        self.path = path
        self.last = time.perf_counter()
        self.main = threading.main_thread().ident
        self.late: list[float] = []
        self.busy: list[float] = []
        self.stalls: list[dict[str, object]] = []
        self.current: dict[str, int] | None = None
        self.lock = threading.Lock()
        self.gcs: list[tuple[int, float]] = []
        self._gc_start = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        """Each cyclic-GC pass of the main thread: (generation, seconds)."""
        if threading.get_ident() != self.main:
            return
        if phase == "start":
            self._gc_start = time.perf_counter()
        elif self._gc_start:
            self.gcs.append((info["generation"], time.perf_counter() - self._gc_start))

    async def ticker(self) -> None:
        flushed = time.perf_counter()
        while True:
            due = time.perf_counter() + 0.001
            cpu0 = time.thread_time()
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            late = now - due
            busy = time.thread_time() - cpu0  # the loop's own CPU in between (no preemption)
            with self.lock:
                self.last = now
                self.late.append(late)
                self.busy.append(busy)
                if self.current is not None:
                    if late >= 0.02:
                        self.stalls.append({"ms": round(late * 1000, 1),
                                            "cpu_ms": round(busy * 1000, 1),
                                            "at": round(time.time(), 3),
                                            "stacks": sorted(self.current.items(),
                                                             key=lambda kv: -kv[1])[:4]})
                    self.current = None
            if now - flushed >= 5.0:
                flushed = now
                self.flush()

    def flush(self) -> None:
        with self.lock:
            late, self.late = sorted(self.late), []
            busy, self.busy = sorted(self.busy), []
            stalls, self.stalls = self.stalls, []
            gcs, self.gcs = self.gcs, []
        if not late:
            return
        n = len(late)
        rec = {"t": round(time.time(), 3), "ticks": n,
               "p50_ms": round(late[n // 2] * 1000, 2),
               "p99_ms": round(late[min(n - 1, int(n * 0.99))] * 1000, 2),
               "max_ms": round(late[-1] * 1000, 2),
               "cpu_p99_ms": round(busy[min(n - 1, int(n * 0.99))] * 1000, 2),
               "cpu_max_ms": round(busy[-1] * 1000, 2),
               "cpu_over": {str(ms): sum(1 for x in busy if x * 1000 > ms)
                            for ms in (5, 20, 50, 100)},
               "over": {str(ms): sum(1 for x in late if x * 1000 > ms)
                        for ms in (5, 20, 50, 100)},
               "gc": {str(g): [sum(1 for x, _ in gcs if x == g),
                               round(max((d for x, d in gcs if x == g), default=0) * 1000, 2)]
                      for g in (0, 1, 2)},
               "stalls": stalls}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def watchdog(self) -> None:
        while True:
            time.sleep(0.002)
            with self.lock:
                overdue = time.perf_counter() - self.last
                if overdue < _THRESHOLD:
                    continue
                frame = sys._current_frames().get(self.main)  # type: ignore[arg-type]
                key = " < ".join(_stack(frame)) if frame is not None else "?"
                if self.current is None:
                    self.current = {}
                self.current[key] = self.current.get(key, 0) + 1


def _install(path: str) -> None:
    original = asyncio.Runner.run
    watch = _Watch(path)
    state = {"started": False}

    def run(self: asyncio.Runner, coro, *, context=None):  # type: ignore[no-untyped-def]
        if state["started"]:
            return original(self, coro, context=context)
        state["started"] = True

        async def wrapped():  # type: ignore[no-untyped-def]
            task = asyncio.get_running_loop().create_task(watch.ticker())
            threading.Thread(target=watch.watchdog, daemon=True, name="stallwatch").start()
            try:
                return await coro
            finally:
                task.cancel()
                watch.flush()

        return original(self, wrapped(), context=context)

    asyncio.Runner.run = run  # type: ignore[method-assign]


if _PATH:
    _install(_PATH)
