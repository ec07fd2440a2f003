"""`hismon demo` end to end: the real command, the real daemon, a simulated hospital on loopback.

A newcomer's first impression is this demo, so the test watches what they would watch: the
messages printed by the console notifier, in order, to the right recipients, and a clean
exit on Ctrl-C.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent
MESSAGE = re.compile(r"^📣 (?:\[DRILL\] )?\[(\w+)\] → (\S+)\s*$", re.MULTILINE)

AFFECTED = {"console-emergency", "console-outpatient", "console-inpatient", "console-laboratory"}
"""Departments of the systems that depend on the HIS database in the demo config."""
UNAFFECTED = {"console-radiology"}
"""Radiology only uses PACS, which keeps working during the database outage."""
DEPARTMENT_NOTIFIERS = AFFECTED | UNAFFECTED


def _command(port: int, *extra: str) -> list[str]:
    script = shutil.which("hismon", path=str(Path(sys.executable).parent))
    base = [script] if script else [sys.executable, "-m", "monitor"]
    return [*base, "demo", "--port", str(port), *extra]


def _start(port: int, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(_command(port, *extra), cwd=REPO, env=env,
                            stdout=out.open("wb"), stderr=subprocess.STDOUT)


def _messages(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in MESSAGE.finditer(text)]


def _first(messages: list[tuple[str, str]], kind: str) -> int:
    for index, (found, _) in enumerate(messages):
        if found == kind:
            return index
    raise AssertionError(f"no {kind} message; got {messages}")


def _port_closed(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
def test_demo_shows_early_warning_outage_and_recovery(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "demo.out"
    proc = _start(port, out, "--speed", "4", "--duration", "75")
    seen_open: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 150
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False,
                          timeout=2) as client:
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    answer = client.get("/api/v1/incidents", params={"status": "open"})
                    if answer.status_code == 200:
                        seen_open.extend(answer.json()["incidents"])
                except httpx.HTTPError:
                    pass
                time.sleep(1)
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    text = out.read_text(encoding="utf-8", errors="replace")
    assert code == 0, text[-3000:]
    assert f"http://127.0.0.1:{port}/" in text.split("📣", 1)[0], "status page not printed first"
    assert "/api/v1/" in text.split("📣", 1)[0], "API address not printed first"
    assert re.search(r"^▶ \d\d:\d\d ", text, re.MULTILINE), "no narrator lines"

    messages = _messages(text)
    early = _first(messages, "early_warning")
    outage = _first(messages, "outage_it")
    notice = _first(messages, "department_outage")
    recovery = _first(messages, "recovery")
    assert early < outage < notice < recovery, messages
    kinds = {kind for kind, _ in messages}
    assert {"leadership_report", "vendor_escalation", "progress_update"} <= kinds, kinds
    assert messages[early][1] == "console-it"
    assert messages[outage][1] == "console-it"

    # Department notices reach exactly the affected departments, never the others.
    noticed = {recipient for kind, recipient in messages if kind == "department_outage"}
    assert noticed == AFFECTED, messages
    to_departments = {recipient for _, recipient in messages if recipient in DEPARTMENT_NOTIFIERS}
    assert not to_departments & UNAFFECTED, messages
    # Every notified department hears the recovery, after its notice.
    recovered = {recipient for kind, recipient in messages if kind == "recovery"}
    assert AFFECTED <= recovered, messages
    assert "leadership_report" in {kind for kind, r in messages if r == "console-leaders"}
    assert "vendor_escalation" in {kind for kind, r in messages if r == "console-vendor"}

    # The API saw the outage the way the messages tell it: one root, the rest caused by it.
    db = [i for i in seen_open if i["system"] == "his-db"]
    assert db and db[-1]["severity"] == "critical", seen_open
    assert "radiology" not in db[-1]["affected_departments"]
    linked = {i["system"] for i in seen_open if i["caused_by"]}
    assert {"registration", "lis"} <= linked, seen_open
    assert _port_closed(port), "the status page port is still open after the demo ended"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_stops_cleanly_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    out = tmp_path / "demo.out"
    proc = _start(port, out, "--speed", "4")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if "everything is healthy" in out.read_text(encoding="utf-8", errors="replace"):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"demo did not start: {out.read_text(errors='replace')[-2000:]}")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2,
                         trust_env=False).status_code == 200
        proc.send_signal(sig)
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    text = out.read_text(encoding="utf-8", errors="replace")
    assert code == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert _port_closed(port)


def test_demo_refuses_a_busy_port(tmp_path: Path) -> None:
    """A port already taken is a clear error and exit 1, not a traceback."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(_command(port, "--duration", "5"), cwd=REPO,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
