"""What the SQL checks (postgres, mysql, oracle, mssql) share: target, phases, judging, secrets.

Each driver module only says how to connect, run one query and read one row, and how to
classify its driver's exceptions. Everything the on-call reads is built here, so the four
databases speak alike: `connection refused 10.1.2.3:1521`, `login failed for user his_mon
on 10.1.2.3:1433`, `query returned 93.5 above CRIT limit 90`.

Passwords never reach a message: they are masked in `public_config` (`secret_fields`), and
every error text is scrubbed of the password and of any `scheme://user:password@` part.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import Field, field_validator, model_validator

from checks.base import (
    CheckBase,
    LatencyThresholds,
    ProbeContext,
    ValueThresholds,
    network_reason,
    require_driver,
    time_budget,
)
from monitor.core.durations import format_duration
from monitor.core.result import Result, State
from monitor.core.text import first_line, host_port, scrub
from monitor.core.types import Cause


@dataclass(slots=True)
class Target:
    """Where and as whom to connect, from `dsn` or from the separate keys."""

    host: str
    port: int
    user: str | None
    password: str | None
    database: str | None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return host_port(self.host, self.port)


@dataclass(slots=True)
class Progress:
    """Which phase a probe is in, so a timeout can say whether login or the query hung."""

    phase: str = "connect"
    connected_at: float | None = None

    def connected(self) -> None:
        self.phase = "query"
        self.connected_at = time.perf_counter()


class Failure(Exception):
    """A classified driver error: `kind` decides state and cause, `detail` is safe to show.

    kinds: network (cannot reach), auth (login refused), database (the database itself is
    unavailable: missing, starting, in recovery), capacity (too many connections),
    protocol (something answered that is not this database), query (the query failed).
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (`raise ... from`), outermost first."""
    links: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in links:
        links.append(current)
        current = current.__cause__ or current.__context__
    return links


def os_error_in_chain(exc: BaseException) -> OSError | None:
    """The socket error a driver wrapped (aiomysql, pytds and oracledb all wrap them).

    A driver's own timeout often wraps the real reason (`TimeoutError from
    ConnectionRefusedError`), so a specific error deeper in the chain wins over a timeout.
    """
    found: OSError | None = None
    for link in _chain(exc):
        if isinstance(link, OSError):
            if not isinstance(link, TimeoutError):
                return link
            found = found or link
    return found


def as_number(value: Any) -> float | None:
    """Numbers from any driver type; an interval (replication lag) becomes seconds."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float, decimal.Decimal)):
        return float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (str, bytes)):
        try:
            return float(value)
        except ValueError:
            return None
    return None


class DatabaseCheck(CheckBase):
    """Connect, run `query`, judge the first column of the first row with `value`."""

    dsn: str | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    password: str | None = None
    database: str | None = None
    query: str = "SELECT 1"
    value: ValueThresholds | None = None
    latency: LatencyThresholds | None = None

    secret_fields = ("dsn", "password")
    schemes: ClassVar[tuple[str, ...]] = ()
    default_port: ClassVar[int] = 0
    driver: ClassVar[tuple[str, str]] = ("", "")
    """(module to import, name of the pip extra that installs it)."""
    product: ClassVar[str] = "database"
    dsn_params: ClassVar[tuple[str, ...] | None] = ()
    """Query parameters a DSN may carry (None: any, passed through to the driver)."""

    @field_validator("type")
    @classmethod
    def _driver_installed(cls, value: str) -> str:
        module, extra = cls.driver
        require_driver(module, extra, value)
        return value

    @model_validator(mode="after")
    def _one_way_to_connect(self) -> DatabaseCheck:
        separate = [k for k in ("host", "port", "user", "password", "database")
                    if getattr(self, k) is not None]
        if self.dsn is None and self.host is None:
            raise ValueError(f"give `dsn` ({self.schemes[0]}://user:password@host:port/...) "
                             "or `host` (with port, user, password, database)")
        if self.dsn is not None and separate:
            raise ValueError(f"give either `dsn` or {', '.join(separate)}, not both")
        if self.dsn is not None:
            self._check_dsn(self.dsn)
        return self

    def _check_dsn(self, dsn: str) -> None:
        scheme = dsn.split("://", 1)[0].lower() if "://" in dsn else ""
        if scheme not in self.schemes:
            # never echo the DSN itself: it holds the password
            allowed = " or ".join(f"{s}://" for s in self.schemes)
            raise ValueError(f"`dsn` must start with {allowed}")
        netloc = dsn.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
        if netloc.count("@") > 1:
            # urlsplit would take the rest of the password for the host: "DNS lookup failed"
            raise ValueError("`dsn` has more than one `@` before the host: write an `@` in "
                             "the user name or password as %40")
        parts = urlsplit(dsn)
        if not parts.hostname:
            raise ValueError("`dsn` has no host")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError("`dsn` has an invalid port") from None
        if self.dsn_params is not None:
            unknown = sorted({k for k, _ in parse_qsl(parts.query)} - set(self.dsn_params))
            if unknown:
                known = ", ".join(self.dsn_params) or "none"
                raise ValueError(f"`dsn` parameter {unknown[0]!r} is not supported "
                                 f"(supported: {known})")

    def target(self) -> Target:
        if self.dsn is None:
            assert self.host is not None
            return Target(self.host, self.port or self.default_port, self.user, self.password,
                          self.database)
        parts = urlsplit(self.dsn)
        return Target(
            host=parts.hostname or "localhost",
            port=parts.port or self.default_port,
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            database=unquote(parts.path.lstrip("/")) or None,
            params=dict(parse_qsl(parts.query)),
        )

    # ---- what each driver module provides ------------------------------------------------

    async def fetch_first_row(
        self, ctx: ProbeContext, target: Target, budget: float, progress: Progress
    ) -> tuple[Any, ...] | None:  # pragma: no cover - abstract
        """Connect, call `progress.connected()`, run the query, return the first row."""
        raise NotImplementedError

    def classify(self, exc: Exception, progress: Progress) -> Failure | None:
        """Turn a driver exception into a Failure; None if unrecognised."""
        return None

    # ---- shared measuring and judging ------------------------------------------------------

    async def probe(self, ctx: ProbeContext) -> Result:
        target = self.target()
        budget = time_budget(self)
        progress = Progress()
        started = time.perf_counter()
        deadline = asyncio.timeout(budget)
        try:
            async with deadline:
                row = await self.fetch_first_row(ctx, target, budget, progress)
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                return self._timed_out(target, budget, progress, started)
            failure = self._classify(exc, progress)
            if failure is None:  # the driver's own timeout, with nothing more specific
                return self._timed_out(target, budget, progress, started)
            return self._failed(failure, target, time.perf_counter() - started)
        elapsed = time.perf_counter() - started
        numbers = {"latency_seconds": elapsed}
        if progress.connected_at is not None:
            numbers["connect_seconds"] = progress.connected_at - started
            numbers["query_seconds"] = time.perf_counter() - progress.connected_at
        return self._judge(row, numbers, elapsed)

    def _classify(self, exc: Exception, progress: Progress) -> Failure | None:
        """The most specific reason in the exception chain; None for a bare timeout."""
        failure: Failure | None = None
        for link in _chain(exc):
            if isinstance(link, Failure):
                failure = link
            elif isinstance(link, Exception):
                failure = self.classify(link, progress)
            if failure is not None:
                break
        if failure is None:
            os_error = os_error_in_chain(exc)
            if isinstance(os_error, TimeoutError):
                return None
            if os_error is not None and progress.phase == "connect":
                failure = Failure("network", network_reason(os_error))
            else:
                kind = "query" if progress.phase == "query" else "protocol"
                failure = Failure(kind, first_line(f"{type(exc).__name__}: {exc}"))
        target = self.target()
        failure.detail = scrub(failure.detail, [target.password, self.dsn])
        return failure

    def _failed(self, failure: Failure, target: Target, elapsed: float) -> Result:
        where, detail = target.where, failure.detail
        numbers = {"latency_seconds": elapsed}
        if failure.kind == "network":
            if detail == "DNS lookup failed":
                return Result.crit(f"DNS lookup failed for {target.host}", Cause.NETWORK, **numbers)
            return Result.crit(f"{detail} {where}", Cause.NETWORK, **numbers)
        if failure.kind == "auth":
            # the monitoring account, not the database, is what we know to be wrong
            return Result(State.UNKNOWN,
                          f"login failed for user {target.user or '(default)'} on {where}: "
                          f"{detail}", numbers=numbers, cause=Cause.DATABASE)
        if failure.kind == "capacity":
            return Result.crit(f"{where} refuses connections: {detail}", Cause.CAPACITY, **numbers)
        if failure.kind == "database":
            return Result.crit(f"{detail} ({where})", Cause.DATABASE, **numbers)
        if failure.kind == "protocol":
            return Result.crit(f"{where} does not speak the {self.product} protocol: {detail}",
                               Cause.DATABASE, **numbers)
        return Result.crit(f"query failed on {where}: {detail}", Cause.DATABASE, **numbers)

    def _timed_out(
        self, target: Target, budget: float, progress: Progress, started: float
    ) -> Result:
        took = format_duration(budget)
        numbers = {"latency_seconds": time.perf_counter() - started}
        if progress.phase == "connect":
            return Result.crit(f"no answer from {target.where} within {took} while logging in",
                               Cause.NETWORK, **numbers)
        return Result.crit(f"query on {target.where} did not finish within {took}",
                           Cause.DATABASE, **numbers)

    def _judge(self, row: tuple[Any, ...] | None, numbers: dict[str, float],
               elapsed: float) -> Result:
        took = format_duration(elapsed)
        raw = row[0] if row else None
        number = as_number(raw)
        if number is not None:
            numbers["value"] = number
        if self.value is None:
            shown = "no rows" if not row else _show(raw)
            result = Result(State.OK, f"query returned {shown} in {took}", numbers=numbers)
        elif not row:
            return Result(State.UNKNOWN, f"query returned no rows in {took}, nothing to judge",
                          numbers=numbers, cause=Cause.DATABASE)
        elif number is None:
            return Result(State.UNKNOWN, f"query returned {_show(raw)}, not a number",
                          numbers=numbers, cause=Cause.DATABASE)
        else:
            state = self.value.judge(number)
            text = self.value.describe(number, "query returned")
            cause = Cause.CAPACITY if state is not State.OK else None
            result = Result(state, f"{text} in {took}" if state is State.OK else text,
                            numbers=numbers, cause=cause)
        if self.latency is not None:
            self.latency.apply(result, elapsed)
        return result


def _show(value: Any) -> str:
    if value is None:
        return "NULL"
    number = as_number(value)
    if number is not None and not isinstance(value, (str, bytes)):
        return f"{number:g}"
    text = str(value)
    return f'"{text[:60]}"'
