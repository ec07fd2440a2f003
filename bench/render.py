"""/metrics with N checks: today's render against a prototype of a fast one (not wired in).

    python bench/render.py --checks 10000

Builds N check states the way the daemon does (monitor.state.advance on probe-like results),
then measures, in one process:

1. `generate_latest(registry)`: what `GET /metrics` does today (in a worker thread);
2. `fast_render()` below: the per-check families written from cached, pre-escaped label
   strings, the rest of the registry through `generate_latest`; checked byte-identical to 1;
3. the loop's timer lateness (a 1 ms ticker, like the scheduler's timers) while each is
   rendered: (1) in `asyncio.to_thread` as the API does now, (2) on the loop in slices of
   `--slice` checks with `await asyncio.sleep(0)` between them.

The prototype needs no change to metric names, labels, values or order; wiring it in is a
change to monitor/api.py (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import math
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
    from monitor.metrics import Metrics, MetricsSource
    from monitor.result import Result, State
    from monitor.state import CheckState, advance

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


# ---- the prototype ------------------------------------------------------------------------

def _esc(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class FastRender:
    """Per-check label strings are built once per check (and rebuilt if system/type change)."""

    def __init__(self) -> None:
        self._labels: dict[str, tuple[str, str, str, str]] = {}

    def labels(self, cs: Any) -> tuple[str, str, str, str]:
        cached = self._labels.get(cs.check_id)
        if cached is None or cached[3] != f"{cs.system}\0{cs.type}":
            check = _esc(cs.check_id)
            cached = (f'check="{check}",system="{_esc(cs.system)}",type="{_esc(cs.type)}"',
                      f'check="{check}"', check, f"{cs.system}\0{cs.type}")
            self._labels[cs.check_id] = cached
        return cached

    def state_lines(self, states: list[Any], fmt: Any) -> list[list[str]]:
        """The eight per-check families, as in StateCollector.collect()."""
        up, state, hard, dur, flap, runs, missed, expiry = ([] for _ in range(8))
        for cs in states:
            three, one, _check, _ = self.labels(cs)
            value = int(cs.state)
            up.append(f"hismon_check_up{{{three}}} {'1.0' if value <= 1 else '0.0'}\n")
            state.append(f"hismon_check_state{{{three}}} {fmt(value)}\n")
            hard.append(f"hismon_check_hard_state{{{three}}} {fmt(int(cs.hard_state))}\n")
            dur.append(f"hismon_check_duration_seconds{{{three}}} {fmt(cs.duration)}\n")
            flap.append(f"hismon_check_flapping{{{one}}} {'1.0' if cs.flapping else '0.0'}\n")
            for result, count in cs.runs.items():
                runs.append(f'hismon_check_runs_total{{{one},result="{_esc(result)}"}} '
                            f"{fmt(count)}\n")
            missed.append(f"hismon_check_missed_runs_total{{{one}}} {fmt(cs.missed_runs)}\n")
            cert = cs.numbers.get("tls_cert_expiry_seconds")
            if cert is not None:
                expiry.append(f"hismon_tls_cert_expiry_seconds{{{one}}} {fmt(cert)}\n")
        return [up, state, hard, dur, flap, runs, missed, expiry]


HEADERS = [
    ("hismon_check_up", "1 when the check's last result is OK or WARN", "gauge"),
    ("hismon_check_state", "Last result: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN", "gauge"),
    ("hismon_check_hard_state", "Confirmed (hard) state: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN",
     "gauge"),
    ("hismon_check_duration_seconds", "Duration of the check's last probe", "gauge"),
    ("hismon_check_flapping", "1 while the check is flapping", "gauge"),
    ("hismon_check_runs_total", "Probe results by state", "counter"),
    ("hismon_check_missed_runs_total", "Runs skipped: previous run still going or overload",
     "counter"),
    ("hismon_tls_cert_expiry_seconds", "Seconds until the server certificate expires",
     "gauge"),
]


class _Rest:
    """Everything in the registry after the per-check families, in registry order.

    StateCollector's per-system families are rebuilt here as in monitor/metrics.py (the real
    change would split StateCollector in two); every other collector is used as it is.
    """

    def __init__(self, registry: Any, src: Any) -> None:
        self.registry, self.src = registry, src

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        from monitor.metrics import StateCollector

        src = self.src
        system_up = GaugeMetricFamily("hismon_system_up",
                                      "1 unless the system has an open critical incident",
                                      labels=["system"])
        incidents = GaugeMetricFamily("hismon_incidents_open", "Open incidents",
                                      labels=["system", "severity"])
        open_by_system = {(i.system, i.severity) for i in src.open_incidents}
        for system in src.systems:
            system_up.add_metric([system], 0.0 if (system, "critical") in open_by_system else 1.0)
            for severity in ("warning", "critical"):
                incidents.add_metric([system, severity],
                                     1.0 if (system, severity) in open_by_system else 0.0)
        yield system_up
        yield incidents
        yield GaugeMetricFamily("hismon_outbox_pending", "Messages waiting to be delivered",
                                value=src.outbox_pending)
        yield GaugeMetricFamily("hismon_store_up", "1 when the state store answers",
                                value=1.0 if src.store_ok else 0.0)
        for collector in list(self.registry._collector_to_names):
            if not isinstance(collector, StateCollector):
                yield from collector.collect()


def _fmt_factory() -> Any:
    from prometheus_client.utils import floatToGoString

    cache: dict[float, str] = {}

    def fmt(value: float) -> str:
        text = cache.get(value)
        if text is None:
            d = float(value)
            text = repr(d)
            # floatToGoString differs from repr only for inf/nan and for large positives
            if d != d or d in (math.inf, -math.inf) or (d > 0 and text.find(".") > 6):
                text = floatToGoString(d)
            if len(cache) < 4096 and d.is_integer():
                cache[value] = text
        return text

    return fmt


def fast_render(metrics: Any, src: Any, fr: FastRender) -> bytes:
    from prometheus_client import generate_latest

    fmt = _fmt_factory()
    families = fr.state_lines(list(src.states.values()), fmt)
    out: list[str] = []
    for (name, doc, kind), lines in zip(HEADERS, families, strict=True):
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
        out.extend(lines)
    head = "".join(out).encode()
    return head + generate_latest(_Rest(metrics.registry, src))


async def fast_render_sliced(metrics: Any, src: Any, fr: FastRender, size: int) -> bytes:
    """The same bytes, built on the loop `size` checks at a time."""
    from prometheus_client import generate_latest

    fmt = _fmt_factory()
    states = list(src.states.values())
    families: list[list[str]] = [[] for _ in HEADERS]
    for start in range(0, len(states), size):
        for acc, part in zip(families, fr.state_lines(states[start:start + size], fmt),
                             strict=True):
            acc.extend(part)
        await asyncio.sleep(0)
    out: list[str] = []
    for (name, doc, kind), lines in zip(HEADERS, families, strict=True):
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
        out.extend(lines)
    rest = generate_latest(_Rest(metrics.registry, src))
    await asyncio.sleep(0)
    return "".join(out).encode() + rest


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
    parser.add_argument("--slice", type=int, default=250)
    parser.add_argument("--repo", type=Path, default=HERE.parent)
    args = parser.parse_args()
    metrics, src = build(args.checks, args.repo)
    from prometheus_client import generate_latest

    fr = FastRender()
    old = [generate_latest(metrics.registry) for _ in range(2)][-1]
    new = fast_render(metrics, src, fr)
    same = old == new
    t_old, t_new = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        generate_latest(metrics.registry)
        t_old.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        fast_render(metrics, src, fr)
        t_new.append((time.perf_counter() - t0) * 1000)

    async def loop_part() -> tuple[dict[str, float], dict[str, float], bool]:
        a = await lateness(lambda: asyncio.to_thread(generate_latest, metrics.registry))
        box: list[bytes] = []

        async def sliced() -> None:
            box.append(await fast_render_sliced(metrics, src, fr, args.slice))

        b = await lateness(sliced)
        return a, b, box[0] == old

    a, b, same_sliced = asyncio.run(loop_part())
    lines = old.count(b"\n")
    print(f"/metrics with {args.checks} checks: {len(old) / 1e6:.2f} MB, {lines} lines")
    print(f"  generate_latest (today)       median {statistics.median(t_old):7.1f} ms")
    print(f"  fast_render (prototype)       median {statistics.median(t_new):7.1f} ms   "
          f"byte-identical: {same} (sliced: {same_sliced})")
    print(f"  1 ms ticker while rendering: today (to_thread) render {a['render_ms']} ms, "
          f"tick late p99 {a['late_p99_ms']} ms, max {a['late_max_ms']} ms")
    print(f"                               prototype on loop, {args.slice}-check slices: "
          f"render {b['render_ms']} ms, tick late p99 {b['late_p99_ms']} ms, "
          f"max {b['late_max_ms']} ms")
    return 0 if same and same_sliced else 1


if __name__ == "__main__":
    raise SystemExit(main())
