"""What the daemon costs per run *besides* the probe: the scheduler path with a no-op probe.

    python bench/sched.py --checks 10000 --interval 10s --duration 20s

Runs the daemon's own `monitor.probing.scheduler.Scheduler` (its `Ticker` + state machine +
metrics) in this process with `run_probe` replaced by a coroutine that returns an OK result at
once, so the CPU per run is the scheduling, state and metrics overhead alone. Modes:

- `empty`: the scheduler's timer with an empty job (what scheduling itself costs; `aps` is the
  old name, from when this was APScheduler 3 + hismon's ProbeExecutor);
- `full` (default): the daemon's `Scheduler._run` with everything but the network.

CPU is time.process_time() over the window after a warm-up of one interval; context switches
from getrusage. Compare with `bench/clients.py` (the probe alone) and `bench/run.py` (the
whole daemon) to split a probe's CPU into network + probe code + scheduling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

def _use_project_venv() -> None:
    """`python bench/X.py` from outside the venv: re-run under the project's .venv python."""
    venv = HERE.parent / ".venv" / "bin" / "python"
    if venv.exists() and Path(sys.prefix).resolve() != venv.parent.parent.resolve():
        os.execv(str(venv), [str(venv), *sys.argv])


_use_project_venv()

import promtext  # noqa: E402


class _Only:
    def __init__(self, *collectors: Any) -> None:
        self.collectors = collectors

    def collect(self) -> Any:
        for c in self.collectors:
            yield from c.collect()


def parse_duration(text: str) -> float:
    return float(text[:-1]) if text.endswith("s") else float(text)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(args.repo.resolve()))
    from prometheus_client import generate_latest

    import monitor.probing.scheduler as sched_mod
    from checks.base import ProbeContext
    from monitor.config.model import Config
    from monitor.core.result import Result, State
    from monitor.telemetry.metrics import Metrics, MetricsSource

    async def no_probe(check: Any, ctx: Any) -> Result:
        return Result(State.OK, "connected to 127.0.0.1:1 in 0.1 ms", duration=0.0001,
                      numbers={"latency_seconds": 0.0001})

    sched_mod.run_probe = no_probe  # type: ignore[assignment]
    interval = f"{args.interval:g}s"
    systems = max(1, args.checks // 50)
    config = Config.model_validate({
        "defaults": {"interval": interval, "timeout": "5s"},
        "systems": [{"id": f"s{i}", "name": f"S{i}"} for i in range(systems)],
        "checks": [{"id": f"t{i:05d}", "system": f"s{i % systems}", "type": "tcp",
                    "host": "127.0.0.1", "port": 9} for i in range(args.checks)],
    })
    source = MetricsSource()
    metrics = Metrics(lambda: source)
    states: dict[str, Any] = {}
    source.states = states
    scheduler = sched_mod.Scheduler(config, ProbeContext(), states, metrics, lambda s: None)
    runs = 0
    if args.mode in ("empty", "aps"):
        async def empty(check_id: str, scheduled: float = 0.0, missed: int = 0) -> None:
            nonlocal runs
            runs += 1

        scheduler._run = empty  # type: ignore[method-assign]
        if hasattr(scheduler, "_ticker"):  # the ticker holds the job function it was given
            scheduler._ticker._run = empty
    scheduler.start()
    await asyncio.sleep(args.interval)

    def snap() -> promtext.Snapshot:
        # only the two histograms: a full render would block this loop and add lag
        text = generate_latest(_Only(metrics.scheduler_lag, metrics.probe_duration)).decode()
        return promtext.parse(text)

    s0 = snap() if args.mode == "full" else None
    ru0, cpu0, t0, runs0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time(), \
        time.perf_counter(), runs
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    await asyncio.sleep(args.duration)
    if args.profile:
        profiler.disable()
        profiler.dump_stats(args.profile)
    cpu1, t1 = time.process_time(), time.perf_counter()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    if args.mode == "full":
        assert s0 is not None
        delta = snap().minus(s0)
        count = delta.total_probes
        lag = {"lag_p50_ms": round(delta.lag_quantile(0.5) * 1000, 3),
               "lag_p99_ms": round(delta.lag_quantile(0.99) * 1000, 3)}
    else:
        count, lag = runs - runs0, {}
    scheduler.shutdown()
    return {
        "mode": args.mode, "checks": args.checks, "interval_s": args.interval,
        "runs": count, "runs_per_s": round(count / (t1 - t0), 1),
        "cpu_us_per_run": round((cpu1 - cpu0) / count * 1e6, 1) if count else None,
        "user_us_per_run": round((ru1.ru_utime - ru0.ru_utime) / count * 1e6, 1) if count
        else None,
        "sys_us_per_run": round((ru1.ru_stime - ru0.ru_stime) / count * 1e6, 1) if count
        else None,
        "voluntary_switches_per_run": round((ru1.ru_nvcsw - ru0.ru_nvcsw) / count, 2) if count
        else None,
        **lag,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checks", type=int, default=10000)
    parser.add_argument("--interval", type=parse_duration, default=10.0)
    parser.add_argument("--duration", type=parse_duration, default=20.0)
    parser.add_argument("--mode", choices=["full", "empty", "aps"], default="full")
    parser.add_argument("--repo", type=Path, default=HERE.parent)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the window into FILE")
    args = parser.parse_args()
    out = asyncio.run(main_async(args))
    print(json.dumps(out))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
