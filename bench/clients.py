"""CPU per new-connection request: httpx vs aiohttp vs bare asyncio (SPEC §12 reference figures).

    python bench/clients.py                     # all clients, 5,000 requests each
    python bench/clients.py --requests 20000 --concurrency 16 --json /tmp/clients.json
    python bench/clients.py --clients hismon-http,hismon-http-aiohttp --rounds 5   # A/B
    python bench/clients.py --loop asyncio      # asyncio's loop (default: uvloop, as the daemon)

Each client runs in its own process against the same loopback nginx (or the Python fallback
target), with a new TCP connection per request, `--concurrency` requests in flight (a closed
loop, so the process saturates one core and req/s is its ceiling). CPU is the process's
time.process_time() over the measured requests, after a warm-up. The `hismon-*` rows run the
daemon's own probe path (`monitor.probing.runner.run_probe` on an `HttpCheck`/`TcpCheck` with a
`ProbeContext`): `hismon-http` on the plain-http fast path (checks/http1.py, the default),
`hismon-http-aiohttp` with it switched off. `http1-exchange` is the fast path's exchange
alone (no check code), `asyncio-h11` the same Protocol parsing with h11 instead of aiohttp's
llhttp parser.
The `create:*` rows time building one client (TLS context included), as a probe that made its
own client would pay on every run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

def _use_project_venv() -> None:
    """`python bench/X.py` from outside the venv: re-run under the project's .venv python."""
    venv = HERE.parent / ".venv" / "bin" / "python"
    if venv.exists() and Path(sys.prefix).resolve() != venv.parent.parent.resolve():
        os.execv(str(venv), [str(venv), *sys.argv])


_use_project_venv()

import targets as targets_mod  # noqa: E402

CLIENTS = ["asyncio-protocol", "asyncio-streams", "asyncio-h11", "http1-exchange", "aiohttp",
           "httpx", "hismon-http", "hismon-http-aiohttp",
           "tcp-sock_connect", "tcp-open_connection", "hismon-tcp"]
CREATE = ["create:ssl-context", "create:aiohttp-session", "create:httpx-client"]
SPEC_US = {"httpx": 1400.0, "aiohttp": 340.0, "asyncio-streams": 220.0,
           "asyncio-protocol": 220.0}


# ---- one client, in its own process ----------------------------------------------------

def _request_bytes(host: str, port: int, path: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: bench\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n").encode()


class _H11Exchange(asyncio.Protocol):
    """The bare Protocol exchange, parsed by h11 (what the fast path would cost with it)."""

    def __init__(self, host: str, path: str, done: asyncio.Future[int]) -> None:
        import h11

        self.h11, self.conn, self.done = h11, h11.Connection(h11.CLIENT), done
        self.host, self.path, self.status = host, path, 0
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        h11 = self.h11
        self.transport = transport
        data = self.conn.send(h11.Request(method="GET", target=self.path, headers=[
            ("Host", self.host), ("User-Agent", "hismon"), ("Accept", "*/*"),
            ("Connection", "close")]))
        data += self.conn.send(h11.EndOfMessage())
        transport.write(data)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        h11 = self.h11
        self.conn.receive_data(data)
        while not self.done.done():
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                return
            if isinstance(event, h11.Response):
                self.status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                self.done.set_result(self.status)
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("closed early"))


class _Exchange(asyncio.Protocol):
    def __init__(self, request: bytes, done: asyncio.Future[bytes]) -> None:
        self.request, self.done, self.buf = request, done, bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buf += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if exc is not None:
                self.done.set_exception(exc)
            else:
                self.done.set_result(bytes(self.buf))


def make_client(name: str, url: str, tcp_port: int) -> tuple[Any, Any]:
    """(async callable doing one request, async closer)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    request = _request_bytes(host, port, path)

    async def nothing() -> None:
        return None

    if name == "asyncio-protocol":
        async def proto() -> None:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[bytes] = loop.create_future()
            await loop.create_connection(lambda: _Exchange(request, done), host, port)
            raw = await done
            if not raw.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(raw[:40])
        return proto, nothing

    if name == "asyncio-h11":
        async def with_h11() -> None:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[int] = loop.create_future()
            await loop.create_connection(lambda: _H11Exchange(f"{host}:{port}", path, done),
                                         host, port)
            if await done != 200:
                raise RuntimeError("not 200")
        return with_h11, nothing

    if name == "http1-exchange":
        from checks import http1

        fast_request = http1.Request.build("GET", url, {}, None)

        async def fast() -> None:
            answer = await http1.exchange(fast_request, 4.5, False, 1_048_576, True)
            if answer.status != 200:
                raise RuntimeError(answer.status)
        return fast, nothing

    if name == "asyncio-streams":
        async def streams() -> None:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            raw = await reader.read()
            writer.close()
            if not raw.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(raw[:40])
        return streams, nothing

    if name == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=0),
            timeout=aiohttp.ClientTimeout(total=None))

        async def aio() -> None:
            async with session.get(url) as resp:
                if resp.status != 200:
                    raise RuntimeError(resp.status)

        return aio, session.close

    if name == "httpx":
        import httpx

        client = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0),
                                   trust_env=False)

        async def hx() -> None:
            resp = await client.get(url)
            if resp.status_code != 200:
                raise RuntimeError(resp.status_code)

        return hx, client.aclose

    if name in ("hismon-http", "hismon-http-aiohttp", "hismon-tcp"):
        from checks import http1
        from checks.base import ProbeContext
        from checks.http import HttpCheck
        from checks.tcp import TcpCheck
        from monitor.core.result import State
        from monitor.probing.runner import run_probe

        ctx = ProbeContext()
        check: Any
        http1.ENABLED = name == "hismon-http"
        if name.startswith("hismon-http"):
            check = HttpCheck(id="b", system="s", type="http", url=url, timeout="5s")
        else:
            check = TcpCheck(id="b", system="s", type="tcp", host="127.0.0.1", port=tcp_port,
                             timeout="5s")

        async def hismon() -> None:
            result = await run_probe(check, ctx)
            if result.state is not State.OK:
                raise RuntimeError(result.message)

        return hismon, ctx.close

    if name == "tcp-sock_connect":
        async def sock_connect() -> None:
            loop = asyncio.get_running_loop()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, ("127.0.0.1", tcp_port))
            finally:
                sock.close()
        return sock_connect, nothing

    if name == "tcp-open_connection":
        async def open_conn() -> None:
            _, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
            writer.close()
        return open_conn, nothing

    raise SystemExit(f"unknown client {name}")


async def measure(name: str, url: str, tcp_port: int, requests: int, concurrency: int,
                  warmup: int) -> dict[str, Any]:
    one, close = make_client(name, url, tcp_port)
    errors: list[str] = []

    async def run(count: int) -> None:
        todo = iter(range(count))

        async def worker() -> None:
            for _ in todo:
                try:
                    await one()
                except Exception as exc:  # counted and shown, never hidden
                    if len(errors) < 5:
                        errors.append(repr(exc)[:120])
                    else:
                        errors.append("")

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    await run(warmup)
    errors.clear()
    cpu0, t0 = time.process_time(), time.perf_counter()
    await run(requests)
    cpu1, t1 = time.process_time(), time.perf_counter()
    await close()
    return {
        "client": name, "requests": requests, "concurrency": concurrency,
        "cpu_us_per_request": round((cpu1 - cpu0) / requests * 1e6, 1),
        "requests_per_s": round(requests / (t1 - t0), 1),
        "cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 3),
        "errors": len(errors), "error_samples": [e for e in errors if e][:5],
    }


def measure_create(name: str, count: int) -> dict[str, Any]:
    import ssl

    async def build() -> Any:
        if name == "create:ssl-context":
            return ssl.create_default_context()
        if name == "create:aiohttp-session":
            import aiohttp

            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl.create_default_context(),
                                               force_close=True))
            await session.close()
            return session
        if name == "create:httpx-client":
            import httpx

            client = httpx.AsyncClient(trust_env=False)
            await client.aclose()
            return client
        raise SystemExit(f"unknown {name}")

    async def run() -> dict[str, Any]:
        await build()
        cpu0, t0 = time.process_time(), time.perf_counter()
        for _ in range(count):
            await build()
        cpu1, t1 = time.process_time(), time.perf_counter()
        return {"client": name, "requests": count,
                "cpu_us_per_request": round((cpu1 - cpu0) / count * 1e6, 1),
                "wall_ms_each": round((t1 - t0) / count * 1000, 2)}

    return asyncio.run(run())


def child(args: argparse.Namespace) -> None:
    if args.loop == "uvloop":
        import uvloop
        uvloop.install()
    if args.one.startswith("create:"):
        out = measure_create(args.one, args.create_count)
    else:
        out = asyncio.run(measure(args.one, args.url, args.tcp_port, args.requests,
                                  args.concurrency, args.warmup))
    print(json.dumps(out))


# ---- the driver ---------------------------------------------------------------------------

def run_child(name: str, url: str, tcp_port: int, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(args.repo.resolve()),
                                                       os.environ.get("PYTHONPATH")]))}
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        env.pop(var, None)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--url", url,
           "--tcp-port", str(tcp_port), "--requests", str(args.requests), "--concurrency",
           str(args.concurrency), "--warmup", str(args.warmup),
           "--create-count", str(args.create_count), "--loop", args.loop]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if out.returncode != 0:
        return {"client": name, "error": out.stderr.strip()[-500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median CPU per request (all rounds kept under `rounds`)."""
    good = sorted((r for r in runs if "cpu_us_per_request" in r),
                  key=lambda r: float(r["cpu_us_per_request"]))
    if not good:
        return runs[-1]
    row = dict(good[len(good) // 2])
    if len(runs) > 1:
        row["rounds"] = [r.get("cpu_us_per_request") for r in runs]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default=",".join(CLIENTS + CREATE))
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--create-count", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the clients this many times, interleaved; print the median")
    parser.add_argument("--targets", choices=["nginx", "python"], default="nginx")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop",
                        help="the event loop of every client process (the daemon runs on "
                             "uvloop where installed, monitor/runtime/loop.py)")
    parser.add_argument("--repo", type=Path, default=REPO, help="where monitor/, checks/ are")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--tcp-port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        child(args)
        return 0

    rows = []
    with targets_mod.Targets(http_ports=1, tcp_ports=1, prefer=args.targets) as targets:
        print(f"target: {targets.kind}", file=sys.stderr)
        if targets.note:
            print(targets.note, file=sys.stderr)
        names = args.clients.split(",")
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for round_ in range(args.rounds):  # interleaved, so a busy moment hits every client
            for name in names:
                print(f"  {name} (round {round_ + 1}/{args.rounds}) ...", file=sys.stderr,
                      flush=True)
                runs[name].append(run_child(name, targets.http_url(0), targets.tcp_port(0),
                                            args))
        rows = [_median_row(runs[name]) for name in names]
        kind = targets.kind
    aio = next((r["cpu_us_per_request"] for r in rows if r.get("client") == "aiohttp"
                and "cpu_us_per_request" in r), None)
    print(f"CPU per new-connection request, {args.requests} requests, {args.concurrency} in "
          f"flight, one process per client, {args.loop} loop; target {kind}; "
          f"{os.cpu_count()} cores, "
          f"Python {sys.version.split()[0]}")
    print(f"  {'client':<24} {'CPU µs/req':>11} {'req/s':>9} {'× aiohttp':>10} "
          f"{'SPEC ref µs':>12} {'errors':>7}")
    for r in rows:
        if "error" in r:
            print(f"  {r['client']:<24} failed: {r['error'][-200:]}")
            continue
        us = r["cpu_us_per_request"]
        rps = f"{r['requests_per_s']:.0f}" if "requests_per_s" in r else \
            f"{r['wall_ms_each']:.1f}ms"
        ratio = f"{us / aio:.2f}" if aio and not r["client"].startswith("create:") else ""
        ref = f"{SPEC_US[r['client']]:.0f}" if r["client"] in SPEC_US else (
            "25000" if r["client"] == "create:aiohttp-session" else "")
        spread = "  rounds: " + " ".join(f"{x:.0f}" for x in r["rounds"] if x) \
            if r.get("rounds") else ""
        print(f"  {r['client']:<24} {us:>11.0f} {rps:>9} {ratio:>10} {ref:>12} "
              f"{r.get('errors', 0):>7}{spread}")
    print("  (create:* rows: CPU to build one client incl. its TLS context; 'req/s' column "
          "shows wall time per build)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "target": kind,
                                               "args": {k: str(v) for k, v in
                                                        vars(args).items()}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
