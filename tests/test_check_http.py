"""HTTP(S) check against real aiohttp servers on 127.0.0.1 (TLS certificates from trustme).

Every test without TLS runs twice: on the fast path for plain `http://` (checks/http1.py)
and with it switched off, on aiohttp; each run asserts which path served it. TLS tests run
once (aiohttp is the only HTTPS path).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from checks import http1
from monitor.core.result import State
from tests.probe_helpers import (
    Pki,
    close_at_once,
    closed_port,
    make_check,
    now_utc,
    probe,
    silent,
    tcp_server,
)

DAY = 86400


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pki" not in metafunc.fixturenames:
        metafunc.parametrize("client_path", ["fast", "aiohttp"], indirect=True)


@pytest.fixture(autouse=True)
def client_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`fast`: http1.ENABLED, and the test must have gone through `http1.exchange`;
    `aiohttp`: switched off, and it must not have. TLS tests: not parametrized."""
    path = getattr(request, "param", "tls")
    calls: list[str] = []
    real = http1.exchange

    async def counted(*args: Any, **kwargs: Any) -> http1.Answer:
        calls.append(args[0].host)
        return await real(*args, **kwargs)

    monkeypatch.setattr(http1, "exchange", counted)
    monkeypatch.setattr(http1, "ENABLED", path == "fast")
    yield path
    if path == "fast" and inspect.iscoroutinefunction(request.function):
        assert calls, "the fast path served no request"
    if path != "fast":
        assert not calls, "the fast path served a request while switched off"


async def health(request: web.Request) -> web.Response:
    return web.Response(text="status: UP")


async def status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="Service Unavailable")


async def json_health(request: web.Request) -> web.Response:
    return web.json_response({"status": "UP", "db": {"ok": False, "lag": 3},
                              "queues": [{"name": "lab", "depth": 3}]})


async def echo(request: web.Request) -> web.Response:
    return web.json_response({"method": request.method, "token": request.headers.get("X-Token"),
                              "body": await request.text()})


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/health")


async def redirect_to(request: web.Request) -> web.Response:
    raise web.HTTPFound(request.query["to"])


async def loop(request: web.Request) -> web.Response:
    raise web.HTTPFound("/loop")


async def key_seen(request: web.Request) -> web.Response:
    """UP when the credential arrived, so a test can tell from the probe's message too."""
    key = request.headers.get("X-Api-Key")
    return web.Response(text=f"key={key}", status=200 if key is None else 401)


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("s", "0.3")))
    return web.Response(text="late but UP")


async def big(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    for _ in range(5 * 16):
        await response.write(b"x" * 65536)
    await response.write(b"MARKER")
    return response


async def endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    while True:
        await response.write(b"y" * 65536)
        await asyncio.sleep(0)


ROUTES: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
    ("GET", "/health", health), ("GET", "/status/{code}", status), ("GET", "/json", json_health),
    ("*", "/echo", echo), ("GET", "/redirect", redirect),
    ("GET", "/to", redirect_to), ("GET", "/loop", loop), ("GET", "/key", key_seen),
    ("GET", "/slow", slow),
    ("GET", "/big", big), ("GET", "/endless", endless),
]


class Site:
    def __init__(self, port: int, scheme: str) -> None:
        self.port, self.scheme = port, scheme

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Site]]]:
    runners: list[web.AppRunner] = []

    async def start(tls: ssl.SSLContext | None = None) -> Site:
        app = web.Application()
        for method, path, handler in ROUTES:
            app.router.add_route(method, path, handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return Site(port, "https" if tls else "http")

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def site(serve: Callable[..., Awaitable[Site]]) -> Site:
    return await serve()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def http(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "http", "url": url, "timeout": "2s", **extra}


# ---- status, body, JSON --------------------------------------------------------------


async def test_a_healthy_endpoint_is_ok(site: Site) -> None:
    result = await probe(http(site.url("/health"), expect={"body_contains": "UP"}))
    assert result.state is State.OK, result.message
    assert result.message.startswith("HTTP 200 in ")
    assert result.numbers["status_code"] == 200
    assert result.numbers["latency_seconds"] > 0


async def test_an_unexpected_status_is_critical(site: Site) -> None:
    result = await probe(http(site.url("/status/503")))
    assert result.state is State.CRIT
    assert result.message.startswith("HTTP 503 in ")
    assert result.message.endswith("(expected 200)")
    assert result.cause == "application"


async def test_a_list_of_accepted_statuses(site: Site) -> None:
    result = await probe(http(site.url("/status/204"), expect={"status": [200, 204]}))
    assert result.state is State.OK


async def test_body_contains_and_regex(site: Site) -> None:
    missing = await probe(http(site.url("/health"), expect={"body_contains": "READY"}))
    assert missing.state is State.CRIT
    assert missing.message.endswith(': body does not contain "READY"')
    regex = await probe(http(site.url("/health"), expect={"body_regex": r"status:\s+UP"}))
    assert regex.state is State.OK
    wrong = await probe(http(site.url("/health"), expect={"body_regex": r"^DOWN"}))
    assert wrong.message.endswith("body does not match /^DOWN/")


async def test_json_paths(site: Site) -> None:
    ok = await probe(http(site.url("/json"),
                          expect={"json": {"status": "UP", "queues.0.depth": 3}}))
    assert ok.state is State.OK, ok.message
    bad = await probe(http(site.url("/json"), expect={"json": {"db.ok": True}}))
    assert bad.state is State.CRIT
    assert bad.message.endswith(": JSON db.ok is false, expected true")
    absent = await probe(http(site.url("/json"), expect={"json": {"db.replica": 1}}))
    assert absent.message.endswith(": JSON has no db.replica")
    not_json = await probe(http(site.url("/health"), expect={"json": {"status": "UP"}}))
    assert not_json.message.endswith(": body is not JSON")


async def test_method_headers_and_body_are_sent(site: Site) -> None:
    result = await probe(http(
        site.url("/echo"), method="POST", headers={"X-Token": "abc"},
        body='{"patient": "test"}',
        expect={"json": {"method": "POST", "token": "abc", "body": '{"patient": "test"}'}},
    ))
    assert result.state is State.OK, result.message


def test_headers_and_body_are_secrets() -> None:
    check = make_check(http("http://x/", headers={"Authorization": "Bearer s3cret"},
                            body="password=s3cret"))
    config = check.public_config()
    assert config["headers"] == "***"
    assert config["body"] == "***"


# ---- redirects, latency, timeouts ----------------------------------------------------


async def test_redirects_are_followed_by_default(site: Site) -> None:
    result = await probe(http(site.url("/redirect"), expect={"body_contains": "UP"}))
    assert result.state is State.OK, result.message


async def test_a_redirect_not_followed_shows_where_it_points(site: Site) -> None:
    result = await probe(http(site.url("/redirect"), follow_redirects=False))
    assert result.state is State.CRIT
    assert "HTTP 302" in result.message
    assert result.message.endswith("(expected 200), Location: /health")
    login = await probe(http(site.url("/redirect"), follow_redirects=False,
                             expect={"status": [302]}))
    assert login.state is State.OK


async def test_latency_thresholds(site: Site) -> None:
    result = await probe(http(site.url("/slow?s=0.3"),
                              expect={"latency": {"warn": "100ms", "crit": "1s"}}))
    assert result.state is State.WARN
    assert "slow:" in result.message
    assert result.numbers["latency_seconds"] >= 0.3


async def test_a_hanging_server_times_out_naming_the_phase(site: Site) -> None:
    result = await probe(http(site.url("/slow?s=10"), timeout="1s"))
    assert result.state is State.CRIT
    assert result.message == f"no HTTP response from 127.0.0.1:{site.port} within 900ms"
    assert result.duration < 1.5


async def test_a_listener_that_never_answers() -> None:
    async with tcp_server(silent) as port:
        result = await probe(http(f"http://127.0.0.1:{port}/", timeout="1s"))
    assert result.message == f"no HTTP response from 127.0.0.1:{port} within 900ms"


# ---- network failures ----------------------------------------------------------------


async def test_dns_failure() -> None:
    result = await probe(http("http://no-such-host.invalid/health"))
    assert result.state is State.CRIT
    assert result.message == "DNS lookup failed for no-such-host.invalid"
    assert result.cause == "network"


async def test_connection_refused() -> None:
    port = closed_port()
    result = await probe(http(f"http://127.0.0.1:{port}/health"))
    assert result.state is State.CRIT
    assert result.message == f"connection refused 127.0.0.1:{port}"
    assert result.cause == "network"


async def reset_after_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(100)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # RST instead of FIN


async def test_connection_reset() -> None:
    async with tcp_server(reset_after_request) as port:
        result = await probe(http(f"http://127.0.0.1:{port}/"))
    assert result.state is State.CRIT
    assert result.message == f"connection reset 127.0.0.1:{port}"


async def test_a_server_closing_without_answering() -> None:
    async with tcp_server(close_at_once) as port:
        result = await probe(http(f"http://127.0.0.1:{port}/"))
    assert result.state is State.CRIT
    assert result.message in (f"connection reset 127.0.0.1:{port}",
                              f"127.0.0.1:{port} closed the connection without answering")


async def test_garbage_instead_of_http() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"\x00\x01 not http at all\r\n\r\n")
        await writer.drain()

    async with tcp_server(garbage) as port:
        result = await probe(http(f"http://127.0.0.1:{port}/"))
    assert result.state is State.CRIT
    assert result.message.startswith(f"bad HTTP response from 127.0.0.1:{port}: Bad status line")
    assert "\n" not in result.message


# ---- bounded size --------------------------------------------------------------------


async def test_the_body_is_read_only_up_to_the_cap(site: Site) -> None:
    """A 5 MiB body with the marker at its end: beyond the 1 MiB cap, and the message
    says only part of the body was checked."""
    result = await probe(http(site.url("/big"), expect={"body_contains": "MARKER"}))
    assert result.state is State.CRIT
    assert result.message.endswith(
        'body does not contain "MARKER" (checked the first 1048576 bytes only)')
    raised = await probe(http(site.url("/big"), max_body=8 * 1024 * 1024,
                              expect={"body_contains": "MARKER"}))
    assert raised.state is State.OK, raised.message


async def test_an_endless_body_costs_bounded_time_and_memory(site: Site) -> None:
    result = await probe(http(site.url("/endless"), timeout="3s", max_body=100_000,
                              expect={"body_contains": "never there"}))
    assert result.state is State.CRIT
    assert "checked the first 100000 bytes only" in result.message
    assert result.duration < 1.0


# ---- TLS -----------------------------------------------------------------------------


async def test_https_with_the_hospital_ca_reports_the_expiry(
    serve: Callable[..., Awaitable[Site]], pki: Pki
) -> None:
    site = await serve(pki.server_context("127.0.0.1",
                                          not_after=now_utc() + dt.timedelta(days=90)))
    result = await probe(http(site.url("/health"), tls={"ca_file": str(pki.ca_file)}))
    assert result.state is State.OK, result.message
    assert 89 * DAY < result.numbers["tls_cert_expiry_seconds"] <= 90 * DAY


async def test_an_expiring_certificate_warns(
    serve: Callable[..., Awaitable[Site]], pki: Pki
) -> None:
    site = await serve(pki.server_context("127.0.0.1",
                                          not_after=now_utc() + dt.timedelta(days=10, hours=1)))
    result = await probe(http(site.url("/health"), tls={
        "ca_file": str(pki.ca_file), "expiry_warn": "21d", "expiry_crit": "7d"}))
    assert result.state is State.WARN
    assert result.message.startswith("certificate expires in 10 days (HTTP 200 in ")
    assert result.cause == "certificate"


async def test_verify_false_still_measures_the_expiry(
    serve: Callable[..., Awaitable[Site]], pki: Pki
) -> None:
    site = await serve(pki.server_context("127.0.0.1",
                                          not_after=now_utc() + dt.timedelta(days=3)))
    result = await probe(http(site.url("/health"), tls={"verify": False, "expiry_crit": "7d"}))
    assert result.state is State.CRIT
    assert "certificate expires in" in result.message
    assert result.numbers["tls_cert_expiry_seconds"] < 3 * DAY


@pytest.mark.parametrize(("names", "not_after", "tls_extra", "reason"), [
    (("127.0.0.1",), None, False, "unable to get local issuer certificate"),
    (("his.example.internal",), None, True, "IP address mismatch"),
    (("127.0.0.1",), -2, True, "certificate has expired"),
])
async def test_certificate_errors(
    serve: Callable[..., Awaitable[Site]], pki: Pki, names: tuple[str, ...],
    not_after: int | None, tls_extra: bool, reason: str,
) -> None:
    expires = now_utc() + dt.timedelta(days=not_after) if not_after is not None else None
    site = await serve(pki.server_context(*names, not_after=expires))
    tls = {"ca_file": str(pki.ca_file)} if tls_extra else {}
    result = await probe(http(site.url("/health"), tls=tls))
    assert result.state is State.CRIT
    assert result.message.startswith(f"TLS certificate of 127.0.0.1:{site.port} rejected: ")
    assert reason in result.message
    assert result.cause == "certificate"


async def test_client_certificates(serve: Callable[..., Awaitable[Site]], pki: Pki) -> None:
    """A service requiring mutual TLS: OK with `cert_file`/`key_file`, and a hint without."""
    site = await serve(pki.server_context("127.0.0.1", client_ca=True))
    cert_file, key_file = pki.client_files()
    ok = await probe(http(site.url("/health"), tls={
        "ca_file": str(pki.ca_file), "cert_file": cert_file, "key_file": key_file}))
    assert ok.state is State.OK, ok.message
    refused = await probe(http(site.url("/health"), tls={"ca_file": str(pki.ca_file)}))
    assert refused.state is State.CRIT
    # OpenSSL reports the missing certificate either as an alert or as a closed connection
    assert refused.message in (
        f"127.0.0.1:{site.port} closed the connection without answering "
        "(does it require a client certificate?)",
        f"TLS error with 127.0.0.1:{site.port}: TLSV13_ALERT_CERTIFICATE_REQUIRED",
    )


async def test_a_tls_handshake_that_hangs_is_a_connection_timeout(pki: Pki) -> None:
    async with tcp_server(silent) as port:
        result = await probe(http(f"https://127.0.0.1:{port}/", timeout="1s",
                                  tls={"ca_file": str(pki.ca_file)}))
    assert result.state is State.CRIT
    assert result.message.startswith(f"no connection to 127.0.0.1:{port} within")


async def test_configured_headers_are_dropped_on_a_redirect_to_another_origin(
    serve: Callable[..., Awaitable[Site]],
) -> None:
    """aiohttp drops only Authorization: an X-Api-Key went to the host a 302 named."""
    first, other = await serve(), await serve()
    headers = {"X-Api-Key": "lis-key-0123456789"}
    away = await probe(http(first.url(f"/to?to={other.url('/key')}"), headers=headers))
    assert away.state is State.OK, away.message  # the other origin saw no key
    home = await probe(http(first.url("/to?to=/key"), headers=headers))
    assert home.state is State.CRIT and "HTTP 401" in home.message  # same origin keeps it


async def test_a_redirect_loop_says_so(site: Site) -> None:
    result = await probe(http(site.url("/loop")))
    assert result.state is State.CRIT
    assert result.message == (f"more than 10 redirects from 127.0.0.1:{site.port} (a redirect "
                              f"loop?), the last to {site.url('/loop')}")
