"""Loopback probe targets for the benchmarks, in a process of their own.

Preferred: Debian's nginx with a throw-away config (``daemon off``, its own prefix in a temp
dir) serving ``GET /health`` on a few HTTP ports and, through the stream module when it is
installed, a TCP banner on a few more ports. Without nginx a separate Python process serves
the same ports (a minimal asyncio HTTP/1.1 responder and a TCP banner); either way the targets
never share the measured process's CPU time.

Several ports per kind keep the (src, dst) 4-tuples far from exhaustion at 1,000 new
connections a second.

    python bench/targets.py --serve HTTP_PORT[,..] TCP_PORT[,..]   # the fallback server
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
HTTP_BODY = b"UP\n"
TCP_BANNER = b"hismon-bench ready\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """Distinct free ports (held open together so the kernel cannot hand one out twice)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Targets:
    """Start with `start()`, stop with `stop()`; `kind` says what serves them."""

    def __init__(self, http_ports: int = 4, tcp_ports: int = 4, prefer: str = "nginx") -> None:
        ports = free_ports(http_ports + tcp_ports)
        self.http_ports = ports[:http_ports]
        self.tcp_ports = ports[http_ports:]
        self.prefer = prefer
        self.kind = ""
        self.note = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="hismon-bench-targets-"))

    def http_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.http_ports[i % len(self.http_ports)]}/health"

    def tcp_port(self, i: int) -> int:
        return self.tcp_ports[i % len(self.tcp_ports)]

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> Targets:
        nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                          else None)
        if self.prefer == "nginx" and nginx:
            try:
                self._start_nginx(nginx)
                return self
            except RuntimeError as exc:
                self.note = f"nginx failed ({exc}); "
                self.stop()
        self._start_python()
        return self

    def _start_nginx(self, nginx: str) -> None:
        stream = os.path.exists(NGINX_STREAM_MODULE)
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.tmp / sub).mkdir(exist_ok=True)
        http_listen = "\n".join(
            f"        listen 127.0.0.1:{p} backlog=4096;" for p in self.http_ports)
        lines = [
            f"load_module {NGINX_STREAM_MODULE};" if stream else "",
            "daemon off;",
            "master_process on;",
            "worker_processes 2;",
            "worker_rlimit_nofile 65536;",
            f"pid {self.tmp}/nginx.pid;",
            f"error_log {self.tmp}/error.log warn;",
            "events { worker_connections 16384; multi_accept on; }",
            "http {",
            "    access_log off;",
            f"    client_body_temp_path {self.tmp}/body;",
            f"    proxy_temp_path {self.tmp}/proxy;",
            f"    fastcgi_temp_path {self.tmp}/fastcgi;",
            f"    uwsgi_temp_path {self.tmp}/uwsgi;",
            f"    scgi_temp_path {self.tmp}/scgi;",
            "    keepalive_timeout 5s;",
            "    server {",
            http_listen,
            "        location / { default_type text/plain; return 200 \"UP\\n\"; }",
            "    }",
        ]
        if stream:
            tcp_listen = "\n".join(
                f"        listen 127.0.0.1:{p} backlog=4096;" for p in self.tcp_ports)
            lines += ["}", "stream {", "    server {", tcp_listen,
                      '        return "hismon-bench ready\\n";', "    }", "}"]
        else:
            # Without the stream module the TCP ports are plain HTTP listeners: a connect-only
            # probe only needs the handshake, and nginx closes an idle connection itself.
            tcp_listen = "\n".join(
                f"        listen 127.0.0.1:{p} backlog=4096;" for p in self.tcp_ports)
            lines += ["    server {", tcp_listen,
                      "        location / { return 200 \"UP\\n\"; }", "    }", "}"]
        conf = self.tmp / "nginx.conf"
        conf.write_text("\n".join(lines) + "\n")
        log = (self.tmp / "nginx.out").open("wb")
        self.proc = subprocess.Popen(
            [nginx, "-p", str(self.tmp), "-e", str(self.tmp / "error.log"), "-c", str(conf)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for port in self.http_ports + self.tcp_ports:
            if not wait_port(port, 10):
                err = (self.tmp / "error.log").read_text(errors="replace")[-500:] \
                    if (self.tmp / "error.log").exists() else ""
                raise RuntimeError(f"port {port} not served: {err.strip()}")
        version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
        self.kind = version.replace("nginx version: ", "") + (
            " (2 workers; TCP via stream module)" if stream
            else " (2 workers; TCP ports are HTTP listeners: no stream module)")

    def _start_python(self) -> None:
        log = (self.tmp / "pytarget.out").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve",
             ",".join(map(str, self.http_ports)), ",".join(map(str, self.tcp_ports))],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for port in self.http_ports + self.tcp_ports:
            if not wait_port(port, 10):
                raise RuntimeError(f"fallback target did not listen on {port}")
        self.kind = "python asyncio target (separate process)"
        self.note += ("NOTE: nginx not used, targets are a separate Python process "
                      "(apt-get install -y nginx libnginx-mod-stream for the reference setup)")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # nginx: SIGQUIT is a graceful stop, SIGTERM a fast one; both reach the workers.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Targets:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- the fallback server ---------------------------------------------------------------

_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
             + str(len(HTTP_BODY)).encode() + b"\r\nConnection: close\r\n\r\n" + HTTP_BODY)


class _Http(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" in self.buf:
            self.transport.write(_RESPONSE)  # type: ignore[attr-defined]
            self.transport.close()


class _Banner(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(TCP_BANNER)  # type: ignore[attr-defined]
        transport.close()


async def _serve(http_ports: list[int], tcp_ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    for p in http_ports:
        servers.append(await loop.create_server(_Http, "127.0.0.1", p, backlog=4096))
    for p in tcp_ports:
        servers.append(await loop.create_server(_Banner, "127.0.0.1", p, backlog=4096))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for s in servers:
        s.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", nargs=2, metavar=("HTTP_PORTS", "TCP_PORTS"), required=True)
    args = parser.parse_args()
    http_ports = [int(p) for p in args.serve[0].split(",") if p]
    tcp_ports = [int(p) for p in args.serve[1].split(",") if p]
    asyncio.run(_serve(http_ports, tcp_ports))


if __name__ == "__main__":
    main()
