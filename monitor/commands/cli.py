"""The `hismon` command (SPEC §1). Each subcommand is a small function; exit codes are contract."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from monitor.commands.common import call_api, load_for_command, refused

DEFAULT_URL = "http://127.0.0.1:9464"


def cmd_validate(args: argparse.Namespace) -> int:
    config = load_for_command(args.config)
    if args.expand:
        from monitor.config.expand import dump_checks

        sys.stdout.write(dump_checks(config))
        return 0
    print(f"{args.config}: OK ({len(config.checks)} checks, {len(config.systems)} systems, "
          f"{len(config.notifiers)} notifiers, {len(config.plans)} plans)")
    files = config.files
    print(f"read {len(files)} file{'s' if len(files) != 1 else ''}: {', '.join(files)}")
    for note in config.notes:
        print(f"note: {note}")
    return 0


def load_for_run(path: str) -> Any:
    """`load_for_command`, then the config frozen out of the cyclic collector's walks.

    It lives as long as the daemon (until a reload, which freezes its own the same way,
    monitor.config.reload). Loaded with the collector paused, its ~1,000,000 tracked objects
    at 50,000 checks (200,000 at 10,000) would otherwise all sit in the youngest generation,
    and the collections that start-up's own allocations trigger walked them again and again
    before `/readyz`: three walks of 0.3-0.5 s each at 50,000 checks. Frozen inside the
    pause, they are never walked; reference counting still frees them after a reload.
    """
    import gc

    from monitor.core.collector import collector_paused

    with collector_paused():
        config = load_for_command(path)
        gc.freeze()
    return config


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.runtime.daemon import Daemon
    from monitor.telemetry.logs import configure

    configure(args.log_level)
    config = load_for_run(args.config)
    from monitor.web.exposure import insecure_listen

    refusal = insecure_listen(config.server)
    if refusal and not args.insecure:
        print(f"hismon: {refusal}", file=sys.stderr)
        return 2
    if refusal:
        print(f"hismon: warning: listening on {config.server.listen} with no API token "
              "(--insecure)", file=sys.stderr)
    shard = _parse_shard(args.shard) if args.shard else None
    try:
        from monitor.runtime import loop

        daemon = Daemon(config, config_path=args.config, shard=shard)
        loop.run(daemon.run_forever())
    except Exception as exc:  # start-up failures: one clear line, never a traceback
        from monitor.config.reload import startup_failure

        print(f"hismon: {startup_failure(exc, config)}", file=sys.stderr)
        return 1
    return 0


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        index, total = (int(x) for x in text.split("/"))
    except ValueError:
        raise SystemExit(f"--shard must look like 0/3, got {text!r}") from None
    if not 0 <= index < total:
        raise SystemExit(f"--shard index must be in 0..{total - 1}")
    return index, total


def cmd_probe(args: argparse.Namespace) -> int:
    from checks.base import ProbeContext
    from monitor.probing.runner import run_probe
    from monitor.telemetry.logs import configure

    configure("error")
    config = load_for_command(args.config)
    wanted = args.checks or [c.id for c in config.checks]
    known = {c.id: c for c in config.checks}
    unknown = [c for c in wanted if c not in known]
    if unknown:
        print(f"unknown check: {', '.join(unknown)}", file=sys.stderr)
        return 3

    async def probe_all() -> list[Any]:
        ctx = ProbeContext()
        if any(known[c].type == "heartbeat" for c in wanted):
            ctx.heartbeats.update(await _stored_heartbeats(config))
        try:
            return await asyncio.gather(*(run_probe(known[c], ctx) for c in wanted))
        finally:
            await ctx.close()

    results = asyncio.run(probe_all())
    for check_id, result in zip(wanted, results, strict=True):
        numbers = " ".join(f"{k}={v:g}" for k, v in result.numbers.items())
        print(f"{result.state.name:<7} {check_id}: {result.message}"
              f" ({result.duration * 1000:.0f}ms){' | ' + numbers if numbers else ''}")
    from monitor.core.result import worst

    # Nagios: CRIT wins over UNKNOWN (2, not 3, when both are there)
    return int(worst([r.state for r in results]))


def cmd_drill(args: argparse.Namespace) -> int:
    from monitor.commands.drill import run_drill
    from monitor.telemetry.logs import configure

    configure("warning")
    config = load_for_command(args.config)
    if args.system not in {s.id for s in config.systems}:
        print(f"unknown system {args.system}", file=sys.stderr)
        return 2
    if args.speed <= 0:
        print("--speed must be positive", file=sys.stderr)
        return 2
    return asyncio.run(run_drill(config, args.system, args.speed, args.live, sys.stdout))


def cmd_report(args: argparse.Namespace) -> int:
    import time

    from monitor.commands.report import build_report, first_probes, render
    from monitor.core.durations import parse_duration
    from monitor.store import open_store

    config = load_for_command(args.config)
    try:
        window = parse_duration(args.since)
    except ValueError as exc:
        print(f"--since: {exc}", file=sys.stderr)
        return 2

    now = time.time()
    if args.format == "html" and not args.vendor:
        print("--format html is the vendor statement: add --vendor NAME", file=sys.stderr)
        return 2
    if args.vendor or args.month:
        from monitor.commands.statement import run_statement

        return run_statement(config, args.vendor, args.month, args.format, now)

    async def load() -> Any:
        store = open_store(config.state.url)
        await store.open()
        try:
            incidents = await store.list_incidents(since=now - window, limit=100_000)
            silences = await store.list_silences()
            first = await first_probes(store, config, now - window, now)
            return build_report(config, incidents, now - window, now, silences, first)
        finally:
            await store.close()

    report = asyncio.run(load())
    sys.stdout.write(render(report, args.format, config))
    return 0


def cmd_notify_test(args: argparse.Namespace) -> int:
    """Send one test message through one notifier and show the channel's answer."""
    import time

    import httpx

    from notifiers.base import NotifyContext, OutgoingMessage

    config = load_for_command(args.config)
    known = {n.id: n for n in config.notifiers}
    if args.notifier not in known:
        print(f"unknown notifier {args.notifier} (known: {', '.join(known)})", file=sys.stderr)
        return 2
    notifier = known[args.notifier]
    zh = config.site.language == "zh"
    message = OutgoingMessage(
        kind="test", idempotency_key=f"test:{args.notifier}:{int(time.time())}",
        recipient=args.notifier,
        title="hismon 测试消息" if zh else "hismon test message",
        text=(f"这是来自 {config.site.name} 监控系统的测试消息，收到即表示通道正常。" if zh else
              f"This is a test message from {config.site.name} monitoring: the channel works."),
        status_url=f"{config.server.base_url}/")

    async def send() -> str:
        async with httpx.AsyncClient(trust_env=False) as client:
            ctx = NotifyContext(http=client, site_name=config.site.name)
            return await asyncio.wait_for(notifier.test(message, ctx), 2 * notifier.timeout + 1)

    from monitor.core.text import scrub

    try:
        answer = asyncio.run(send())
    except Exception as exc:
        text = str(exc) if str(exc) else type(exc).__name__
        print(f"FAILED {args.notifier} ({notifier.type}): {scrub(text, notifier.secrets())}",
              file=sys.stderr)
        return 1
    print(f"OK {args.notifier} ({notifier.type}): {answer}")
    return 0


async def _stored_heartbeats(config: Any) -> dict[str, float]:
    """The daemon's last recorded pings, so `probe` judges a heartbeat check as it would."""
    import os

    from monitor.store import open_store
    from monitor.store.sqlite import SqliteStore

    store = open_store(config.state.url)
    if isinstance(store, SqliteStore) and not os.path.exists(store.path):  # noqa: ASYNC240
        return {}  # no daemon has run here: do not create a state file
    try:
        await store.open()
        return await store.load_heartbeats()
    except Exception:
        return {}
    finally:
        await store.close()


def cmd_demo(args: argparse.Namespace) -> int:
    from monitor.commands.demo import run_demo

    return run_demo(port=args.port, speed=args.speed, duration=args.duration)


# ---- commands that talk to a running daemon ------------------------------------------

def cmd_ack(args: argparse.Namespace) -> int:
    status, data = call_api(args, "POST", f"/api/v1/incidents/{args.incident}/ack",
                         {"by": args.by, "note": args.note})
    if status != 200:
        if status == 401 and not (args.token or os.environ.get("HISMON_API_TOKEN")):
            print("no API token given: use --token or HISMON_API_TOKEN", file=sys.stderr)
        return refused(status, data)
    when = (data.get("acknowledged_at") or "")[:19].replace("T", " ")
    if data["acknowledged_by"] != args.by:
        # The first acknowledgement stands; say so rather than pretend it was ours.
        line = f"{args.incident} was already acknowledged by {data['acknowledged_by']} at {when}"
    else:
        line = f"{args.incident} ({data['system_name']}) acknowledged by {args.by} at {when}"
    try:
        from rich.console import Console
        from rich.text import Text
    except ImportError:  # rich comes with the `all` extra
        print(line)
    else:
        Console(highlight=False).print(Text("✔ ", style="bold green") + Text(line))
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    status, data = call_api(args, "POST", f"/api/v1/incidents/{args.incident}/updates",
                         {"by": args.by, "text": args.text})
    if status != 200:
        return refused(status, data)
    print(f"note recorded on {args.incident}; the next progress update carries it")
    return 0


def cmd_silence(args: argparse.Namespace) -> int:
    body = {"systems": args.system, "end": args.until, "reason": args.reason}
    if args.start:
        body["start"] = args.start
    status, data = call_api(args, "POST", "/api/v1/silences", body)
    if status != 201:
        if status == 401 and not (args.token or os.environ.get("HISMON_API_TOKEN")):
            print("no API token given: use --token or HISMON_API_TOKEN", file=sys.stderr)
        return refused(status, data)
    start, end = (data[k][:16].replace("T", " ") for k in ("start", "end"))
    rows = [("silence", data["id"]), ("systems", ", ".join(data["systems"])),
            ("from", start), ("until", end), ("reason", data["reason"])]
    try:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text
    except ImportError:  # rich comes with the `all` extra
        for key, value in rows:
            print(f"{key:<8} {value}")
        return 0
    table = Table(show_header=False, title="maintenance window created", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, Text(value))
    Console(highlight=False).print(table)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import datetime as dt

    from monitor.core.durations import format_duration

    status, checks = call_api(args, "GET", "/api/v1/checks")
    if status != 200:
        return refused(status, checks) if status else 1
    status, incidents = call_api(args, "GET", "/api/v1/incidents?status=open")
    if status != 200:
        return refused(status, incidents) if status else 1
    if args.json:
        print(json.dumps({"checks": checks["checks"], "incidents": incidents["incidents"]},
                         ensure_ascii=False, indent=2))
        return 0
    status, silences = call_api(args, "GET", "/api/v1/silences")
    windows = silences.get("silences", []) if status == 200 else []
    undelivered: list[dict[str, Any]] = []
    for state in ("undeliverable", "failed"):
        status, found = call_api(args, "GET", f"/api/v1/messages?status={state}")
        undelivered += found.get("messages", []) if status == 200 else []
    now = dt.datetime.now(dt.UTC)

    def ago(stamp: str | None) -> str:
        if not stamp:
            return "never"
        return format_duration(max((now - dt.datetime.fromisoformat(stamp)).total_seconds(), 0))

    def short(stamp: str | None) -> str:
        return (stamp or "")[:16].replace("T", " ")

    state_style = {"OK": "green", "WARN": "bold yellow", "CRIT": "bold white on red",
                   "UNKNOWN": "bold magenta"}
    all_checks = sorted(checks["checks"],
                        key=lambda c: (c["state"] == "OK", c["system"], c["id"]))
    counts = {s: sum(c["state"] == s for c in all_checks) for s in state_style}
    open_incidents = incidents["incidents"]
    summary = (f"hismon at {args.url}: {len(all_checks)} checks ("
               + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
               + f"), {len(open_incidents)} open incident(s)")
    # Each table: title, headers, rows of (text, style) cells.
    tables: list[tuple[str, list[str], list[list[tuple[str, str]]]]] = [(
        "Checks", ["STATE", "CONFIRMED", "SYSTEM", "CHECK", "TYPE", "LAST RUN", "MESSAGE"],
        [[(c["state"] + (" ~flapping" if c["flapping"] else ""), state_style.get(c["state"], "")),
          ("yes" if c["hard"] else "no, retrying", "" if c["hard"] else "yellow"),
          (c["system"], ""), (c["id"], "bold"), (c["type"], ""),
          (ago(c["last_run"]) + (" ago" if c["last_run"] else ""), ""), (c["message"], "")]
         for c in all_checks])]
    if open_incidents:
        tables.append((
            "Open incidents",
            ["INCIDENT", "SEVERITY", "SYSTEM", "SINCE", "DURATION", "CAUSE", "ACKNOWLEDGED"],
            [[(i["id"], "bold"),
              (i["severity"], "bold white on red" if i["severity"] == "critical"
               else "bold yellow"),
              (f"{i['system_name']} ({i['system']})", ""), (short(i["started_at"]), ""),
              (ago(i["started_at"]), ""),
              (i["suspected_cause"] + (f", caused by {i['caused_by']}" if i["caused_by"]
                                       else ""), ""),
              (i["acknowledged_by"] or "NOT ACKNOWLEDGED",
               "" if i["acknowledged_by"] else "bold red")]
             for i in open_incidents]))
    if windows:
        tables.append((
            "Maintenance windows", ["ID", "SYSTEMS", "FROM", "UNTIL", "REASON", ""],
            [[(w["id"], ""), (", ".join(w["systems"]), ""), (short(w["start"]), ""),
              (short(w["end"]), ""), (w["reason"], ""),
              ("in progress" if w.get("active") else "planned",
               "bold blue" if w.get("active") else "")]
             for w in windows]))
    if undelivered:
        tables.append((
            "Messages NOT delivered", ["STATUS", "KIND", "NOTIFIER", "INCIDENT", "CREATED",
                                       "LAST ERROR"],
            [[(m["status"], "bold red"), (m["kind"], ""), (m["notifier"], "bold"),
              (m["incident"] or "", ""), (short(m["created_at"]), ""),
              ((m["last_error"] or "")[:80], "")]
             for m in undelivered[:20]]))
    try:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text
    except ImportError:  # rich comes with the `all` extra; plain columns without it
        print(summary)
        for title, headers, rows in tables:
            cells = [headers] + [[text for text, _ in row] for row in rows]
            widths = [max(len(r[k]) for r in cells) for k in range(len(headers))]
            print(f"\n{title}")
            for row in cells:
                print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        return 0
    # A pipe or a log file gets full lines rather than 80 columns of wrapped cells.
    wide = sys.stdout.isatty() or os.environ.get("COLUMNS")
    console = Console(highlight=False, width=None if wide else 200)
    console.print(Text(summary, style="bold"))
    for title, headers, rows in tables:
        table = Table(title=title, title_justify="left", title_style="bold")
        for header in headers:
            table.add_column(header, overflow="fold",
                             no_wrap=header in ("STATE", "CHECK", "INCIDENT", "ID"))
        for styled in rows:
            # Text, not markup: a message like "[STATUS] 503" must print as it is.
            table.add_row(*(Text(text, style=style) for text, style in styled))
        console.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hismon", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str,
            config: bool = False, url: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(func=func)
        if config:
            p.add_argument("-c", "--config", required=True, help="config file (YAML)")
        if url:
            p.add_argument("--url", default=os.environ.get("HISMON_URL", DEFAULT_URL))
            p.add_argument("--token", default=None, help="API token (or HISMON_API_TOKEN)")
        return p

    p = add("run", cmd_run, "run the daemon in the foreground", config=True)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--shard", help="I/N: run only this instance's share of the checks")
    p.add_argument("--insecure", action="store_true",
                   help="listen on a non-loopback address even without server.api_tokens")
    p = add("validate", cmd_validate, "validate a config file", config=True)
    p.add_argument("--expand", action="store_true",
                   help="print every check after templates and apply rules, secrets masked")
    p = add("probe", cmd_probe, "run checks once and print one line each", config=True)
    p.add_argument("checks", nargs="*", metavar="CHECK_ID")
    p = add("demo", cmd_demo, "run a simulated hospital and the daemon against it")
    p.add_argument("--port", type=int, default=9464)
    p.add_argument("--speed", type=float, default=1.0, help="compress the demo timeline N×")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds (default: run until Ctrl-C)")
    p = add("drill", cmd_drill, "rehearse a system's emergency plan (messages marked DRILL)",
            config=True)
    p.add_argument("--system", required=True)
    p.add_argument("--speed", type=float, default=60.0, help="compress time N× (default 60)")
    p.add_argument("--live", action="store_true",
                   help="send to every notifier, not only those marked drill: true")
    p = add("report", cmd_report, "availability, incidents, MTTA/MTTR per system and vendor",
            config=True)
    p.add_argument("--since", default="30d")
    p.add_argument("--format", choices=["table", "csv", "json", "html"], default="table",
                   help="html only with --vendor")
    p.add_argument("--vendor", help="the monthly SLA statement of this vendor (any language)")
    p.add_argument("--month", help="YYYY-MM, with --vendor (default: the current month)")
    p = add("notify-test", cmd_notify_test, "send a test message through one notifier",
            config=True)
    p.add_argument("notifier")
    p = add("status", cmd_status, "checks and open incidents of a running daemon", url=True)
    p.add_argument("--json", action="store_true")
    p = add("ack", cmd_ack, "acknowledge an incident", url=True)
    p.add_argument("incident")
    p.add_argument("--by", required=True)
    p.add_argument("--note")
    p = add("update", cmd_update, "record the incident lead's progress note", url=True)
    p.add_argument("incident")
    p.add_argument("--text", required=True)
    p.add_argument("--by", default=os.environ.get("USER", "incident lead"))
    p = add("silence", cmd_silence, "maintenance window at run time", url=True)
    p.add_argument("--system", action="append", required=True)
    p.add_argument("--until", required=True, help="RFC 3339 time or a duration like 2h")
    p.add_argument("--start", help="RFC 3339 time (default now)")
    p.add_argument("--reason", required=True)
    from monitor.commands import people

    people.register(add)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        code = 0
    raise SystemExit(code)


if __name__ == "__main__":
    main()
