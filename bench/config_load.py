"""How long loading a hospital-sized config takes: hosts × check templates (SPEC §14).

    python bench/config_load.py                  # 300 hosts × 4 templates = 1,200 checks
    python bench/config_load.py --hosts 2500     # 10,000 checks

Writes a main file plus conf.d/servers.yaml (the hosts, four templates, four apply rules) and
conf.d/systems.yaml to a temporary folder and times `load_config` on it, the same path as
`hismon validate` and every reload: read and check every file, expand the rules, validate the
model, check the bounds. Prints the median of `--runs` loads with its target.

Target: 300 hosts × 4 templates in ≤ 1 s. Why: a reload runs this in a worker thread while
probing goes on, and SPEC §12 allows a reload of 10,000 checks ≤ 2 s in total; 1,200 checks
are an eighth of that, so a second leaves room for the scheduler swap on a busy 2-core host,
and an operator running `hismon validate` after each edit gets an answer at once.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_SECONDS = 1.0


def _use_project_venv() -> None:
    """`python bench/X.py` from outside the venv: re-run under the project's .venv python."""
    venv = HERE.parent / ".venv" / "bin" / "python"
    if venv.exists() and Path(sys.prefix).resolve() != venv.parent.parent.resolve():
        os.execv(str(venv), [str(venv), *sys.argv])


_use_project_venv()
sys.path.insert(0, str(HERE.parent))

MAIN = """\
site: {name: Bench Hospital, timezone: Asia/Shanghai, language: zh}
include: [conf.d/*.yaml]
"""
TEMPLATES = """\
check_templates:
  - {id: ping, type: icmp, host: "{host.address}", count: 3, rtt: {warn: 50ms, crit: 200ms}}
  - {id: ssh, type: tcp, host: "{host.address}", port: 22, expect: SSH-}
  - id: node
    type: http
    url: "http://{host.address}:9100/metrics"
    expect: {status: [200], latency: {warn: 1s, crit: 3s}}
  - {id: oracle, type: tcp, host: "{host.address}", port: 1521, latency: {warn: 200ms, crit: 2s}}
apply:
  - {template: ping, to: {tags: [server]}, interval: 30s}
  - {template: ssh, to: {tags: [linux]}, interval: 60s}
  - {template: node, to: {tags: [linux]}, interval: 60s}
  - {template: oracle, to: {tags: [db]}, interval: 15s}
"""


def write_estate(root: Path, hosts: int, systems: int = 100) -> Path:
    conf_d = root / "conf.d"
    conf_d.mkdir(parents=True, exist_ok=True)
    (root / "main.yaml").write_text(MAIN, encoding="utf-8")
    (conf_d / "systems.yaml").write_text("systems:\n" + "".join(
        f"  - {{id: sys-{i:03d}, name: 业务系统{i:03d}}}\n" for i in range(systems)),
        encoding="utf-8")
    lines = ["hosts:"]
    for i in range(hosts):
        # Every host gets all four templates: ping, ssh, node and (tagged db) oracle.
        lines.append(f"  - {{id: host-{i:04d}, address: 10.{i // 250 % 250}.{i % 250}.10, "
                     f"system: sys-{i % systems:03d}, tags: [server, linux, db]}}")
    (conf_d / "servers.yaml").write_text("\n".join(lines) + "\n" + TEMPLATES, encoding="utf-8")
    return root / "main.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from monitor.config.loader import load_config

    with tempfile.TemporaryDirectory() as tmp:
        main_file = write_estate(Path(tmp), args.hosts)
        load_config(main_file, env={})  # warm-up: imports, regex compilation
        times, checks = [], 0
        for _ in range(args.runs):
            started = time.perf_counter()
            config = load_config(main_file, env={})
            times.append(time.perf_counter() - started)
            checks = len(config.checks)
    median = statistics.median(times)
    target = TARGET_SECONDS * max(1.0, args.hosts / 300)
    verdict = "ok" if median <= target else "OVER"
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}")
    print(f"config load, {args.hosts} hosts x 4 templates = {checks} checks: "
          f"median {median:.3f}s of {args.runs} (min {min(times):.3f}s), "
          f"target <= {target:g}s: {verdict}")
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
