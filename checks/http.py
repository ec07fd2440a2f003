"""HTTP(S) check: status, body, JSON fields, latency and the server certificate's expiry."""

from __future__ import annotations

import json
import re
import ssl
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

from pydantic import Field, PositiveInt, PrivateAttr, field_validator

from checks.base import (
    CheckBase,
    LatencyThresholds,
    Method,
    ProbeContext,
    network_reason,
    time_budget,
    within,
)
from checks.tls import judge_expiry, parse_certificate
from monitor.core.durations import Duration, format_duration
from monitor.core.result import Result, State
from monitor.core.strict import Strict
from monitor.core.text import host_port, one_line
from monitor.core.types import Cause


class HttpExpect(Strict):
    status: list[int] = Field(default_factory=lambda: [200])
    body_contains: str | None = None
    body_regex: str | None = None
    json_fields: dict[str, Any] | None = Field(default=None, alias="json")
    latency: LatencyThresholds | None = None

    @field_validator("body_regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value


class HttpTls(Strict):
    verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    expiry_warn: Duration | None = None
    expiry_crit: Duration | None = None


class HttpCheck(CheckBase):
    type: Literal["http"]
    url: str = Field(pattern=r"^https?://")
    method: Method = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    follow_redirects: bool = True
    max_body: PositiveInt = 1_048_576
    expect: HttpExpect = Field(default_factory=HttpExpect)
    tls: HttpTls = Field(default_factory=HttpTls)

    secret_fields = ("headers", "body")
    _where: str = PrivateAttr(default="")
    _fast: Any = PrivateAttr(default=False)
    """The first request's bytes for the fast path (`http1.Request`), built on first use;
    None when that request needs aiohttp."""

    def model_post_init(self, context: Any, /) -> None:
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self._where = host_port(parts.hostname, port)

    def _needs_body(self) -> bool:
        e = self.expect
        return bool(e.body_contains or e.body_regex or e.json_fields)

    async def probe(self, ctx: ProbeContext) -> Result:
        import aiohttp

        import checks.http1 as http1  # (`from checks import http1` costs a Python call)

        tls = self.tls
        # pydantic private attributes, read from its dict: `self._fast` would go through
        # pydantic's __getattr__ after a failed lookup, a few µs on every probe
        private = self.__pydantic_private__
        assert private is not None
        where = private["_where"]
        budget = time_budget(self)
        started = time.perf_counter()
        # connecting (TCP and TLS) gets most of the budget; running out of it says
        # "no connection" rather than "no response"
        connect_budget = budget * 0.9
        hop = Hop(self.method, self.url, self.headers, self.body)
        needs_body = self._needs_body()
        follow = self.follow_redirects
        try:
            with within(budget):
                for _ in range(MAX_REDIRECTS + 1):
                    expiry: float | None = None
                    if hop.url is self.url:
                        request = private["_fast"]
                        if request is False:
                            request = private["_fast"] = http1.request_for(
                                hop.method, hop.url, hop.headers, hop.body)
                        if not http1.ENABLED:
                            request = None
                    else:
                        request = http1.request_for(hop.method, hop.url, hop.headers, hop.body) \
                            if http1.ENABLED else None
                    if request is not None:  # plain http://: the fast path (checks/http1.py)
                        answer = await http1.exchange(request, connect_budget, needs_body,
                                                      self.max_body, follow)
                        status, body, cut = answer.status, answer.body, answer.truncated
                        location = answer.location if 300 <= status < 400 else None
                        if follow and location and status in REDIRECTS:
                            hop = hop.follow(status, location, self.url)
                            continue
                    else:
                        status, location, body, cut, expiry = await self._aiohttp_hop(
                            ctx, aiohttp, hop, connect_budget, needs_body)
                        if status < 0:
                            assert location is not None
                            hop = hop.follow(-status, location, self.url)
                            continue
                    elapsed = time.perf_counter() - started
                    return self._judge(status, body, elapsed, expiry, cut, location)
            return self._crit(f"more than {MAX_REDIRECTS} redirects from {where} (a redirect "
                              f"loop?), the last to {hop.url[:120]}", Cause.APPLICATION, started)
        except TimeoutError as exc:
            took = format_duration(budget)
            if isinstance(exc, (aiohttp.ConnectionTimeoutError, http1.ConnectTimeout)):
                took = format_duration(connect_budget)
                return self._crit(f"no connection to {where} within {took}", Cause.NETWORK, started)
            return self._crit(f"no HTTP response from {where} within {took}", Cause.APPLICATION,
                              started)
        except http1.DnsError as exc:
            return self._crit(f"DNS lookup failed for {exc.host}", Cause.NETWORK, started)
        except http1.FastPathError as exc:
            return self._fast_failure(exc, started)
        except aiohttp.ClientConnectorCertificateError as exc:
            error = exc.certificate_error
            reason = getattr(error, "verify_message", None) or one_line(str(error))
            return self._crit(f"TLS certificate of {where} rejected: {reason}", Cause.CERTIFICATE,
                              started)
        except aiohttp.ClientConnectorSSLError as exc:
            reason = getattr(exc.os_error, "reason", None) or one_line(str(exc.os_error))
            return self._crit(f"TLS handshake with {where} failed: {reason}", Cause.CERTIFICATE,
                              started)
        except aiohttp.ClientConnectorDNSError as exc:
            return self._crit(f"DNS lookup failed for {exc.host}", Cause.NETWORK, started)
        except aiohttp.ClientConnectorError as exc:
            return self._crit(f"{_os_reason(exc.os_error)} {where}", Cause.NETWORK, started)
        except aiohttp.ServerDisconnectedError:
            hint = " (does it require a client certificate?)" if \
                self.url.startswith("https") and not tls.cert_file else ""
            return self._crit(f"{where} closed the connection without answering{hint}",
                              Cause.APPLICATION, started)
        except aiohttp.ClientResponseError as exc:
            return self._crit(f"bad HTTP response from {where}: {one_line(exc.message)}",
                              Cause.APPLICATION, started)
        except aiohttp.ClientPayloadError as exc:
            return self._crit(f"response body from {where} broken: {one_line(str(exc))}",
                              Cause.APPLICATION, started)
        except aiohttp.ClientOSError as exc:
            tls_error = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
            if isinstance(tls_error, ssl.SSLError):  # e.g. alert: certificate required
                return self._crit(f"TLS error with {where}: {tls_error.reason or tls_error}",
                                  Cause.CERTIFICATE, started)
            return self._crit(f"{_os_reason(exc)} {where}", Cause.NETWORK, started)

    async def _aiohttp_hop(
        self, ctx: ProbeContext, aiohttp: Any, hop: Hop, connect_budget: float,
        needs_body: bool,
    ) -> tuple[int, str | None, bytes, bool, float | None]:
        """One request through aiohttp: (status, Location, body, cut, expiry); a status
        below 0 means "follow this redirect" (-status, Location)."""
        tls = self.tls
        tls_key = (tls.verify, tls.ca_file, tls.cert_file, tls.key_file)
        session = ctx.http_session(tls_key, ctx.ssl_context(*tls_key))
        limits = aiohttp.ClientTimeout(total=None, sock_connect=connect_budget)
        async with session.request(
            hop.method, hop.url, headers=hop.headers or None, data=hop.body,
            allow_redirects=False, timeout=limits,
        ) as resp:
            location = resp.headers.get("Location") if 300 <= resp.status < 400 else None
            if self.follow_redirects and location and resp.status in REDIRECTS:
                return -resp.status, location, b"", False, None
            expiry = _cert_expiry_seconds(resp) if hop.url.startswith("https") else None
            body, cut = await _read_capped(resp, self.max_body) if needs_body else (b"", False)
            return resp.status, location, body, cut, expiry

    def _fast_failure(self, exc: Any, started: float) -> Result:
        """The fast path's failures in the aiohttp path's words (`http1.FastPathError`)."""
        where = self._where
        if exc.kind == "closed":
            return self._crit(f"{where} closed the connection without answering",
                              Cause.APPLICATION, started)
        if exc.kind == "bad_response":
            return self._crit(f"bad HTTP response from {where}: {one_line(exc.detail)}",
                              Cause.APPLICATION, started)
        if exc.kind == "payload":
            return self._crit(f"response body from {where} broken: {one_line(exc.detail)}",
                              Cause.APPLICATION, started)
        return self._crit(f"{_os_reason(exc.os_error)} {where}", Cause.NETWORK, started)

    def _crit(self, message: str, cause: Cause, started: float) -> Result:
        return Result.crit(message, cause, latency_seconds=time.perf_counter() - started)

    def _judge(
        self, status: int, body: bytes, elapsed: float, expiry: float | None,
        truncated: bool = False, location: str | None = None,
    ) -> Result:
        numbers: dict[str, float] = {"latency_seconds": elapsed, "status_code": float(status)}
        if expiry is not None:
            numbers["tls_cert_expiry_seconds"] = expiry
        took = format_duration(elapsed)
        expect = self.expect
        if status not in expect.status:
            moved = f", Location: {location[:120]}" if location else ""
            return Result(
                State.CRIT,
                f"HTTP {status} in {took} (expected {_fmt_status(expect.status)}){moved}",
                numbers=numbers,
                cause=Cause.APPLICATION,
            )
        problem = self._body_problem(body)
        if problem:
            if truncated:
                problem += f" (checked the first {self.max_body} bytes only)"
            return Result(State.CRIT, f"HTTP {status} in {took}: {problem}", numbers=numbers,
                          cause=Cause.APPLICATION)
        result = Result(State.OK, f"HTTP {status} in {took}", numbers=numbers)
        if expect.latency is not None:
            expect.latency.apply(result, elapsed)
        if expiry is not None:
            judge_expiry(result, expiry, self.tls.expiry_warn, self.tls.expiry_crit)
        return result

    def _body_problem(self, body: bytes) -> str | None:
        expect = self.expect
        text = body.decode("utf-8", errors="replace") if body else ""
        if expect.body_contains and expect.body_contains not in text:
            return f'body does not contain "{expect.body_contains}"'
        if expect.body_regex and not re.search(expect.body_regex, text):
            return f"body does not match /{expect.body_regex}/"
        if expect.json_fields:
            try:
                document = json.loads(text)
            except ValueError:
                return "body is not JSON"
            for path, wanted in expect.json_fields.items():
                found, value = _json_path(document, path)
                if not found:
                    return f"JSON has no {path}"
                if value != wanted:
                    return f"JSON {path} is {json.dumps(value, ensure_ascii=False)}, expected " \
                           f"{json.dumps(wanted, ensure_ascii=False)}"
        return None


async def _read_capped(resp: Any, limit: int) -> tuple[bytes, bool]:
    """Read at most `limit` bytes: a target streaming gigabytes costs bounded memory.

    Returns the bytes and whether the body was longer (so a failed expectation can say it
    looked at part of the body only).
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


def _cert_expiry_seconds(resp: Any) -> float | None:
    """Expiry of the server certificate, also when `verify: false` (read from DER)."""
    der = getattr(resp, "peer_certificate_der", None)  # set by ProbeContext's sessions
    info = parse_certificate(der) if der else None
    return info.not_after - time.time() if info is not None else None


MAX_REDIRECTS = 10
REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class Hop:
    """One request of a redirect chain, followed here rather than by aiohttp: aiohttp drops
    only `Authorization` when a redirect leaves the origin, and would send a configured
    `X-Api-Key` to whatever host a 302 names (issue 11)."""

    method: str
    url: str
    headers: dict[str, str]
    body: str | None

    def follow(self, status: int, location: str, first: str) -> Hop:
        url = urljoin(self.url, location)
        method, body = self.method, self.body
        if status == 303 or (status in (301, 302) and method == "POST"):
            method, body = ("HEAD" if method == "HEAD" else "GET"), None  # as browsers do
        headers = self.headers if _origin(url) == _origin(first) else {}
        return Hop(method, url, headers, body)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default


def _json_path(document: Any, path: str) -> tuple[bool, Any]:
    """`a.b.0.c` walks objects by key and arrays by index."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _fmt_status(codes: list[int]) -> str:
    return codes[0].__str__() if len(codes) == 1 else ", ".join(map(str, codes))


def _os_reason(exc: OSError | None) -> str:
    return network_reason(exc)
