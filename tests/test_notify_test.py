"""`hismon notify-test`: one test message through one notifier, with the channel's answer."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.conftest import Receiver


async def notify_test(config: Path, notifier: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "notify-test", "-c", str(config), notifier,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode()


def write_config(tmp: Path, receiver: Receiver) -> Path:
    path = tmp / "h.yaml"
    path.write_text(f"""
site: {{name: 测试医院, language: zh}}
notifiers:
  - {{id: ward, type: webhook, url: "{receiver.url('ward')}?token=TOPSECRET-TOKEN-42"}}
""")
    return path


async def test_a_working_channel_answers_ok(receiver: Receiver, tmp_path: Path) -> None:
    code, out = await notify_test(write_config(tmp_path, receiver), "ward")
    assert code == 0, out
    assert out.startswith("OK ward (webhook): HTTP 200")
    assert receiver.messages[0]["kind"] == "test"
    assert "测试医院" in receiver.messages[0]["text"]


async def test_a_failing_channel_exits_1_without_showing_its_secret(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.fail_with = 403
    code, out = await notify_test(write_config(tmp_path, receiver), "ward")
    assert code == 1
    assert "FAILED ward" in out and "403" in out
    assert "TOPSECRET-TOKEN-42" not in out


async def test_an_unknown_notifier_is_refused(receiver: Receiver, tmp_path: Path) -> None:
    code, out = await notify_test(write_config(tmp_path, receiver), "nope")
    assert code == 2 and "unknown notifier nope" in out
