"""HTTP(S) check: status, body, JSON fields, latency and the server certificate's expiry."""

from __future__ import annotations

import json
import re
import ssl
import time
from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator

from checks.base import CheckBase, LatencyThresholds, Method, ProbeContext, Strict
from monitor.durations import Duration, format_duration
from monitor.result import Result, State


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

    secret_fields = ("headers",)

    def _needs_body(self) -> bool:
        e = self.expect
        return bool(e.body_contains or e.body_regex or e.json_fields)

    async def probe(self, ctx: ProbeContext) -> Result:
        import aiohttp

        tls = self.tls
        tls_key = (tls.verify, tls.ca_file, tls.cert_file, tls.key_file)
        session = ctx.http_session(tls_key, ctx.ssl_context(*tls_key))
        started = time.perf_counter()
        try:
            async with session.request(
                self.method,
                self.url,
                headers=self.headers or None,
                data=self.body,
                allow_redirects=self.follow_redirects,
            ) as resp:
                expiry = _cert_expiry_seconds(resp) if self.url.startswith("https") else None
                body = await _read_capped(resp, self.max_body) if self._needs_body() else b""
                elapsed = time.perf_counter() - started
                return self._judge(resp.status, body, elapsed, expiry)
        except aiohttp.ClientConnectorCertificateError as exc:
            return Result.crit(f"TLS certificate rejected: {exc.certificate_error}", "certificate")
        except aiohttp.ClientConnectorSSLError as exc:
            return Result.crit(f"TLS handshake failed: {exc.os_error}", "certificate")
        except aiohttp.ClientConnectorDNSError as exc:
            return Result.crit(f"DNS lookup failed for {exc.host}", "network")
        except aiohttp.ClientConnectorError as exc:
            reason = _os_reason(exc.os_error)
            return Result.crit(f"{reason} {exc.host}:{exc.port}", "network")
        except aiohttp.ServerDisconnectedError:
            return Result.crit("server closed the connection without answering", "application")
        except aiohttp.ClientResponseError as exc:
            return Result.crit(f"bad HTTP response: {exc.message}", "application")
        except aiohttp.ClientPayloadError as exc:
            return Result.crit(f"response body broken: {exc}", "application")
        except aiohttp.ClientOSError as exc:
            return Result.crit(_os_reason(exc), "network")

    def _judge(
        self, status: int, body: bytes, elapsed: float, expiry: float | None
    ) -> Result:
        numbers: dict[str, float] = {"latency_seconds": elapsed, "status_code": float(status)}
        if expiry is not None:
            numbers["tls_cert_expiry_seconds"] = expiry
        took = format_duration(elapsed)
        expect = self.expect
        if status not in expect.status:
            return Result(
                State.CRIT,
                f"HTTP {status} in {took} (expected {_fmt_status(expect.status)})",
                numbers=numbers,
                cause="application",
            )
        problem = self._body_problem(body)
        if problem:
            return Result(State.CRIT, f"HTTP {status} in {took}: {problem}", numbers=numbers,
                          cause="application")
        result = Result(State.OK, f"HTTP {status} in {took}", numbers=numbers)
        if expect.latency is not None:
            expect.latency.apply(result, elapsed)
        if expiry is not None:
            _judge_expiry(result, expiry, self.tls.expiry_warn, self.tls.expiry_crit)
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


async def _read_capped(resp: Any, limit: int) -> bytes:
    """Read at most `limit` bytes: a target streaming gigabytes costs bounded memory."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def _cert_expiry_seconds(resp: Any) -> float | None:
    conn = resp.connection
    if conn is None or conn.transport is None:
        return None
    ssl_object = conn.transport.get_extra_info("ssl_object")
    cert = ssl_object.getpeercert() if ssl_object is not None else None
    if not cert or "notAfter" not in cert:
        return None
    return ssl.cert_time_to_seconds(cert["notAfter"]) - time.time()


def _judge_expiry(
    result: Result, expiry: float, warn: float | None, crit: float | None
) -> None:
    days = expiry / 86400
    if crit is not None and expiry < crit:
        state = State.CRIT
    elif warn is not None and expiry < warn:
        state = State.WARN
    else:
        return
    if state > result.state:
        result.state = state
        result.message = f"certificate expires in {days:.0f} days ({result.message})"
        result.cause = "certificate"


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
    import errno

    if exc is None:
        return "connection failed"
    code = getattr(exc, "errno", None)
    return {
        errno.ECONNREFUSED: "connection refused",
        errno.ECONNRESET: "connection reset",
        errno.EHOSTUNREACH: "host unreachable",
        errno.ENETUNREACH: "network unreachable",
        errno.ETIMEDOUT: "connection timed out",
    }.get(code or 0, exc.strerror or str(exc) or "connection failed")
