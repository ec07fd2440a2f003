"""What every check type shares: timing keys, thresholds, and the probe context.

A check module defines one pydantic model (its YAML keys) with an async `probe(ctx)` that
only measures and judges. The runner in `monitor/probing/runner.py` owns timeout, timing and
exception handling, so a probe may let unexpected errors escape: they become UNKNOWN there.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import functools
import importlib
import math
import socket
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import Field, PositiveInt, PrivateAttr, model_validator

from monitor.core.durations import Duration, format_against, format_duration
from monitor.core.exhaustion import ExhaustionLog, witness
from monitor.core.result import Result, State
from monitor.core.strict import Strict
from monitor.core.text import header_secrets, mask_url, scrub_forms, secret_forms, url_secrets
from monitor.core.types import Cause

if TYPE_CHECKING:
    import aiohttp

T = TypeVar("T")


class ValueThresholds(Strict):
    """`{warn: X, crit: Y}` on a number; `below: true` when smaller is worse (free space)."""

    warn: float | None = None
    crit: float | None = None
    below: bool = False

    def judge(self, value: float) -> State:
        def breached(limit: float | None) -> bool:
            if limit is None:
                return False
            return value < limit if self.below else value > limit

        if breached(self.crit):
            return State.CRIT
        if breached(self.warn):
            return State.WARN
        return State.OK

    def describe(self, value: float, label: str = "value") -> str:
        """Says which limit was passed, so the alert shows what was seen against what was wanted."""
        state = self.judge(value)
        if state is State.OK:
            return f"{label} {value:g}"
        limit = self.crit if state is State.CRIT else self.warn
        word = "below" if self.below else "above"
        return f"{label} {value:g} {word} {state.name} limit {limit:g}"


class LatencyThresholds(Strict):
    """`{warn: 800ms, crit: 3s}` on a response time."""

    warn: Duration | None = None
    crit: Duration | None = None

    def judge(self, seconds: float) -> State:
        if self.crit is not None and seconds > self.crit:
            return State.CRIT
        if self.warn is not None and seconds > self.warn:
            return State.WARN
        return State.OK

    def apply(self, result: Result, seconds: float) -> Result:
        """Degrade an otherwise OK result when it was slow: the early warning before an outage."""
        state = self.judge(seconds)
        if state > result.state or (result.state is State.OK and state is not State.OK):
            limit = self.crit if state is State.CRIT else self.warn
            assert limit is not None
            result.state = state
            seen, wanted = format_against(seconds, limit)
            result.message = f"{result.message}, slow: {seen} > {wanted}"
            # A slow answer is no resource threshold (SPEC §4): the cause rules blame the
            # layer that answered slowly.
            result.cause = result.cause or Cause.LATENCY
        return result


class TrendConfig(Strict):
    """Early warning from a check's own history, before any threshold or hard failure."""

    window: PositiveInt = 20
    baseline: PositiveInt = 100
    latency_factor: float | None = Field(default=3.0, gt=1)
    failure_ratio: float | None = Field(default=None, gt=0, le=1)


class ForecastConfig(Strict):
    """`forecast: {number: value, window: 6h, warn_within: 2h}`: WARN before a limit is hit.

    After Zabbix `timeleft`: a least-squares line through the number's samples over `window`
    says when it reaches the check's own CRIT threshold (SPEC 15).
    """

    number: str = Field(min_length=1)
    """One of the result's numbers: `value` (database, prometheus, snmp), `latency_seconds`."""
    window: Duration = Field(gt=0)
    warn_within: Duration = Field(gt=0)
    label: str | None = None
    """What the message calls the number (default: the check's `name`, else `number`)."""
    unit: str | None = Field(default=None, max_length=8)
    """Written after each figure (`%`, ` GB`); default `s` for `*_seconds`, else none."""


class CheckBase(Strict):
    """Keys every check has; timing keys left unset inherit from the config's `defaults`."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    system: str
    type: str
    name: str | None = None
    interval: Duration | None = None
    timeout: Duration | None = None
    retry_interval: Duration | None = None
    confirm: PositiveInt | None = None
    recover: PositiveInt | None = None
    trend: TrendConfig | None = None
    vantage_quorum: PositiveInt = 1
    """How many hismon instances must see the failure before it counts (SPEC §9)."""
    forecast: ForecastConfig | None = None

    secret_fields: ClassVar[tuple[str, ...]] = ()
    """Keys whose values must never reach logs, API answers or messages."""
    _secret_forms: tuple[str, ...] | None = PrivateAttr(default=None)
    pushed: ClassVar[bool] = False
    """Results are pushed to hismon (passive): the schedule only asks `overdue()`."""

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> CheckBase:
        if self.timeout is not None and self.interval is not None and self.timeout > self.interval:
            raise ValueError(
                f"timeout {format_duration(self.timeout)} is longer than interval "
                f"{format_duration(self.interval)}"
            )
        return self

    @model_validator(mode="after")
    def _forecast_has_a_limit(self) -> CheckBase:
        if self.forecast is not None and self.crit_limit(self.forecast.number) is None:
            raise ValueError(
                f"forecast: this check has no CRIT threshold on {self.forecast.number!r} "
                "to forecast (set `value: {crit: ...}`, or `latency` for latency_seconds)")
        return self

    def crit_limit(self, number: str) -> tuple[float, bool] | None:
        """(CRIT threshold, crossed upwards?) this check judges `number` by, if it has one.

        `value` thresholds judge `value`; `latency` (or http's `expect.latency`) judges
        `latency_seconds`. Upwards when warn < crit, downwards when warn > crit; with only
        `crit`, `below: true` means downwards.
        """
        warn: float | None = None
        crit: float | None = None
        upwards = True
        if number == "value":
            value = getattr(self, "value", None)
            if isinstance(value, ValueThresholds):
                warn, crit, upwards = value.warn, value.crit, not value.below
        elif number == "latency_seconds":
            latency = getattr(self, "latency", None) or getattr(
                getattr(self, "expect", None), "latency", None)
            if isinstance(latency, LatencyThresholds):
                warn, crit = latency.warn, latency.crit
        if crit is None:
            return None
        if warn is not None and warn != crit:
            upwards = warn < crit
        return crit, upwards

    @property
    def display_name(self) -> str:
        return self.name or self.id

    async def probe(self, ctx: ProbeContext) -> Result:  # pragma: no cover - abstract
        raise NotImplementedError

    def overdue(self, ctx: ProbeContext, now: float, tz: dt.tzinfo | None = None) -> Result | None:
        """For pushed checks: the result to record when pushes stopped coming, else None."""
        return None

    def public_config(self) -> dict[str, Any]:
        """The check's settings with secrets masked, for the API and `hismon probe -v`."""
        data = self.model_dump(mode="json", exclude_none=True)
        for key in self.secret_fields:
            if key in data:
                data[key] = "***"
        for key, value in data.items():
            if isinstance(value, str) and "://" in value:
                data[key] = mask_url(value)  # a Prometheus `url` with user:password@
        return data

    def secrets(self) -> list[str]:
        """Values no result message may show: every `secret_fields` value (a command's
        `env`, a database password, credential-like headers) and any URL's password."""
        values: list[str] = []
        for name in self.secret_fields:
            value = getattr(self, name, None)
            if isinstance(value, dict):
                values += header_secrets(value) if name == "headers" \
                    else [str(v) for v in value.values()]
            elif isinstance(value, str) and "://" in value:
                values += url_secrets(value)
            elif isinstance(value, str):
                values.append(value)
        for name, value in self:
            if isinstance(value, str) and "://" in value and name not in self.secret_fields:
                password = urlsplit(value).password if "@" in value else None
                if password:
                    values += [password, unquote(password)]
        return values

    def scrub(self, text: str) -> str:
        """`text` with this check's secrets masked (the runner does it to every result).

        Runs on every result: the private attribute is read from pydantic's dict directly
        (`self._secret_forms` takes pydantic's `__getattr__`, a failed lookup and an
        AttributeError each time), and a check without secrets returns a text that has no
        `@` and no `=` as it is: `scrub_forms` would only run its two patterns
        (`user:password@`, `password=`), which cannot match it.
        """
        private = self.__pydantic_private__
        assert private is not None  # pydantic sets it: this model has private attributes
        forms = private["_secret_forms"]
        if forms is None:
            forms = private["_secret_forms"] = secret_forms(self.secrets())
        if not forms and "@" not in text and "=" not in text:
            return text
        return scrub_forms(text, forms)


class ProbeContext:
    """Resources probes share: one HTTP session per TLS setup, a bounded pool for sync drivers.

    Building a TLS context costs about 25 ms, so one per probe would dominate the CPU budget;
    a session per distinct TLS configuration keeps that cost at start-up.
    """

    def __init__(self, blocking_threads: int = 8) -> None:
        self._sessions: dict[tuple[Any, ...], aiohttp.ClientSession] = {}
        self._ssl_contexts: dict[tuple[Any, ...], ssl.SSLContext] = {}
        self.blocking_pool = ThreadPoolExecutor(
            max_workers=blocking_threads, thread_name_prefix="hismon-driver"
        )
        self.heartbeats: dict[str, float] = {}
        self.app_state: dict[str, Any] = {}
        # Built now, not inside the first HTTPS/TLS probe's timeout: loading the system's CA
        # certificates can take longer than a probe's spare tenth of its budget.
        self.ssl_context()
        self._resources: dict[tuple[Any, ...], tuple[Any, Callable[[Any], None]]] = {}
        self.exhaustion = ExhaustionLog()
        """Probes that failed because hismon itself ran out of descriptors (the runner)."""

    def resource(self, key: tuple[Any, ...], create: Callable[[], Any],
                 close: Callable[[Any], None]) -> Any:
        """A costly client object shared by probes (an SNMP engine costs ~150 ms of CPU).

        Made on first use, closed by `close()`; `key` says which probes may share one.
        """
        found = self._resources.get(key)
        if found is None:
            found = self._resources[key] = (create(), close)
        return found[0]

    def ssl_context(
        self,
        verify: bool = True,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
    ) -> ssl.SSLContext:
        key = (verify, ca_file, cert_file, key_file)
        ctx = self._ssl_contexts.get(key)
        if ctx is None:
            ctx = ssl.create_default_context(cafile=ca_file)
            if not verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if cert_file:
                ctx.load_cert_chain(cert_file, key_file)
            self._ssl_contexts[key] = ctx
        return ctx

    def http_session(self, tls_key: tuple[Any, ...], ctx: ssl.SSLContext) -> aiohttp.ClientSession:
        import aiohttp

        session = self._sessions.get(tls_key)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                ssl=ctx, force_close=True, limit=0, ttl_dns_cache=10
            )
            session = aiohttp.ClientSession(
                connector=connector,
                response_class=_response_class(),
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "hismon"},
            )
            self._sessions[tls_key] = session
        return session

    async def run_blocking(self, func: Callable[..., T], *args: Any) -> T:
        """Run a sync driver call in the bounded pool so a stuck driver cannot starve the loop."""
        return await asyncio.get_running_loop().run_in_executor(self.blocking_pool, func, *args)

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
        for value, close in self._resources.values():
            close(value)
        self._resources.clear()
        self.blocking_pool.shutdown(wait=False, cancel_futures=True)


@functools.cache
def _response_class() -> type[Any]:
    """A response that keeps the server certificate (DER) seen on its connection.

    aiohttp hands the connection back as soon as a small body is complete, so by the time a
    check looks, `resp.connection` is often gone; and `getpeercert()` is empty when
    verification is off. Capturing the DER bytes when the response starts gives HTTPS
    checks the certificate expiry in every case.
    """
    import aiohttp

    class CertificateResponse(aiohttp.ClientResponse):
        peer_certificate_der: bytes | None = None

        async def start(self, connection: Any) -> Any:
            transport = connection.transport
            ssl_object = transport.get_extra_info("ssl_object") if transport else None
            if ssl_object is not None:
                self.peer_certificate_der = ssl_object.getpeercert(binary_form=True)
            return await super().start(connection)

    return CertificateResponse


Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

DEFAULT_TIMEOUT = 5.0
"""What the runner uses when a check has no timeout (only outside a loaded config)."""


def time_budget(check: CheckBase, share: float = 0.9) -> float:
    """Seconds a probe may wait in one phase before the runner's own timeout cancels it.

    A probe that stops itself slightly earlier can say *which* phase hung (`connected, but
    no ACK within 2s`), which is what the on-call needs; the runner's bare `timeout after 2s`
    cannot.
    """
    return (check.timeout or DEFAULT_TIMEOUT) * share


FIRST_LOOK = 0.5
"""A probe's one timer first fires at this share of its timeout (`Deadline`): no phase of
hismon's own checks ends before it, and a healthy probe has ended long before."""


class Deadline:
    """The time limits of one probe, all on one loop timer.

    A probe has nested limits: the runner's `timeout`, the check's budget inside it
    (`time_budget`, 0.9 of it, so the check can say which phase hung) and phases inside that
    (the HTTP connect: 0.9 of the budget). As `asyncio.timeout`s that was a timer per limit,
    armed and cancelled on every probe (~6 µs each on uvloop, bench/README.md). Here the
    limits are a stack that one timer watches: armed once, at `first_look` (FIRST_LOOK of
    the timeout); when it fires while the probe still runs, it fires again at the earliest
    limit in force. A probe that ends before `first_look`, as nearly all do, arms and cancels
    one timer; a limit that ends before the timer is due re-arms it when entered (tcp's quiet
    gap after a partial banner).

    Expiry is `asyncio.timeout`'s: the task is cancelled, and the limit whose time passed
    turns the CancelledError into TimeoutError as the block is left (the outermost one, when
    the loop was held up past several at once, as nested `asyncio.timeout`s do); a
    cancellation from anywhere else stays a cancellation. Limits are entered with `with`
    (`Limit`), in the task the deadline was made for (`within` checks that).
    """

    __slots__ = ("_armed_at", "_handle", "_limits", "_loop", "late", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any],
                 first_look: float = math.inf) -> None:
        self._loop = loop
        self.task = task
        self._limits: list[Limit] = []
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = math.inf
        self.late = 0.0
        """How late (s) the timer expired a limit, at most: the loop was held up that long
        past the limit, so a timeout then may be hismon's own (monitor/probing/runner.py)."""
        if first_look < math.inf:
            self._arm(first_look)

    def limit(self, when: float) -> Limit:
        """A limit at loop time `when`: `with deadline.limit(when): ...`."""
        return Limit(self, when)

    @property
    def armed_at(self) -> float:
        """The loop time the timer fires at next (inf: not armed)."""
        return self._armed_at

    def close(self) -> None:
        """Cancel the timer (done by itself when the outermost limit is left)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed_at = math.inf

    def _enter(self, limit: Limit) -> None:
        limit.cancelling = self.task.cancelling()
        self._limits.append(limit)
        if limit.when < self._armed_at:
            self._arm(limit.when)

    def _leave(self, limit: Limit, exc_type: type[BaseException] | None,
               exc: BaseException | None) -> None:
        limits = self._limits
        if limits and limits[-1] is limit:
            limits.pop()
        else:  # pragma: no cover - `with` leaves limits in the order they were entered
            limits.remove(limit)
        if not limits:
            self.close()
        if limit.expired and self.task.uncancel() <= limit.cancelling \
                and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_at(when, self._fire)
        self._armed_at = when

    def _fire(self) -> None:
        """Expire the outermost limit whose time has come, or look again at the next one."""
        due = max(self._loop.time(), self._armed_at)
        self._handle = None
        self._armed_at = math.inf
        limits = self._limits
        watch = limits
        for i, limit in enumerate(limits):
            if limit.when <= due:
                limit.expired = True
                self.late = max(self.late, self._loop.time() - limit.when)
                self.task.cancel()
                watch = limits[:i]  # the limits around it go on after it is handled
                break
        if watch:
            self._arm(min(outer.when for outer in watch))


class Limit:
    """One time limit of a `Deadline`: a `with` block cut off by TimeoutError at `when`."""

    __slots__ = ("cancelling", "deadline", "expired", "when")

    def __init__(self, deadline: Deadline, when: float) -> None:
        self.deadline = deadline
        self.when = when
        self.expired = False
        self.cancelling = 0

    def __enter__(self) -> Limit:
        self.deadline._enter(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.deadline._leave(self, exc_type, exc)


PROBE_DEADLINE: ContextVar[Deadline | None] = ContextVar("hismon_probe_deadline", default=None)
"""The running probe's `Deadline` (set by the runner, monitor/probing/runner.py)."""


def within(seconds: float) -> Limit:
    """`with within(s):` cuts the block off with TimeoutError after `s` seconds, exactly as
    `async with asyncio.timeout(s):` would, on the running probe's one timer (`Deadline`).

    Outside a probe, or in a task of its own that a probe started, the limit gets a timer
    of its own.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("within() must be used inside a task")
    deadline = PROBE_DEADLINE.get()
    if deadline is None or deadline.task is not task:
        deadline = Deadline(loop, task)
    return Limit(deadline, loop.time() + seconds)


def require_driver(module: str, extra: str, check_type: str) -> None:
    """Refuse the config, not the probe, when an optional driver is missing.

    Called from a pydantic validator, so `hismon validate` prints
    `checks[3].type: ... pip install 'hismon[oracle]'` instead of a traceback at 3 a.m.
    """
    try:
        importlib.import_module(module)
    except ImportError:
        raise ValueError(
            f"{check_type} checks need the Python package {module!r}, which is not installed: "
            f"pip install 'hismon[{extra}]'"
        ) from None


_OS_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ECONNABORTED: "connection aborted",
    errno.EPIPE: "connection closed by peer",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "connection timed out",
}


def network_reason(exc: BaseException | None) -> str:
    """Short operator wording for a socket error: `connection refused`, `host unreachable`.

    Every socket error a check words passes here, so the runner sees it too (`witness`): an
    EMFILE is hismon's own failure, not the target's (monitor/core/exhaustion.py).
    """
    witness(exc)
    if exc is None:
        return "connection failed"
    if isinstance(exc, socket.gaierror):
        return "DNS lookup failed"
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    code = getattr(exc, "errno", None)
    if code in _OS_REASONS:
        return _OS_REASONS[code]
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
