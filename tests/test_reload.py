"""Config reload on SIGHUP and on file change; a bad reload keeps the running config."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest

from tests.conftest import HttpTarget, free_port

pytestmark = pytest.mark.slow


def config(port: int, target: HttpTarget, extra_check: str = "") -> str:
    return f"""
site: {{name: Reload Hospital, timezone: UTC, language: en}}
server: {{listen: "127.0.0.1:{port}", api_tokens: [t]}}
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 1s, timeout: 500ms}}
systems:
  - {{id: his, name: HIS}}
checks:
  - {{id: web, system: his, type: http, url: "{target.url}"}}
{extra_check}
"""


async def wait_for(predicate, limit: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError("condition not reached")


async def test_sighup_and_file_changes_reload_and_a_bad_config_is_kept_out(
    http_target: HttpTarget, daemon_factory
) -> None:
    port = free_port()
    daemon = await daemon_factory(config(port, http_target), port)
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False) as api:
        async def check_ids() -> set[str]:
            return {c["id"] for c in (await api.get("/api/v1/checks")).json()["checks"]}

        async def metric(line: str) -> bool:
            return line in (await api.get("/metrics")).text

        extra = (f'  - {{id: web2, system: his, type: tcp, host: 127.0.0.1, '
                 f'port: {http_target.port}}}')
        daemon.config_path.write_text(config(port, http_target, extra))
        async def has_web2() -> bool:
            return "web2" in await check_ids()
        await wait_for(has_web2)

        daemon.config_path.write_text(config(port, http_target, "  - {id: broken"))
        await wait_for(lambda: metric("hismon_config_last_reload_successful 0.0"))
        assert await check_ids() == {"web", "web2"}, "the running config is kept"
        assert "config_reload_rejected" in daemon.log()

        daemon.config_path.write_text(config(port, http_target))
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        async def back_to_one() -> bool:
            return await check_ids() == {"web"}
        await wait_for(back_to_one)
        await wait_for(lambda: metric("hismon_config_last_reload_successful 1.0"))
    assert daemon.terminate() == 0
