"""Commands of SPEC §13: `oncall` (from the config), `declare`, `resolve`, `review` (API)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

Add = Callable[..., argparse.ArgumentParser]


def cmd_oncall(args: argparse.Namespace) -> int:
    import datetime as dt

    from monitor.commands.cli import _load
    from monitor.people.oncall import oncall, render_table

    config = _load(args.config)
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


def register(add: Add) -> None:
    """Add this module's subcommands to the `hismon` parser."""
    p = add("oncall", cmd_oncall, "who is on duty in each schedule, and the coming handovers",
            config=True)
    p.add_argument("--at", help="ISO 8601 time (default now; without offset: site time)")
    p.add_argument("--days", type=float, default=14, help="handovers this far ahead")


