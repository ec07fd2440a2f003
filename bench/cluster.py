"""SPEC §12's cluster figure: real daemons with `cluster: {shards: auto}` on one PostgreSQL.

    python bench/cluster.py                      # 3 members, 6,000 HTTP checks at 10 s
    python bench/cluster.py --checks 300 --interval 2s --timeout 1s   # a quick look

Starts `--members` real daemons (`python -m monitor run`, each its own temp dir and port) on
the real PostgreSQL (`--pg`, default 127.0.0.1:5432 db `test`, trust) in a fresh schema that
is dropped at the end. Every check is an HTTP check of its own path on a loopback target
served by this process, which logs when each path was asked: "probed" is what the target saw,
not what hismon says. After the members agree (`hismon_cluster_members`, the owned checks
add up), a steady window measures CPU per member; then one check owned by a member that is
not the leader fails, and once the incident's first message arrived that member gets
SIGKILL. Measured:

- takeover: for the killed member's checks (rendezvous owners, `monitor.cluster.assign`),
  the time from the kill to the first probe by another member; and the longest unprobed
  stretch of any check after the kill (target: the lease TTL + one interval, SPEC 9/12);
- staleness: `hismon_check_stale 1` samples on the survivors' `/metrics` (scraped every
  `--scrape-every`) after the kill (target 0: a moved check is probed before it goes stale);
- messages: the incident's `outage_it` and `recovery` once each, no idempotency key twice
  (webhook receiver in this process), and at most one `monitor_degraded`/`monitor_ok` (the
  lost member stays lost, so its episode need not close within the run);
- CPU per member (utime + stime from /proc) before and after the kill, start to ready.

Bounded: every wait has a timeout and the run stops by itself (~3 min at full size, ~1 min
for the quick look); traffic only on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _use_project_venv() -> None:
    """`python bench/X.py` from outside the venv: re-run under the project's .venv python."""
    venv = REPO / ".venv" / "bin" / "python"
    if venv.exists() and Path(sys.prefix).resolve() != venv.parent.parent.resolve():
        os.execv(str(venv), [str(venv), *sys.argv])


_use_project_venv()
sys.path[:0] = [str(HERE), str(REPO)]

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from targets import free_port, free_ports  # noqa: E402  (bench/targets.py)

from monitor.cluster.assign import owners  # noqa: E402
from monitor.cluster.leader import lease_ttl  # noqa: E402

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
CLK_TCK = os.sysconf("SC_CLK_TCK")
DAEMON_REPO = REPO
"""Where the members import `monitor/` from (`--repo`: a `bench/snapshot.sh` directory)."""
# With another source tree (--repo), modules missing there must not be found in the checkout
# that the venv's editable install points to (as in bench/run.py).
_ISOLATE = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "
            "'__module__', '').startswith('__editable__')]; sys.argv[0] = 'hismon'; "
            "from monitor.commands.cli import main; main()")


def say(*parts: Any) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, flush=True)


def parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0}
    for unit in ("ms", "s", "m"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    return float(text)


def fmt(seconds: float) -> str:
    return f"{int(seconds * 1000)}ms" if seconds < 1 else f"{seconds:g}s"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores"


def commit() -> str:
    """The members' code: a snapshot's marker, else the checkout's HEAD (+dirty)."""
    marker = DAEMON_REPO / ".bench-commit"
    if marker.exists():
        return marker.read_text().strip()
    try:
        head = subprocess.run(["git", "-C", str(DAEMON_REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(DAEMON_REPO), "status", "--porcelain",
                                "monitor", "checks"], capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head + ("+dirty" if dirty.strip() else "")


# ---- the targets: one path per check, every request logged ---------------------------------

class Log:
    def __init__(self) -> None:
        self.hits: dict[str, list[float]] = defaultdict(list)
        self.failing: set[str] = set()

    def first_after(self, name: str, t: float) -> float | None:
        return next((h for h in self.hits[name] if h >= t), None)

    def longest_gap(self, name: str, since: float, until: float) -> float:
        times = [since, *(h for h in self.hits[name] if since <= h <= until), until]
        return max(b - a for a, b in itertools.pairwise(times))


class _Target(asyncio.Protocol):
    """`GET /c/<check id>`: 200 "UP" (503 while the check is told to fail), then close."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" not in self.buf or self.transport is None:
            return
        parts = self.buf.split(b"\r\n", 1)[0].split(b" ")
        name = parts[1].decode(errors="replace").rsplit("/", 1)[-1] if len(parts) > 1 else ""
        self.log.hits[name].append(time.monotonic())
        status = b"503 Service Unavailable" if name in self.log.failing else b"200 OK"
        self.transport.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: 3\r\nConnection: close\r\n\r\nUP\n")
        self.transport.close()


class Receiver:
    """The webhook the members' notifier posts to; keeps every message."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            body = json.loads(await request.read())
            body["_at"] = time.monotonic()
            self.messages.append(body)
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def kinds(self) -> list[str]:
        return [str(m.get("kind")) for m in self.messages]


# ---- the members ----------------------------------------------------------------------------

def write_config(path: Path, port: int, pg: str, checks: int, ports: list[int],
                 interval: float, timeout: float, hook: str) -> None:
    systems = max(1, checks // 50)
    lines = [
        "site: {name: hismon-cluster-bench, timezone: UTC, language: en}",
        f"server: {{listen: '127.0.0.1:{port}'}}",
        f"state: {{url: '{pg}'}}",
        f"cluster: {{shards: auto, member_id: 'member-{port}'}}",
        f"defaults: {{interval: {fmt(interval)}, timeout: {fmt(timeout)}, "
        f"retry_interval: {fmt(max(interval / 5, 0.5))}, confirm: 2, recover: 2}}",
        "roles: {it_oncall: [it]}",
        "self_alerts: [role:it_oncall]",
        f"notifiers: [{{id: it, type: webhook, url: '{hook}'}}]",
        "plans:",
        "  - id: p",
        "    steps: [{after: 0s, notify: [role:it_oncall], message: outage_it}]",
        "    on_recovery: [role:it_oncall]",
        "systems:",
        *(f"  - {{id: sys{s:04d}, name: System {s}, plan: p}}" for s in range(systems)),
        "checks:",
        *(f"  - {{id: c{i:05d}, system: sys{i % systems:04d}, type: http, "
          f"url: 'http://127.0.0.1:{ports[i % len(ports)]}/c/c{i:05d}'}}"
          for i in range(checks)),
    ]
    path.write_text("\n".join(lines) + "\n")


class Member:
    def __init__(self, tmp: Path, pg: str, args: argparse.Namespace, ports: list[int],
                 hook: str) -> None:
        self.port = free_port()
        self.id = f"member-{self.port}"
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = tmp / self.id
        self.dir.mkdir()
        self.config = self.dir / "hismon.yaml"
        write_config(self.config, self.port, pg, args.checks, ports, args.interval,
                     args.timeout, hook)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.ready_s: float | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env.update(PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(
            filter(None, [str(DAEMON_REPO), os.environ.get("PYTHONPATH")])))
        log = (self.dir / "daemon.log").open("ab")
        self.started = time.monotonic()
        command = [sys.executable, "-m", "monitor"] if DAEMON_REPO == REPO \
            else [sys.executable, "-c", _ISOLATE]
        self.proc = subprocess.Popen([*command, "run", "-c", str(self.config)], stdout=log,
                                     stderr=log, cwd=self.dir, env=env)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    def log_tail(self) -> str:
        path = self.dir / "daemon.log"
        return path.read_text(errors="replace")[-1500:] if path.exists() else ""

    def stop(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


async def metrics(http: aiohttp.ClientSession, member: Member) -> str | None:
    try:
        async with http.get(f"{member.url}/metrics",
                            timeout=aiohttp.ClientTimeout(total=30)) as r:
            return await r.text() if r.status == 200 else None
    except (aiohttp.ClientError, TimeoutError):
        return None


def gauge(text: str | None, name: str) -> float | None:
    match = re.search(rf"^{name} (\S+)$", text or "", re.M)
    return float(match.group(1)) if match else None


async def wait_for(what: str, predicate: Any, limit: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(every)
    raise RuntimeError(f"timed out after {limit:g}s waiting for {what}")


# ---- the run -----------------------------------------------------------------------------

async def run(args: argparse.Namespace, pg: str, schema: str) -> dict[str, Any]:
    log, receiver = Log(), Receiver()
    await receiver.start()
    loop = asyncio.get_running_loop()
    ports = free_ports(4)
    servers = [await loop.create_server(lambda: _Target(log), "127.0.0.1", p, backlog=4096)
               for p in ports]
    tmp = Path(tempfile.mkdtemp(prefix="hismon-cluster-bench-"))
    url = f"{pg}{'&' if '?' in pg else '?'}schema={schema}"
    members = [Member(tmp, url, args, ports, f"http://127.0.0.1:{receiver.port}/it")
               for _ in range(args.members)]
    ttl = lease_ttl([args.interval])
    bound = ttl + args.interval
    res: dict[str, Any] = {"members": args.members, "checks": args.checks,
                           "interval_s": args.interval, "ttl_s": ttl, "bound_s": bound}
    stale: dict[str, list[int]] = defaultdict(list)
    killed = 0.0
    stop_scraping = asyncio.Event()
    try:
        async with aiohttp.ClientSession() as http:
            for m in members:
                m.start()

            async def all_ready() -> bool:
                for m in members:
                    if not m.alive:
                        raise RuntimeError(f"{m.id} exited: {m.log_tail()}")
                    if m.ready_s is None:
                        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                            async with http.get(f"{m.url}/readyz",
                                                timeout=aiohttp.ClientTimeout(total=5)) as r:
                                if r.status == 200:
                                    m.ready_s = time.monotonic() - m.started
                return all(m.ready_s is not None for m in members)

            await wait_for("every member ready", all_ready, args.ready_timeout)
            res["ready_s"] = [round(m.ready_s or 0, 1) for m in members]
            say("ready:", res["ready_s"], "s")

            async def agreed() -> list[str | None] | None:
                texts = [await metrics(http, m) for m in members]
                counts = [gauge(t, "hismon_cluster_members") for t in texts]
                owned = [gauge(t, "hismon_checks_owned") for t in texts]
                if counts == [float(args.members)] * args.members and None not in owned \
                        and sum(o or 0 for o in owned) == args.checks:
                    return texts
                return None

            texts = await wait_for("the members to agree", agreed, args.ready_timeout)
            leader = next((m for m, t in zip(members, texts, strict=True)
                           if gauge(t, "hismon_leader") == 1.0), None)
            if leader is None:
                raise RuntimeError("no leader among the members")
            victim = next(m for m in members if m is not leader)
            res["leader_index"] = members.index(leader)
            res["victim_index"] = members.index(victim)
            ids = [m.id for m in members]
            moved = [f"c{i:05d}" for i in range(args.checks)
                     if owners(f"c{i:05d}", ids)[0] == victim.id]
            say(f"{args.members} members agree; leader {leader.id}, victim {victim.id} "
                f"owns {len(moved)} checks")

            async def scrape(phase: str) -> None:
                """Every member's /metrics each `--scrape-every`; counts stale checks."""
                while not stop_scraping.is_set():
                    for m in members:
                        text = await metrics(http, m) if m.alive else None
                        if text is not None:
                            role = "leader" if gauge(text, "hismon_leader") == 1.0 else "follower"
                            stale[f"{phase}_{role}"].append(len(re.findall(
                                r"^hismon_check_stale\{.*\} 1\.0$", text, re.M)))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop_scraping.wait(), args.scrape_every)

            scraper = asyncio.create_task(scrape("before"))
            await asyncio.sleep(args.interval + 2)  # every check probed once by its owner
            t0, cpu0 = time.monotonic(), [m.cpu() for m in members]
            await asyncio.sleep(args.window)
            t1, cpu1 = time.monotonic(), [m.cpu() for m in members]
            res["cpu_steady_cores"] = [round((b - a) / (t1 - t0), 3)
                                       for a, b in zip(cpu0, cpu1, strict=True)]
            per_check = [sum(1 for h in log.hits[f"c{i:05d}"] if t0 <= h <= t1)
                         for i in range(args.checks)]
            res["probes_per_check_per_interval"] = round(
                statistics.mean(per_check) * args.interval / (t1 - t0), 2)
            res["gap_steady_max_s"] = round(max(log.longest_gap(f"c{i:05d}", t0, t1)
                                                for i in range(args.checks)), 2)
            say("steady: CPU per member", res["cpu_steady_cores"], "cores; probes per check "
                "per interval", res["probes_per_check_per_interval"])

            # An incident on the victim's side, then the kill while it is open.
            failing = moved[0]
            log.failing.add(failing)

            async def outage_sent() -> bool:
                return "outage_it" in receiver.kinds()

            failed_at = time.monotonic()
            try:
                await wait_for("the outage message", outage_sent, 5 * args.interval + 20)
                res["outage_after_failure_s"] = round(time.monotonic() - failed_at, 1)
            except RuntimeError as exc:  # reported as a figure; the kill goes on
                res["outage_after_failure_s"] = None
                say(exc, "- killing anyway")
            survivors = [m for m in members if m is not victim]
            scraper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scraper
            assert victim.proc is not None
            victim.proc.kill()
            killed = time.monotonic()
            cpu_k = [m.cpu() for m in survivors]
            say(f"SIGKILL {victim.id} with {failing} failing")
            scraper = asyncio.create_task(scrape("after"))
            await asyncio.sleep(bound + 2 * args.interval + 5)
            until = time.monotonic()
            cpu_e = [m.cpu() for m in survivors]
            res["cpu_after_kill_cores"] = [round((b - a) / (until - killed), 3)
                                           for a, b in zip(cpu_k, cpu_e, strict=True)]
            takeover = [(log.first_after(c, killed) or until) - killed for c in moved]
            res["takeover_median_s"] = round(statistics.median(takeover), 2)
            res["takeover_max_s"] = round(max(takeover), 2)
            res["moved_never_probed"] = sum(1 for c in moved if log.first_after(c, killed)
                                            is None)
            res["gap_after_kill_max_s"] = round(max(
                log.longest_gap(f"c{i:05d}", killed, until) for i in range(args.checks)), 2)
            say("takeover median / max", res["takeover_median_s"], "/", res["takeover_max_s"],
                "s; longest gap", res["gap_after_kill_max_s"], "s")

            log.failing.clear()

            async def recovered() -> bool:
                return "recovery" in receiver.kinds()

            healed = time.monotonic()
            try:
                await wait_for("the recovery message", recovered, 5 * args.interval + 30)
                res["recovery_after_heal_s"] = round(time.monotonic() - healed, 1)
            except RuntimeError as exc:  # a figure that failed, not a crash: report it
                res["recovery_after_heal_s"] = None
                say(exc)
            with contextlib.suppress(RuntimeError):  # the member-lost pair, if it closes
                async def degraded_closed() -> bool:
                    return "monitor_ok" in receiver.kinds()

                await wait_for("monitor_ok", degraded_closed, 3 * args.interval + 15)
            await asyncio.sleep(max(3.0, args.interval))  # a doubled message would come now
            stop_scraping.set()
            await scraper
    finally:
        stop_scraping.set()
        for m in members:
            m.stop()
        for s in servers:
            s.close()
        if receiver.runner is not None:
            await receiver.runner.cleanup()
        if args.keep:
            say("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    kinds = receiver.kinds()
    keys = [m.get("idempotency_key") for m in receiver.messages]
    for phase in ("before", "after"):
        for role in ("leader", "follower"):
            res[f"stale_{phase}_{role}_max"] = max(stale[f"{phase}_{role}"], default=0)
    res["self_alerts"] = [
        {"kind": m.get("kind"), "at_s": round(m["_at"] - killed, 1),
         "text": str(m.get("text") or m.get("body") or m.get("title") or "")[:300]}
        for m in receiver.messages if str(m.get("kind", "")).startswith("monitor_")]
    res["messages"] = {k: kinds.count(k) for k in sorted(set(kinds))}
    res["doubled_keys"] = len(keys) - len(set(keys))
    return res


def verdict(ok: bool) -> str:
    return "ok" if ok else "OVER"


def report(res: dict[str, Any]) -> None:
    bound = res["bound_s"]
    msgs = res["messages"]
    print()
    print(f"cluster: {res['members']} members, {res['checks']} HTTP checks at "
          f"{res['interval_s']:g}s, lease TTL {res['ttl_s']:g}s; commit {commit()}; "
          f"{machine()}")
    rows = [
        ("takeover of the killed member's checks, max (s)", res["takeover_max_s"],
         f"<= TTL + interval = {bound:g}", res["takeover_max_s"] <= bound
         and res["moved_never_probed"] == 0),
        ("takeover median (s)", res["takeover_median_s"], "—", None),
        ("longest unprobed stretch of any check after the kill (s)",
         res["gap_after_kill_max_s"], f"<= {bound:g}", res["gap_after_kill_max_s"] <= bound),
        ("hismon_check_stale 1 on the leader after the kill, max",
         res["stale_after_leader_max"], "0",
         res["stale_after_leader_max"] == 0),
        ("... on the leader before the kill, max", res["stale_before_leader_max"], "0",
         res["stale_before_leader_max"] == 0),
        ("... on a follower (counts checks it does not probe), max before / after",
         f"{res['stale_before_follower_max']} / {res['stale_after_follower_max']}", "—", None),
        ("outage_it / recovery messages", f"{msgs.get('outage_it', 0)} / "
         f"{msgs.get('recovery', 0)}", "1 / 1",
         msgs.get("outage_it") == 1 and msgs.get("recovery") == 1),
        ("outage message after the target failed (s), before the kill",
         res["outage_after_failure_s"], "received", res["outage_after_failure_s"] is not None),
        ("recovery message after the target healed (s)", res["recovery_after_heal_s"],
         "received", res["recovery_after_heal_s"] is not None),
        ("idempotency keys received twice", res["doubled_keys"], "0", res["doubled_keys"] == 0),
        ("monitor_degraded / monitor_ok (member lost)", f"{msgs.get('monitor_degraded', 0)} / "
         f"{msgs.get('monitor_ok', 0)}", "at most one each", msgs.get("monitor_degraded", 0) <= 1
         and msgs.get("monitor_ok", 0) <= 1),
        ("probes per check per interval, steady (replicas 1)",
         res["probes_per_check_per_interval"], "~1", None),
        ("longest unprobed stretch, steady (s)", res["gap_steady_max_s"], "—", None),
        (f"CPU per member, steady (cores; leader #{res['leader_index']}, "
         f"killed #{res['victim_index']})", res["cpu_steady_cores"], "—", None),
        ("CPU per survivor after the kill (cores, in member order)",
         res["cpu_after_kill_cores"], "—", None),
        ("start to ready per member (s)", res["ready_s"], "—", None),
    ]
    for name, value, target, ok in rows:
        mark = "" if ok is None else verdict(bool(ok))
        print(f"  {name:<72} {value!s:>22}  {target:<24} {mark}")
    for alert in res["self_alerts"]:
        print(f"  self-alert {alert['kind']} at kill{alert['at_s']:+.1f}s: {alert['text']!r}")


def pg_url(given: str | None) -> str:
    import psycopg

    for url in [given] if given else [PG_DEFAULT, PG_DEFAULT.replace("postgres@", "root@")]:
        try:
            psycopg.connect(url, connect_timeout=3).close()
            return url
        except Exception as exc:  # the next candidate, then give up
            last = exc
    raise SystemExit(f"PostgreSQL not reachable: {last}")


def drop_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--checks", type=int, default=6000)
    parser.add_argument("--interval", type=parse_duration, default=10.0)
    parser.add_argument("--timeout", type=parse_duration, default=5.0)
    parser.add_argument("--window", type=parse_duration, default=None,
                        help="steady window for CPU (default 2 intervals)")
    parser.add_argument("--scrape-every", type=parse_duration, default=5.0)
    parser.add_argument("--ready-timeout", type=parse_duration, default=240.0)
    parser.add_argument("--pg", default=None, help=f"PostgreSQL URL (default {PG_DEFAULT})")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the members' dirs and logs")
    parser.add_argument("--repo", type=Path, default=REPO,
                        help="run the members from this source tree (bench/snapshot.sh)")
    args = parser.parse_args()
    global DAEMON_REPO
    DAEMON_REPO = args.repo.resolve()
    if args.members < 2:
        parser.error("--members must be at least 2 (one is killed)")
    args.window = args.window or 2 * args.interval
    pg = pg_url(args.pg)
    schema = f"hismon_bench_{uuid.uuid4().hex[:10]}"
    try:
        res = asyncio.run(run(args, pg, schema))
    finally:
        drop_schema(pg, schema)
    res.update(commit=commit(), machine=machine())
    report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
