"""The HTTP check's fast path for plain `http://`: one asyncio Protocol, aiohttp's own parser.

aiohttp's client spends about as much CPU per new-connection request on its own machinery
(session, request and response objects, connector, traces, timers, the stream reader queue)
as the bare exchange costs (bench/README.md, "HTTP client choice"). This module does the
exchange itself: it writes the request bytes aiohttp would write (built once per URL) and
feeds what comes back to the very response parser aiohttp uses (`aiohttp.http_parser`,
llhttp in C, same limits, same lenient mode, same decompression). Responses are therefore
parsed, accepted and refused exactly as on the aiohttp path, with the same error texts, and
the check's messages stay the same; the failure handling below mirrors aiohttp's
`ResponseHandler.connection_lost` and `ClientResponse.start`. The parser costs ~10 µs a
response; h11 cost ~200 µs more per probe than this (bench/README.md).

`checks/http.py` decides per request (each redirect hop) whether this path may serve it:
see `eligible` and docs/checks.md. Everything else stays on aiohttp.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from aiohttp import hdrs
from aiohttp.base_protocol import BaseProtocol
from aiohttp.client_exceptions import ClientPayloadError
from aiohttp.helpers import EMPTY_BODY_METHODS, EMPTY_BODY_STATUS_CODES
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import HttpResponseParser
from yarl import URL

from checks.base import within

ENABLED = os.environ.get("HISMON_HTTP_FAST_PATH", "1").strip().lower() not in ("0", "false", "no")
"""Off (`HISMON_HTTP_FAST_PATH=0`) sends every HTTP probe through aiohttp; tests flip it to
run each HTTP test against both paths."""

USER_AGENT = "hismon"
# aiohttp's ClientSession defaults (ProbeContext's session keeps them)
MAX_LINE_SIZE = 8190
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 128
READ_BUFSIZE = 2**16
DNS_TTL = 10.0
"""Seconds a resolved name is reused, as the aiohttp session's `ttl_dns_cache=10`."""

_GET_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_POST_METHODS = frozenset({"PATCH", "POST", "PUT"})
REDIRECTS = frozenset({301, 302, 303, 307, 308})  # checks/http.py has the same set
_HANDLED_BY_AIOHTTP = frozenset({"content-length", "transfer-encoding"})


class FastPathError(OSError):
    """A failure of the exchange, already in the HTTP check's words (`kind` says which).

    `kind`: `closed` (no answer before EOF), `bad_response` (the parser refused the head),
    `payload` (the body broke), `os` (a socket error, `os_error` set).
    An OSError carrying the socket error's errno, with that error as its `__cause__`, so
    whoever classifies OS errors (EMFILE: out of file descriptors) finds it on either path.
    """

    def __init__(self, kind: str, detail: str = "", os_error: OSError | None = None) -> None:
        if os_error is not None and os_error.args:
            super().__init__(*os_error.args)
        else:
            super().__init__(detail or kind)
        self.kind, self.detail, self.os_error = kind, detail, os_error
        self.__cause__ = os_error


class ConnectTimeout(TimeoutError):
    """The TCP connect did not finish within its share of the budget (aiohttp's
    `ConnectionTimeoutError` on the other path)."""


class DnsError(OSError):
    """The host name did not resolve; `host` is what the message names."""

    def __init__(self, host: str, cause: OSError | None) -> None:
        super().__init__(*(cause.args if cause is not None else ("no address",)))
        self.host = host


def request_for(method: str, url: str, headers: dict[str, str],
                body: str | None) -> Request | None:
    """The fast path's request, or None when this one needs aiohttp (`eligible`)."""
    return Request.build(method, url, headers, body) if eligible(url, headers) else None


def eligible(url: str, headers: dict[str, str]) -> bool:
    """May this request go the fast path? Plain `http://` without `user:password@`, and
    configured headers this module writes as aiohttp would (ASCII, no CR/LF, no
    case-insensitive duplicates, no `Content-Length`/`Transfer-Encoding` of their own).
    (`ENABLED` is the caller's to check: this answer is cached per check.)"""
    if url[:7].lower() != "http://":
        return False
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return False
    if parsed.raw_user is not None or parsed.raw_password is not None or not parsed.raw_host:
        return False
    seen: set[str] = set()
    for name, value in headers.items():
        low = name.lower()
        if low in seen or low in _HANDLED_BY_AIOHTTP or (low == "host" and name not in
                                                         hdrs.HOST_ALL):
            return False
        seen.add(low)
        text = name + value
        if not text.isascii() or "\r" in text or "\n" in text or not name.strip():
            return False
    return True


@dataclass(frozen=True, slots=True)
class Request:
    """One request's bytes and where they go: built once per URL, reused by every probe."""

    host: str
    port: int
    literal: bool
    data: bytes
    method: str

    @classmethod
    def build(cls, method: str, url: str, headers: dict[str, str], body: str | None) -> Request:
        """The bytes aiohttp's ClientSession (ProbeContext's settings) sends for this request,
        header order and case included (tests/test_check_http.py compares them)."""
        parsed = URL(url)
        host = parsed.raw_host or ""
        port = parsed.port or 80
        netloc = parsed.host_port_subcomponent or host
        lines: list[list[str]] = [["Host", netloc], ["User-Agent", USER_AGENT]]
        names = {"host": 0, "user-agent": 1}
        for name, value in headers.items():
            low = name.lower()
            if low in names:
                lines[names[low]] = [name, value]
            else:
                names[low] = len(lines)
                lines.append([name, value])
        auto = [("Accept", "*/*"), ("Accept-Encoding", _accept_encoding())]
        payload = body.encode("utf-8") if body is not None else b""
        if body is not None:
            auto.append(("Content-Length", str(len(payload))))
            auto.append(("Content-Type", "text/plain; charset=utf-8"))
        elif method not in _GET_METHODS:
            auto.append(("Content-Length", "0"))
        for name, value in auto:
            if name.lower() not in names:
                names[name.lower()] = len(lines)
                lines.append([name, value])
        if method in _POST_METHODS and "content-type" not in names:
            lines.append(["Content-Type", "application/octet-stream"])
        if "connection" not in names:
            lines.append(["Connection", "close"])
        head = f"{method} {parsed.raw_path_qs} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in lines) + "\r\n"
        return cls(host.strip("[]"), port, _is_literal(host.strip("[]")),
                   head.encode("utf-8") + payload, method)


@dataclass(slots=True)
class Answer:
    """What the check judges: the final status, its Location, the body read (capped)."""

    status: int
    location: str | None
    body: bytes
    truncated: bool


async def exchange(request: Request, connect_budget: float, needs_body: bool,
                   max_body: int, follow: bool) -> Answer:
    """One request on a new connection. Raises ConnectTimeout, DnsError, FastPathError;
    the caller's own timeout bounds the whole exchange. With `follow`, a redirect's body
    is not read (aiohttp's path does not read it either)."""
    loop = asyncio.get_running_loop()
    addresses = [request.host] if request.literal else await _resolve(loop, request.host,
                                                                      request.port)
    transport: asyncio.BaseTransport | None = None
    protocol: _Exchange | None = None
    try:
        last: OSError | None = None
        with within(connect_budget):
            for address in addresses:
                try:
                    transport, protocol = await loop.create_connection(
                        lambda: _Exchange(loop, request, needs_body, max_body, follow), address,
                        request.port)
                    break
                except OSError as exc:
                    last = exc
        if protocol is None:
            raise FastPathError("os", os_error=last)
    except TimeoutError:
        raise ConnectTimeout() from None
    try:
        return await protocol.done
    finally:
        transport.close()  # type: ignore[union-attr]


class _Exchange(BaseProtocol):
    """Writes the request, feeds the parser, settles `done` once: aiohttp's ResponseHandler
    and ClientResponse reduced to what one probe needs."""

    def __init__(self, loop: asyncio.AbstractEventLoop, request: Request, needs_body: bool,
                 max_body: int, follow: bool) -> None:
        super().__init__(loop)
        self.done: asyncio.Future[Answer] = loop.create_future()
        # A connection made while its probe was being cancelled (create_connection cut off,
        # a daemon stopping) fails with nobody awaiting `done`: asyncio would log "Future
        # exception was never retrieved" for each; awaited, the exception still raises.
        self.done.add_done_callback(_retrieved)
        self._request = request.data
        self._needs_body = needs_body
        self._max_body = max_body
        self._follow = follow
        skip = request.method in EMPTY_BODY_METHODS
        self._parser = _parser(self, loop, not skip)
        self._head: Any = None  # RawResponseMessage once the final head was parsed
        self._payload: Any = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._draining = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self._request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        parser = self._parser
        if parser is None:
            return
        try:
            messages, _upgraded, _tail = parser.feed_data(data)
        except HttpProcessingError as exc:
            self._parser_failed(exc)
            return
        except Exception as exc:  # aiohttp: any other parser error is a bare 400
            self._parser_failed(HttpProcessingError(), exc)
            return
        for message, payload in messages:
            if self._head is not None:
                continue  # a second response on this connection: not ours to read
            code = message.code
            if 100 <= code <= 199 and code != 101:
                continue  # 100 Continue and friends: the answer follows
            self._head = message
            self._payload = payload if code not in EMPTY_BODY_STATUS_CODES else None
            if not self._needs_body or self._payload is None or (
                    self._follow and code in REDIRECTS and hdrs.LOCATION in message.headers):
                self._finish(b"", False)
                return
        if self._head is not None and not self._draining:
            self._drain()

    def _parser_failed(self, exc: HttpProcessingError, cause: BaseException | None = None) -> None:
        """As aiohttp: before the head was handed out, the response is bad. After it (a
        broken chunk once the head had arrived), aiohttp's response waits until the budget
        runs out (`no HTTP response within`); this path says `response body ... broken`."""
        message = exc.message if cause is None else HttpProcessingError().message
        self._parser = None
        if self._head is None:
            self._fail(FastPathError("bad_response", message))
        else:  # aiohttp waits for the budget to run out here; saying what broke is better
            self._fail(FastPathError("payload", message))
        if self.transport is not None:
            self.transport.close()

    def _drain(self) -> None:
        payload = self._payload
        self._draining = True
        try:
            while not self.done.done():
                if payload.exception() is not None:
                    self._fail(FastPathError("payload", str(payload.exception())))
                    return
                chunk = payload.read_nowait(-1)  # may resume a paused parser (decompression)
                if chunk:
                    self._chunks.append(chunk)
                    self._size += len(chunk)
                    if self._size > self._max_body:
                        self._finish(b"".join(self._chunks)[:self._max_body], True)
                        return
                    continue
                if payload.is_eof():
                    self._finish(b"".join(self._chunks), False)
                return
        finally:
            self._draining = False

    def connection_lost(self, exc: BaseException | None) -> None:
        parser = self._parser
        if self.done.done():
            self._parser = None
            return
        if parser is not None:
            try:
                parser.feed_eof()
            except Exception as underlying:
                self._parser = None
                if self._head is not None and self._payload is not None:
                    text = f"Response payload is not completed: {underlying!r}"
                    if exc is not None:
                        text = f"{text!s}. {exc!r}"
                    self._fail(FastPathError("payload", text))
                    return
        self._parser = None
        if self._head is not None and self._payload is not None:
            self._drain()  # a body read until EOF ends here
            if self.done.done():
                return
        if isinstance(exc, OSError):
            self._fail(FastPathError("os", os_error=exc))
        elif exc is None:
            self._fail(FastPathError("closed"))
        else:
            self._fail(FastPathError("os", str(exc), os_error=OSError(str(exc))))

    def _finish(self, body: bytes, truncated: bool) -> None:
        head = self._head
        location = head.headers.get(hdrs.LOCATION)
        if not self.done.done():
            self.done.set_result(Answer(head.code, location, body, truncated))

    def _fail(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


def _retrieved(future: asyncio.Future[Answer]) -> None:
    if not future.cancelled():
        future.exception()


def _parser(protocol: BaseProtocol, loop: asyncio.AbstractEventLoop, with_body: bool) -> Any:
    """aiohttp's response parser with the settings its client gives it (client.py
    `set_response_params` with ClientSession's defaults)."""
    return HttpResponseParser(
        protocol, loop, READ_BUFSIZE, timer=None, payload_exception=ClientPayloadError,
        response_with_body=with_body, read_until_eof=True, auto_decompress=True,
        max_line_size=MAX_LINE_SIZE, max_field_size=MAX_FIELD_SIZE, max_headers=MAX_HEADERS)


@cache
def _accept_encoding() -> str:
    """What aiohttp advertises: gzip, deflate, plus br/zstd when their packages are there."""
    from aiohttp import compression_utils

    names = ["gzip", "deflate"]
    if getattr(compression_utils, "HAS_BROTLI", False):
        names.append("br")
    if getattr(compression_utils, "HAS_ZSTD", False):
        names.append("zstd")
    return ", ".join(names)


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_dns: dict[tuple[str, int], tuple[float, list[str]]] = {}


async def _resolve(loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[str]:
    """Addresses of `host`, reused for DNS_TTL seconds (as the aiohttp session does)."""
    now = time.monotonic()
    key = (host, port)
    found = _dns.get(key)
    if found is not None and found[0] > now:
        return found[1]
    import socket

    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DnsError(host, exc) from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise DnsError(host, None)
    if len(_dns) > 4096:
        _dns.clear()
    _dns[key] = (now + DNS_TTL, addresses)
    return addresses
