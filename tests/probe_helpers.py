"""Helpers shared by the check tests: build a check from YAML-like data, probe it, serve TLS."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import trustme

from checks import CHECK_TYPES
from checks.base import CheckBase, ProbeContext
from monitor.core.result import Result
from monitor.probing.runner import run_probe


def make_check(data: dict[str, Any]) -> CheckBase:
    """Validate a check exactly as the config loader does (through its registered model)."""
    full = {"id": "t", "system": "s", **data}
    return CHECK_TYPES[full["type"]].model_validate(full)


async def probe(data: dict[str, Any] | CheckBase, ctx: ProbeContext | None = None) -> Result:
    """Run one probe through the real runner (timeout, exception → UNKNOWN)."""
    check = data if isinstance(data, CheckBase) else make_check(data)
    own = ctx is None
    ctx = ctx or ProbeContext()
    try:
        return await run_probe(check, ctx)
    finally:
        if own:
            await ctx.close()


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Pki:
    """A private CA (trustme) and files for its certificates, as a hospital's own PKI."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ca = trustme.CA()
        self.ca_file = tmp / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(
        self, *names: str, not_after: dt.datetime | None = None, client_ca: bool = False
    ) -> ssl.SSLContext:
        names = names or ("127.0.0.1", "localhost")
        cert = self.ca.issue_cert(*names, common_name=names[0], not_after=not_after)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        if client_ca:
            self.ca.configure_trust(ctx)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_files(self, name: str = "hismon-client") -> tuple[str, str]:
        """A client certificate and key signed by this CA (for mutual TLS)."""
        cert = self.ca.issue_cert(name)
        cert_file, key_file = self.tmp / f"{name}.pem", self.tmp / f"{name}.key"
        for blob in cert.cert_chain_pems:
            with cert_file.open("ab") as fh:
                fh.write(blob.bytes())
        cert.private_key_pem.write_to_path(str(key_file))
        return str(cert_file), str(key_file)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def tcp_server(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """A real listener on 127.0.0.1 with an ephemeral port; yields the port."""
    tasks: set[asyncio.Task[Any]] = set()

    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # stopped by the fixture; ending normally keeps asyncio from logging it
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(wrapped, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept and never answer: the hung target every timeout test needs."""
    await asyncio.sleep(3600)


async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept and close immediately."""
    writer.close()


def closed_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_missing_driver_is_a_config_error(
    monkeypatch: Any, data: dict[str, Any], module: str, extra: str
) -> None:
    """With `module` unimportable, the config is refused naming the pip extra (no traceback)."""
    import sys

    import yaml

    from monitor.config.loader import ConfigError, load_config_text

    for name in list(sys.modules):
        if name == module or name.startswith(f"{module}."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    text = yaml.safe_dump({
        "systems": [{"id": "s", "name": "S"}],
        "checks": [{"id": "t", "system": "s", **data}],
    }, sort_keys=False)
    try:
        load_config_text(text, "hismon.yaml", env={})
    except ConfigError as exc:
        problems = [str(p) for p in exc.problems]
    else:
        raise AssertionError("a missing driver was accepted")
    assert len(problems) == 1, problems
    line = text.splitlines().index(f"  type: {data['type']}") + 1
    assert problems[0].startswith(f"hismon.yaml:{line}: checks[0].type: "), problems
    assert f"pip install 'hismon[{extra}]'" in problems[0]
