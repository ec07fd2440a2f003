"""Start-up to ready with N checks, step by step, in-process and without network.

    python bench/startup.py --checks 10000
    python bench/startup.py --checks 10000 --repo /tmp/hismon-snap    # another commit

Writes `run.py`'s generated config (N checks, half HTTP, half TCP, one system per 50) and
times what `hismon run` does before `/readyz` answers: importing the daemon, `load_config`,
`Daemon(...)`, and `Daemon.start()` (store, scheduler, HTTP server, leadership, settle). The
scheduler's job function is replaced by a no-op, so the figure is start-up work alone, not
the first probes (which `run.py`'s start-to-ready includes, against real targets). Wall and
CPU seconds per step; on a loaded machine compare the CPU column, before/after in one run.

SPEC §12: start to ready ≤ 3 s with 10,000 checks, ≤ 10 s with 50,000 (TCP).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TARGET_SECONDS = 3.0
TARGET_50K_SECONDS = 10.0
"""SPEC §12: 10,000 checks ≤ 3 s; the stretch case, 50,000 TCP checks, ≤ 10 s."""


def _use_project_venv() -> None:
    """`python bench/X.py` from outside the venv: re-run under the project's .venv python."""
    venv = HERE.parent / ".venv" / "bin" / "python"
    if venv.exists() and Path(sys.prefix).resolve() != venv.parent.parent.resolve():
        os.execv(str(venv), [str(venv), *sys.argv])


_use_project_venv()


class _FakeTargets:
    """Ports nobody listens on: nothing is probed here (the job function is a no-op)."""

    def http_url(self, i: int) -> str:
        return f"http://127.0.0.1:{9 + i % 4}/health"

    def tcp_port(self, i: int) -> int:
        return 9 + i % 4


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checks", type=int, default=10000)
    parser.add_argument("--repo", type=Path, default=HERE.parent)
    args = parser.parse_args()
    repo = args.repo.resolve()
    # the tree under test, not the checkout the venv's editable install points to
    sys.meta_path[:] = [f for f in sys.meta_path
                        if not getattr(f, "__module__", "").startswith("__editable__")]
    sys.path.insert(0, str(repo))
    sys.path.insert(0, str(HERE))
    import run as bench_run  # the generator of run.py, so both measure the same config

    tmp = Path(tempfile.mkdtemp(prefix="hismon-startup-"))
    cfg = tmp / "hismon.yaml"
    port = bench_run.targets_mod.free_port()
    n_http = args.checks // 2
    bench_run.write_config(cfg, port, tmp, _FakeTargets(),  # type: ignore[arg-type]
                           n_http, args.checks - n_http, 10.0, 5.0)
    marks: list[tuple[str, float, float]] = [("", time.perf_counter(), time.process_time())]

    def mark(name: str) -> None:
        marks.append((name, time.perf_counter(), time.process_time()))

    from monitor.config.loader import load_config
    from monitor.probing import scheduler as sched_mod
    from monitor.runtime.daemon import Daemon
    from monitor.telemetry.logs import configure

    async def no_run(self: Any, check_id: str, scheduled: float = 0.0, missed: int = 0) -> None:
        return None

    sched_mod.Scheduler._run = no_run  # type: ignore[method-assign]
    try:  # what `hismon run` does (the config frozen after loading), where the tree has it
        from monitor.commands.cli import load_for_run as load
    except ImportError:
        load = load_config
    configure("error")
    mark("import the daemon")
    config = load(str(cfg))
    mark("load_config")

    async def start() -> None:
        daemon = Daemon(config, config_path=str(cfg))
        mark("Daemon()")
        await daemon.start()
        mark("Daemon.start() to ready")
        daemon.stop_event.set()
        await daemon.stop()

    asyncio.run(start())
    commit = bench_run.git_commit(repo)
    print(f"start-up, {len(config.checks)} checks, daemon code {commit}, "
          f"{bench_run.machine()['cpu']}")
    for (_, w0, c0), (name, w1, c1) in itertools.pairwise(marks):
        print(f"  {name:<26} wall {w1 - w0:6.2f} s   CPU {c1 - c0:6.2f} s")
    wall, cpu = marks[-1][1] - marks[0][1], marks[-1][2] - marks[0][2]
    target = TARGET_SECONDS if len(config.checks) <= 10_000 else TARGET_50K_SECONDS
    verdict = "ok" if wall <= target else "OVER"
    print(f"  {'total':<26} wall {wall:6.2f} s   CPU {cpu:6.2f} s   "
          f"target ≤ {target:g} s: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
