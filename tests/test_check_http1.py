"""The plain-http fast path (checks/http1.py) against hostile targets, and what it sends.

Every hostile case runs the same probe twice against a real listener on 127.0.0.1: once on
aiohttp (fast path off), once on the fast path (asserted to have served it). Both must give
the same state, cause and message (timings aside) and the failure class named by the case;
none may raise, hang or outlast its timeout.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from checks import http1
from monitor.core.result import Result, State
from tests.probe_helpers import Pki, now_utc, probe, tcp_server

pytestmark = pytest.mark.both_loops  # the daemon probes on uvloop by default

Writer = asyncio.StreamWriter
Reader = asyncio.StreamReader


def raw(*parts: bytes, pause: float = 0.0) -> Callable[[Reader, Writer], Awaitable[None]]:
    """A target that reads the request, writes `parts` (pausing between them) and closes."""
    async def handler(reader: Reader, writer: Writer) -> None:
        await reader.read(65536)
        for part in parts:
            writer.write(part)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
    return handler


def drip(data: bytes, every: float) -> Callable[[Reader, Writer], Awaitable[None]]:
    """One byte every `every` seconds: a target that is alive but never done in time."""
    async def handler(reader: Reader, writer: Writer) -> None:
        await reader.read(65536)
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
            await asyncio.sleep(every)
    return handler


async def endless_headers(reader: Reader, writer: Writer) -> None:
    await reader.read(65536)
    writer.write(b"HTTP/1.1 200 OK\r\n")
    for i in range(1_000_000):
        writer.write(b"X-%d: 1\r\n" % i)
        await writer.drain()
        await asyncio.sleep(0)  # drain() does not yield below the high-water mark


async def endless_chunks(reader: Reader, writer: Writer) -> None:
    await reader.read(65536)
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(1_000_000):
        writer.write(b"4000\r\n" + b"z" * 0x4000 + b"\r\n")
        await writer.drain()
        await asyncio.sleep(0)


async def reset_mid_body(reader: Reader, writer: Writer) -> None:
    await reader.read(65536)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nstatus: U")
    await writer.drain()
    await asyncio.sleep(0.05)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def gzipped(body: bytes) -> Callable[[Reader, Writer], Awaitable[None]]:
    packed = gzip.compress(body)
    return raw(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
               % len(packed) + packed)


OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nstatus: UP"

# (name, target, check keys, expected state, message pattern; PORT = the port)
CASES: list[tuple[str, Callable[[Reader, Writer], Awaitable[None]], dict[str, Any], State,
                  str]] = [
    ("truncated status line, then close", raw(b"HTTP/1.1 20"), {},
     State.CRIT, r"127\.0\.0\.1:PORT closed the connection without answering"),
    ("truncated status line", raw(b"HTTP/1.1 20\r\n\r\n"), {},
     State.CRIT, r"bad HTTP response from 127\.0\.0\.1:PORT: Bad status line: Invalid status code"),
    ("not HTTP at all", raw(b"SSH-2.0-OpenSSH_9.2\r\n"), {},
     State.CRIT, r"bad HTTP response from 127\.0\.0\.1:PORT: Bad status line"),
    ("status line over 8190 bytes",
     raw(b"HTTP/1.1 200 " + b"O" * 9000 + b"\r\n\r\n"), {},
     State.CRIT, r"bad HTTP response from 127\.0\.0\.1:PORT: Got more than 8190 bytes"),
    ("a header over 8190 bytes",
     raw(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 10_000 + b"\r\nContent-Length: 0\r\n\r\n"),
     {}, State.CRIT, r"bad HTTP response from 127\.0\.0\.1:PORT: Got more than 8190 bytes"),
    ("more than 128 headers",
     raw(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200))
         + b"Content-Length: 0\r\n\r\n"),
     {}, State.CRIT, r"bad HTTP response from 127\.0\.0\.1:PORT: Too many headers received"),
    ("endless headers", endless_headers, {},
     State.CRIT, r"bad HTTP response from 127\.0\.0\.1:PORT: Too many headers received"),
    ("non-ASCII bytes in a header value",
     raw(b"HTTP/1.1 200 OK\r\nX-Dept: \xe5\x8c\xbb\xff\r\n" + OK_HEAD[17:]),
     {"expect": {"body_contains": "UP"}}, State.OK, r"HTTP 200 in \S+"),
    ("non-ASCII bytes in a header name",
     raw(b"HTTP/1.1 200 OK\r\nX-\xe5\x8c\xbb: 1\r\n" + OK_HEAD[17:]), {},
     State.CRIT, r"bad HTTP response from 127\.0\.0\.1:PORT: Invalid header token"),
    ("Content-Length longer than the body, body read",
     raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nstatus: UP"),
     {"expect": {"body_contains": "UP"}}, State.CRIT,
     r"response body from 127\.0\.0\.1:PORT broken: Response payload is not completed: "
     r"<ContentLengthError: 400, message='Not enough data to satisfy content length header "
     r"\(received 10 of 100 bytes\)\.'>"),
    ("Content-Length longer than the body, body not needed",
     raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nstatus: UP"), {},
     State.OK, r"HTTP 200 in \S+"),
    ("Content-Length shorter than the body",
     raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nUP and more"), {},
     State.CRIT, r"bad HTTP response from 127\.0\.0\.1:PORT: Bad status line"),
    ("two Content-Lengths",
     raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nUP"), {},
     State.CRIT, r"bad HTTP response from 127\.0\.0\.1:PORT: Duplicate Content-Length"),
    ("Content-Length and chunked",
     raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"2\r\nUP\r\n0\r\n\r\n"), {},
     State.CRIT, r"bad HTTP response from 127\.0\.0\.1:PORT: Transfer-Encoding can't be present"),
    ("a bad chunk size", raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
     {}, State.CRIT, r"bad HTTP response from 127\.0\.0\.1:PORT: Invalid character in chunk size"),
    ("a chunked body cut short",
     raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nstatus: UP"),
     {"expect": {"body_contains": "UP"}}, State.CRIT,
     r"response body from 127\.0\.0\.1:PORT broken: Response payload is not completed: "
     r"<TransferEncodingError: 400, message='Not enough data to satisfy transfer length "
     r"header\.'>"),
    ("an endless chunked body, read", endless_chunks,
     {"max_body": 100_000, "expect": {"body_contains": "never there"}}, State.CRIT,
     r"HTTP 200 in \S+: body does not contain \"never there\" \(checked the first 100000 "
     r"bytes only\)"),
    ("an endless chunked body, not needed", endless_chunks, {}, State.OK, r"HTTP 200 in \S+"),
    ("closing after the headers", raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"), {},
     State.CRIT, r"127\.0\.0\.1:PORT closed the connection without answering"),
    ("reset in the middle of the body", reset_mid_body, {"expect": {"body_contains": "UP"}},
     State.CRIT, r"response body from 127\.0\.0\.1:PORT broken: Response payload is not completed: "
     r"<ContentLengthError: 400, message='Not enough data to satisfy content length header "
     r"\(received 9 of 1000 bytes\)\.'>\. Connection"),  # the rest: cut at 200 characters
    ("a body until EOF", raw(b"HTTP/1.1 200 OK\r\n\r\nstatus: UP"),
     {"expect": {"body_contains": "UP"}}, State.OK, r"HTTP 200 in \S+"),
    ("a response one byte at a time", drip(OK_HEAD, 0.002),
     {"expect": {"body_contains": "UP"}}, State.OK, r"HTTP 200 in \S+"),
    ("a slow drip past the timeout", drip(OK_HEAD, 0.1), {"timeout": "1s"},
     State.CRIT, r"no HTTP response from 127\.0\.0\.1:PORT within 900ms"),
    ("100 Continue first",
     raw(b"HTTP/1.1 100 Continue\r\n\r\n" + OK_HEAD), {"expect": {"body_contains": "UP"}},
     State.OK, r"HTTP 200 in \S+"),
    ("LF line ends, no reason phrase",
     raw(b"HTTP/1.1 200\nContent-Length: 10\n\nstatus: UP"),
     {"expect": {"body_contains": "UP"}}, State.OK, r"HTTP 200 in \S+"),
    ("a gzip body", gzipped(b"status: UP"), {"expect": {"body_contains": "UP"}},
     State.OK, r"HTTP 200 in \S+"),
    ("a gzip bomb (20 MB of zeros)", gzipped(b"\0" * 20_000_000),
     {"expect": {"body_contains": "UP"}}, State.CRIT,
     r"HTTP 200 in \S+: body does not contain \"UP\" \(checked the first 1048576 bytes only\)"),
    ("a broken gzip body",
     raw(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 10\r\n\r\nstatus: UP"),
     {"expect": {"body_contains": "UP"}}, State.CRIT,
     r"response body from 127\.0\.0\.1:PORT broken: .*Can not decode content-encoding: gzip"),
    ("a 204 with a body", raw(b"HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\nUP"),
     {"expect": {"status": [204]}}, State.CRIT, r"bad HTTP response from 127\.0\.0\.1:PORT: .*"),
]


def shape(result: Result, port: int) -> tuple[State, str | None, str]:
    """State, cause and message with the port as P and timings as T."""
    message = result.message.replace(str(port), "P")
    return result.state, result.cause, re.sub(r"\b\d+(\.\d+)?(ms|s)\b", "T", message)


@pytest.fixture
def exchanges(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Hosts the fast path served, in order."""
    calls: list[str] = []
    real = http1.exchange

    async def counted(*args: Any, **kwargs: Any) -> http1.Answer:
        calls.append(args[0].host)
        return await real(*args, **kwargs)

    monkeypatch.setattr(http1, "exchange", counted)
    return calls


async def both(monkeypatch: pytest.MonkeyPatch, exchanges: list[str],
               handler: Callable[[Reader, Writer], Awaitable[None]],
               keys: dict[str, Any]) -> tuple[Result, Result, int, int]:
    """(aiohttp's result, the fast path's, port of each run)."""
    results: list[tuple[Result, int]] = []
    for fast in (False, True):
        monkeypatch.setattr(http1, "ENABLED", fast)
        before = len(exchanges)
        async with tcp_server(handler) as port:
            check = {"type": "http", "url": f"http://127.0.0.1:{port}/health", "timeout": "2s",
                     **keys}
            results.append((await asyncio.wait_for(probe(check), 10), port))
        assert len(exchanges) - before == (1 if fast else 0)
    (slow, slow_port), (quick, quick_port) = results
    return slow, quick, slow_port, quick_port


@pytest.mark.parametrize(("name", "handler", "keys", "state", "pattern"), CASES,
                         ids=[case[0] for case in CASES])
async def test_a_hostile_target_gets_the_same_answer_on_both_paths(
    monkeypatch: pytest.MonkeyPatch, exchanges: list[str], name: str,
    handler: Callable[[Reader, Writer], Awaitable[None]], keys: dict[str, Any], state: State,
    pattern: str,
) -> None:
    started = time.perf_counter()
    aio, fast, aio_port, fast_port = await both(monkeypatch, exchanges, handler, keys)
    assert shape(fast, fast_port) == shape(aio, aio_port), (aio.message, fast.message)
    for result, port in ((aio, aio_port), (fast, fast_port)):
        assert result.state is state, result.message
        assert re.match(pattern.replace("PORT", str(port)), result.message), result.message
        assert result.duration < 2.0 * 1.2  # never past the check's own 2 s (1 s) timeout
    assert time.perf_counter() - started < 10


async def test_a_bad_chunk_after_the_head_says_the_body_broke(
    monkeypatch: pytest.MonkeyPatch, exchanges: list[str],
) -> None:
    """The one answer that differs, on purpose: the head arrived, then a malformed chunk.
    aiohttp's response never hears of the parser's error and waits out the budget; the
    fast path says what broke, at once."""
    broken = raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"2\r\nUPxx0\r\n\r\n",
                 pause=0.05)
    aio, fast, aio_port, fast_port = await both(monkeypatch, exchanges, broken,
                                                {"expect": {"body_contains": "UP"}})
    assert aio.message == f"no HTTP response from 127.0.0.1:{aio_port} within 2s"
    assert fast.message == (f"response body from 127.0.0.1:{fast_port} broken: Expected LF "
                            "after chunk data: b'UPxx0' ^")
    assert aio.state is fast.state is State.CRIT
    assert aio.cause == fast.cause == "application"
    assert fast.duration < 1.0


async def test_a_connect_that_hangs_is_a_connection_timeout_on_both_paths(
    monkeypatch: pytest.MonkeyPatch, exchanges: list[str],
) -> None:
    """A listener whose accept queue is full drops further SYNs: the connect itself hangs."""
    server = socket.socket()
    fillers: list[socket.socket] = []
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
        messages = []
        for fast in (False, True):
            monkeypatch.setattr(http1, "ENABLED", fast)
            result = await probe({"type": "http", "url": f"http://127.0.0.1:{port}/",
                                  "timeout": "1s"})
            assert result.state is State.CRIT and result.cause == "network"
            assert result.duration < 1.5
            messages.append(result.message)
    finally:
        for sock in [server, *fillers]:
            sock.close()
    assert messages == [f"no connection to 127.0.0.1:{port} within 810ms"] * 2
    assert exchanges == ["127.0.0.1"]


# ---- what goes on the wire ------------------------------------------------------------

REQUESTS: list[dict[str, Any]] = [
    {"url": "/p/é?q=a b&x=ü#frag"},
    {"url": "/%7Efoo/%2F?a=%20"},
    {"url": ""},
    {"method": "POST"},
    {"method": "PUT", "body": ""},
    {"method": "HEAD"},
    {"method": "OPTIONS"},
    {"method": "DELETE", "body": "x"},
    {"method": "POST", "body": '{"patient": "测试"}',
     "headers": {"Content-Type": "application/json", "connection": "keep-alive"}},
    {"headers": {"accept-encoding": "identity", "accept": "text/plain", "X-Token": "t"}},
    {"headers": {"Host": "his.example-hospital.internal", "User-Agent": "probe/1"}},
    {"headers": {"hOsT": "lis.internal"}},
]


@pytest.mark.parametrize("request_keys", REQUESTS, ids=[str(r) for r in REQUESTS])
async def test_both_paths_send_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch, exchanges: list[str], request_keys: dict[str, Any],
) -> None:
    seen: list[bytes] = []

    async def record(reader: Reader, writer: Writer) -> None:
        data = await reader.read(65536)
        while b"\r\n\r\n" not in data:
            more = await reader.read(65536)
            if not more:
                break
            data += more
        seen.append(data)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with tcp_server(record) as port:
        keys = {**request_keys, "url": f"http://127.0.0.1:{port}{request_keys.get('url', '/')}"}
        for fast in (False, True):
            monkeypatch.setattr(http1, "ENABLED", fast)
            result = await probe({"type": "http", "timeout": "2s", **keys})
            assert result.state is State.OK, result.message
    assert len(exchanges) == 1
    assert seen[0] == seen[1]


async def test_an_ipv6_literal_on_both_paths(
    monkeypatch: pytest.MonkeyPatch, exchanges: list[str],
) -> None:
    """`http://[::1]:port/`: the same bytes (Host in brackets) and the same messages."""
    seen: list[bytes] = []

    async def record(reader: Reader, writer: Writer) -> None:
        seen.append(await reader.read(65536))
        writer.write(OK_HEAD)
        await writer.drain()
        writer.close()

    try:
        server = await asyncio.start_server(record, "::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = server.sockets[0].getsockname()[1]
    messages = []
    try:
        for fast in (False, True):
            monkeypatch.setattr(http1, "ENABLED", fast)
            result = await probe({"type": "http", "url": f"http://[::1]:{port}/health",
                                  "expect": {"body_contains": "READY"}})
            messages.append(re.sub(r"in \S+:", "in T:", result.message))
    finally:
        server.close()
        await server.wait_closed()
    assert exchanges == ["::1"]
    assert seen[0] == seen[1] and f"Host: [::1]:{port}\r\n".encode() in seen[0]
    assert messages == ['HTTP 200 in T: body does not contain "READY"'] * 2


def test_which_requests_take_the_fast_path() -> None:
    assert http1.eligible("http://10.1.2.3/health", {"X-Api-Key": "k"})
    assert http1.eligible("HTTP://his.internal:8080/", {})
    assert not http1.eligible("https://his.internal/", {})
    assert not http1.eligible("http://user:pw@his.internal/", {})  # Basic auth: aiohttp
    assert not http1.eligible("http://his.internal/", {"X-Dept": "检验科"})
    assert not http1.eligible("http://his.internal/", {"X-A": "1\r\nX-B: 2"})
    assert not http1.eligible("http://his.internal/", {"X-A": "1", "x-a": "2"})
    assert not http1.eligible("http://his.internal/", {"Content-Length": "3"})
    assert not http1.eligible("http://his.internal/", {"Transfer-Encoding": "chunked"})


async def test_a_url_with_credentials_goes_through_aiohttp(exchanges: list[str]) -> None:
    seen: list[bytes] = []

    async def record(reader: Reader, writer: Writer) -> None:
        seen.append(await reader.read(65536))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with tcp_server(record) as port:
        result = await probe({"type": "http", "url": f"http://lis:pw@127.0.0.1:{port}/"})
    assert result.state is State.OK, result.message
    assert not exchanges
    assert b"Authorization: Basic bGlzOnB3\r\n" in seen[0]


async def test_a_host_name_is_resolved_on_the_fast_path(exchanges: list[str]) -> None:
    async with tcp_server(raw(OK_HEAD)) as port:
        result = await probe({"type": "http", "url": f"http://localhost:{port}/",
                              "expect": {"body_contains": "UP"}})
    assert result.state is State.OK, result.message
    assert exchanges == ["localhost"]


async def test_a_redirect_to_https_continues_on_aiohttp(
    exchanges: list[str], tmp_path: Path,
) -> None:
    """The first hop is plain http (fast path), the second https (aiohttp, with the CA)."""
    pki = Pki(tmp_path)
    app = web.Application()

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="status: UP")

    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    tls = pki.server_context("127.0.0.1", not_after=now_utc() + dt.timedelta(days=30))
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    https_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        target = f"https://127.0.0.1:{https_port}/health"
        moved = raw(f"HTTP/1.1 301 Moved\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n"
                    .encode())
        async with tcp_server(moved) as port:
            result = await probe({"type": "http", "url": f"http://127.0.0.1:{port}/",
                                  "tls": {"ca_file": str(pki.ca_file)},
                                  "expect": {"body_contains": "UP"}})
    finally:
        await runner.cleanup()
    assert result.state is State.OK, result.message
    assert 29 * 86400 < result.numbers["tls_cert_expiry_seconds"] <= 30 * 86400
    assert exchanges == ["127.0.0.1"]


async def test_switched_off_nothing_takes_the_fast_path(
    monkeypatch: pytest.MonkeyPatch, exchanges: list[str],
) -> None:
    monkeypatch.setattr(http1, "ENABLED", False)
    async with tcp_server(raw(OK_HEAD)) as port:
        result = await probe({"type": "http", "url": f"http://127.0.0.1:{port}/"})
    assert result.state is State.OK, result.message
    assert not exchanges


async def test_a_socket_error_is_an_oserror_with_its_errno(exchanges: list[str]) -> None:
    """What the runner's OS-error classification walks: the fast path's error keeps errno."""
    import errno

    from tests.probe_helpers import closed_port

    port = closed_port()
    request = http1.Request.build("GET", f"http://127.0.0.1:{port}/", {}, None)
    with pytest.raises(OSError) as caught:
        await http1.exchange(request, 1.0, False, 1000, True)
    assert caught.value.errno == errno.ECONNREFUSED
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


async def test_a_connection_lost_with_nobody_waiting_logs_nothing() -> None:
    """A connection made while its probe was being cancelled (a daemon stopping with probes
    in connect) fails with nobody awaiting it: no "Future exception was never retrieved"."""
    import gc

    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        request = http1.Request.build("GET", "http://127.0.0.1:1/", {}, None)
        exchange = http1._Exchange(loop, request, True, 1000, False)
        exchange.connection_lost(None)
        assert exchange.done.done()
        del exchange
        await asyncio.sleep(0)
        gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert [c.get("message") for c in seen] == []
