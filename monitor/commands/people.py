"""Commands of SPEC §13: `oncall` (from the config), `declare`, `resolve`, `review` (API)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

Add = Callable[..., argparse.ArgumentParser]


def cmd_oncall(args: argparse.Namespace) -> int:
    import datetime as dt

    from monitor.commands.common import load_for_command
    from monitor.people.oncall import oncall, render_table

    config = load_for_command(args.config)
    at = time.time()
    if args.at:
        try:
            moment = dt.datetime.fromisoformat(args.at)
        except ValueError:
            print(f"--at: invalid time {args.at!r} (ISO 8601)", file=sys.stderr)
            return 2
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=config.site.tz)
        at = moment.timestamp()
    sys.stdout.write(render_table(oncall(config, at, args.days)))
    return 0


def cmd_declare(args: argparse.Namespace) -> int:
    from monitor.commands.common import call_api, refused

    status, data = call_api(args, "POST", "/api/v1/incidents",
                         {"system": args.system, "severity": args.severity,
                          "title": args.title, "by": args.by})
    if status != 201:
        if status == 409 and data and data.get("incident"):
            print(f"{args.system} already has open incident {data['incident']['id']}",
                  file=sys.stderr)
            return 1
        return refused(status, data)
    print(f"{data['id']} declared: {data['system_name']} {data['severity']}, "
          f"\"{data['title']}\" by {args.by}; the plan runs")
    return 0


def cmd_resolve(args: argparse.Namespace) -> int:
    from monitor.commands.common import call_api, refused

    status, data = call_api(args, "POST", f"/api/v1/incidents/{args.incident}/resolve",
                         {"by": args.by, "note": args.note})
    if status != 200:
        return refused(status, data)
    when = (data.get("resolved_at") or "")[:19].replace("T", " ")
    print(f"{args.incident} ({data['system_name']}) resolved by {args.by} at {when}")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    import json

    import httpx

    from monitor.commands.common import api_client, call_api, refused
    from monitor.people.review import review_markdown

    lang = {"lang": args.lang} if args.lang else {}
    if args.format == "html":
        try:
            with api_client(args) as client:
                response = client.get(f"/incidents/{args.incident}/review",
                                      params=lang)
        except httpx.HTTPError as exc:
            print(f"cannot reach hismon at {args.url}: {exc}", file=sys.stderr)
            return 1
        if response.status_code != 200:
            return refused(response.status_code, {"error": f"no incident {args.incident}"})
        sys.stdout.write(response.text)
        return 0
    status, data = call_api(args, "GET", f"/api/v1/incidents/{args.incident}/review"
                            + (f"?lang={args.lang}" if args.lang else ""))
    if status != 200:
        return refused(status, data)
    if args.format == "json":
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(review_markdown(data))
    return 0


def register(add: Add) -> None:
    """Add this module's subcommands to the `hismon` parser."""
    p = add("oncall", cmd_oncall, "who is on duty in each schedule, and the coming handovers",
            config=True)
    p.add_argument("--at", help="ISO 8601 time (default now; without offset: site time)")
    p.add_argument("--days", type=float, default=14, help="handovers this far ahead")
    p = add("declare", cmd_declare, "declare an incident by hand (a help-desk call)", url=True)
    p.add_argument("--system", required=True)
    p.add_argument("--severity", required=True, choices=["critical", "warning"])
    p.add_argument("--title", required=True)
    p.add_argument("--by", required=True)
    p = add("resolve", cmd_resolve, "resolve an incident by hand", url=True)
    p.add_argument("incident")
    p.add_argument("--by", required=True)
    p.add_argument("--note")
    p = add("review", cmd_review, "the post-incident review of an incident", url=True)
    p.add_argument("incident")
    p.add_argument("--format", choices=["md", "html", "json"], default="md")
    p.add_argument("--lang", choices=["zh", "en"],
                   help="the review's language (default: the site's, `site.language`)")


