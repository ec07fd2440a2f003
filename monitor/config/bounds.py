"""Sane bounds on every duration and number `run` relies on, checked by `validate` (issue 11).

The model says what a key *is*; this says what a hospital can *mean* by it. A config that
passes here cannot make `run` overflow a timer (`interval: 99999999999999999999d`), flood a
ward (`every: 1ms`), never send (`rate_limit: 0/min`), keep its state only in memory
(`sqlite://`), listen on port 99999 or crash the status page (a window ending in year 9999).
The bounds are documented in docs/configuration.md ("Limits"); keep the two in step.

New sections add a function to `CHECKS` below.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from monitor.config.document import KeyPath
from monitor.config.model import Config
from monitor.core.durations import format_duration


class Reporter(Protocol):
    def report(self, path: KeyPath, message: str) -> None: ...


MS, S, MIN, H, D = 0.001, 1.0, 60.0, 3600.0, 86400.0

# (key, lowest, highest) for the timing keys of `defaults` and of every check.
TIMING: tuple[tuple[str, float, float], ...] = (
    ("interval", 1 * S, 7 * D),
    ("timeout", 10 * MS, 10 * MIN),
    ("retry_interval", 100 * MS, 1 * D),
)
COUNTS: tuple[tuple[str, int, int], ...] = (("confirm", 1, 100), ("recover", 1, 100))
STEP_AFTER = (0.0, 30 * D)
STEP_EVERY = (1 * S, 7 * D)
MAX_HOLD = (0.0, 7 * D)
GROUP_WINDOW = (0.0, 5 * MIN)
"""Longer would hold an outage's first message back for longer than anyone waits."""
RESPONSE_SLA = (1 * MIN, 30 * D)
NOTIFIER_TIMEOUT = (100 * MS, 5 * MIN)
RETRY_INITIAL = (10 * MS, 1 * H)
RETRY_MAX_DELAY = (10 * MS, 1 * D)
RETRY_MAX_AGE = (1 * MIN, 30 * D)
RATE_COUNT = (1, 100_000)
ANNOUNCE = (1 * MIN, 90 * D)
YEARS = (2000, 2099)
POOL_SIZE = (1, 100)
QUERY_TIMEOUT = (0.1, 600.0)


def _duration(out: Reporter, path: KeyPath, value: float | None,
              limits: tuple[float, float]) -> None:
    if value is None:
        return
    low, high = limits
    if value < low:
        out.report(path, f"{_show(value)} is too short (at least {_show(low)})")
    elif value > high:
        out.report(path, f"{_show(value)} is too long (at most {_show(high)})")


def _show(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return format_duration(seconds) if seconds < 1e12 else f"{seconds:.3g}s"


def _count(out: Reporter, path: KeyPath, value: int | None, limits: tuple[int, int]) -> None:
    if value is not None and not limits[0] <= value <= limits[1]:
        shown = str(value) if len(str(value)) < 20 else f"{str(value)[:8]}…"
        out.report(path, f"{shown} is out of range ({limits[0]}..{limits[1]})")


def _timing(out: Reporter, prefix: KeyPath, holder: Any, inherited: set[str]) -> None:
    for key, low, high in TIMING:
        if key not in inherited:
            _duration(out, (*prefix, key), getattr(holder, key, None), (low, high))
    for key, c_low, c_high in COUNTS:
        if key not in inherited:
            _count(out, (*prefix, key), getattr(holder, key, None), (c_low, c_high))


def check_timing(out: Reporter, config: Config) -> None:
    _timing(out, ("defaults",), config.defaults, set())
    _duration(out, ("defaults", "flapping", "max_hold"), config.defaults.flapping.max_hold,
              MAX_HOLD)
    fields: dict[type, set[str]] = {}
    for index, check in enumerate(config.checks):
        # Keys a check inherited were judged once, at `defaults`.
        kind = type(check)
        if kind not in fields:
            fields[kind] = set(kind.model_fields)
        _timing(out, ("checks", index), check, fields[kind] - check.model_fields_set)


def check_plans(out: Reporter, config: Config) -> None:
    _duration(out, ("alerting", "group_window"), config.alerting.group_window, GROUP_WINDOW)
    for p_index, plan in enumerate(config.plans):
        for s_index, step in enumerate(plan.steps):
            path = ("plans", p_index, "steps", s_index)
            _duration(out, (*path, "after"), step.after, STEP_AFTER)
            _duration(out, (*path, "every"), step.every, STEP_EVERY)
    for index, system in enumerate(config.systems):
        if system.vendor is not None:
            _duration(out, ("systems", index, "vendor", "response_sla"),
                      system.vendor.response_sla, RESPONSE_SLA)


def check_notifiers(out: Reporter, config: Config) -> None:
    from notifiers.base import parse_rate

    for index, notifier in enumerate(config.notifiers):
        path: KeyPath = ("notifiers", index)
        _duration(out, (*path, "timeout"), notifier.timeout, NOTIFIER_TIMEOUT)
        retry = notifier.retry
        _duration(out, (*path, "retry", "initial"), retry.initial, RETRY_INITIAL)
        _duration(out, (*path, "retry", "max_delay"), retry.max_delay, RETRY_MAX_DELAY)
        _duration(out, (*path, "retry", "max_age"), retry.max_age, RETRY_MAX_AGE)
        if retry.max_delay < retry.initial:
            out.report((*path, "retry", "max_delay"), "must not be shorter than `initial`")
        if notifier.rate_limit is not None:
            count, _per = parse_rate(notifier.rate_limit)
            if count < RATE_COUNT[0]:
                out.report((*path, "rate_limit"), "0 messages per period would never send "
                           "(messages would wait for ever and no fallback would be used)")
            else:
                _count(out, (*path, "rate_limit"), count, RATE_COUNT)


def check_maintenance(out: Reporter, config: Config) -> None:
    for index, window in enumerate(config.maintenance):
        for key in ("start", "end"):
            when: dt.datetime | None = getattr(window, key)
            if when is not None and not YEARS[0] <= when.year <= YEARS[1]:
                out.report(("maintenance", index, key),
                           f"year {when.year} is out of range ({YEARS[0]}..{YEARS[1]})")
        for a_index, ahead in enumerate(window.announce):
            _duration(out, ("maintenance", index, "announce", a_index), ahead, ANNOUNCE)


def check_server(out: Reporter, config: Config) -> None:
    host, port_text = config.server.listen.rsplit(":", 1)
    port = int(port_text)
    if not 1 <= port <= 65535:
        out.report(("server", "listen"), f"port {port} is out of range (1..65535)")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not host or len(host) > 253 or not all(
                part and len(part) <= 63 and part.replace("-", "").isalnum()
                for part in host.split(".")):
            out.report(("server", "listen"), f'"{host}" is not an IP address or host name')


def check_state(out: Reporter, config: Config) -> None:
    """The store URL must open as written: `run` fails at start-up otherwise."""
    url = config.state.url
    path: KeyPath = ("state", "url")
    if url.startswith("sqlite://"):
        from monitor.store.sqlite import _path_of

        if url.rstrip("/") == "sqlite:":
            out.report(path, "no file named: the state would live only in memory and be lost "
                             "on restart (write e.g. sqlite:///./hismon-state.db)")
            return
        file = _path_of(url)
        if file != ":memory:":
            problem = _unwritable(Path(file))
            if problem:
                out.report(path, problem)
        return
    try:
        from monitor.store.postgres import parse_url

        _conninfo, _schema, pool_size, query_timeout = parse_url(url)
    except ValueError as exc:
        out.report(path, str(exc).removeprefix("state.url: "))
        return
    except ImportError:
        return
    _count(out, (*path,), pool_size, POOL_SIZE)
    if not QUERY_TIMEOUT[0] <= query_timeout <= QUERY_TIMEOUT[1]:
        out.report(path, f"query_timeout {query_timeout:g} is out of range "
                         f"({QUERY_TIMEOUT[0]:g}..{QUERY_TIMEOUT[1]:g} seconds)")


def _unwritable(file: Path) -> str | None:
    """Why hismon could not create or write `file`, or None when it can."""
    if file.is_dir():
        return f"{file} is a directory, not a database file"
    if file.exists():
        return None if os.access(file, os.R_OK | os.W_OK) else f"{file} is not writable"
    parent = file.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a directory: cannot create {file}"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create {file}: {parent} is not writable"
    return None


CHECKS: list[Callable[[Reporter, Config], None]] = [
    check_timing, check_plans, check_notifiers, check_maintenance, check_server, check_state,
]


def check(out: Reporter, config: Config) -> None:
    for one in CHECKS:
        one(out, config)
