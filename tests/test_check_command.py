"""Command check with the real monitoring-plugins (Debian `monitoring-plugins-basic`).

The plugin tests skip only when /usr/lib/nagios/plugins/check_tcp (or check_http) is
absent; install them with `apt-get install -y monitoring-plugins-basic`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from checks.command import parse_output, parse_perfdata
from monitor.core.result import State
from tests.conftest import HttpTarget
from tests.probe_helpers import closed_port, make_check, probe, tcp_server

PLUGINS = Path(os.environ.get("HISMON_TEST_PLUGINS", "/usr/lib/nagios/plugins"))
CHECK_TCP = PLUGINS / "check_tcp"
CHECK_HTTP = PLUGINS / "check_http"

needs_check_tcp = pytest.mark.skipif(
    not CHECK_TCP.exists(),
    reason=f"{CHECK_TCP} absent: apt-get install -y monitoring-plugins-basic")
needs_check_http = pytest.mark.skipif(
    not CHECK_HTTP.exists(),
    reason=f"{CHECK_HTTP} absent: apt-get install -y monitoring-plugins-basic")


def cmd(*argv: str, **extra: object) -> dict[str, object]:
    return {"type": "command", "command": list(argv), "timeout": "5s", **extra}


async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 LIS interface ready\r\n")
    await writer.drain()
    await reader.read(100)


@needs_check_tcp
async def test_check_tcp_ok_with_perfdata() -> None:
    """Exit 0 is OK, the first line is the message, `time=...s` becomes a number."""
    async with tcp_server(banner) as port:
        result = await probe(cmd(str(CHECK_TCP), "-H", "127.0.0.1", "-p", str(port)))
    assert result.state is State.OK, result.message
    assert result.message.startswith("TCP OK")
    assert f"port {port}" in result.message
    assert "|" not in result.message
    assert 0 <= result.numbers["time"] < 1
    assert result.numbers["latency_seconds"] > 0
    assert result.cause is None


@needs_check_tcp
async def test_check_tcp_refused_is_critical() -> None:
    port = closed_port()
    result = await probe(cmd(str(CHECK_TCP), "-H", "127.0.0.1", "-p", str(port),
                             cause="network"))
    assert result.state is State.CRIT
    assert "Connection refused" in result.message
    assert result.cause == "network"


@needs_check_tcp
async def test_check_tcp_expect_mismatch_is_warn() -> None:
    """check_tcp's own `-M warn` on a banner mismatch: exit 1 becomes WARN."""
    async with tcp_server(banner) as port:
        result = await probe(cmd(str(CHECK_TCP), "-H", "127.0.0.1", "-p", str(port),
                                 "-e", "MSH|", "-M", "warn"))
    assert result.state is State.WARN
    assert "Unexpected response" in result.message


@needs_check_tcp
async def test_usage_errors_are_unknown() -> None:
    """Exit 3 (bad arguments) is UNKNOWN: the check is broken, not the target."""
    result = await probe(cmd(str(CHECK_TCP)))
    assert result.state is State.UNKNOWN
    assert "No arguments found" in result.message


@needs_check_http
async def test_check_http_against_a_real_web_server(http_target: HttpTarget) -> None:
    http_target.body = "status: UP"
    ok = await probe(cmd(str(CHECK_HTTP), "-H", "127.0.0.1", "-p", str(http_target.port),
                         "-u", "/health", "-s", "UP"))
    assert ok.state is State.OK, ok.message
    assert "HTTP OK" in ok.message
    assert ok.numbers["size"] > 0
    http_target.status = 503
    crit = await probe(cmd(str(CHECK_HTTP), "-H", "127.0.0.1", "-p", str(http_target.port),
                           "-u", "/health"))
    assert crit.state is State.CRIT
    assert "503" in crit.message


async def test_no_shell_is_involved() -> None:
    """Arguments reach the plugin literally: `$HOME` and `;` are not interpreted."""
    result = await probe(cmd("/bin/echo", "$HOME; rm -rf /tmp/x"))
    assert result.state is State.OK
    assert result.message == "$HOME; rm -rf /tmp/x"


async def test_exit_codes_map_to_states() -> None:
    for code, state in ((0, State.OK), (1, State.WARN), (2, State.CRIT), (3, State.UNKNOWN)):
        result = await probe(cmd("/bin/sh", "-c", f"echo 'state {code}'; exit {code}"))
        assert result.state is state, result
        assert result.message == f"state {code}"


async def test_other_exit_codes_are_unknown_with_the_code() -> None:
    result = await probe(cmd("/bin/sh", "-c", "echo broken >&2; exit 42"))
    assert result.state is State.UNKNOWN
    assert result.message == "plugin exited with code 42: broken"


async def test_a_missing_plugin_is_unknown() -> None:
    result = await probe(cmd("/usr/lib/nagios/plugins/check_no_such_plugin"))
    assert result.state is State.UNKNOWN
    assert result.message == "plugin not found: /usr/lib/nagios/plugins/check_no_such_plugin"


async def test_env_reaches_the_plugin_and_is_masked() -> None:
    data = cmd("/bin/sh", "-c", 'test "$DB_PASSWORD" = s3cret && echo OK got it',
               env={"DB_PASSWORD": "s3cret"})
    result = await probe(data)
    assert result.state is State.OK
    assert make_check(data).public_config()["env"] == "***"


def _alive(pid: int) -> bool:
    """True if the process exists and is not a zombie (PID 1 may not reap in containers)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


async def test_a_hanging_plugin_is_killed_with_its_children(tmp_path: Path) -> None:
    """On timeout the whole process group dies, including a child the plugin started."""
    pid_file = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pid_file}; sleep 60"
    result = await probe(cmd("/bin/sh", "-c", script, timeout="1s"))
    assert result.state is State.CRIT
    assert result.message.startswith("plugin did not finish within")
    assert result.duration < 1.5
    child = int(pid_file.read_text())
    for _ in range(100):  # SIGKILL is delivered at once; allow 5 s for slow machines
        if not _alive(child):
            break
        await asyncio.sleep(0.05)
    assert not _alive(child), "the plugin's child survived the timeout"


async def test_huge_output_costs_bounded_memory() -> None:
    result = await probe(cmd("/bin/sh", "-c", "echo 'OK big'; head -c 5000000 /dev/zero",
                             max_output=1000))
    assert result.state is State.OK
    assert result.message == "OK big"


def test_perfdata_parsing() -> None:
    numbers = parse_perfdata(
        "time=0.000123s;;;0.000000;10.000000 'free space /var'=512MB;100;50;0;2048 "
        "load1=0.52;5;10;0 util=93.5%;80;90 rta=1.5ms;100;200 bad=U;1;2 'it''s'=3c"
    )
    assert numbers == {
        "time": pytest.approx(0.000123),
        "free space /var": 512 * 1024**2,
        "load1": 0.52,
        "util": 93.5,
        "rta": pytest.approx(0.0015),
        "it's": 3.0,
    }


def test_long_output_and_multiline_perfdata() -> None:
    text = "DISK OK - free space | /=10MB;;;0;100\nline two\nline three | /var=20MB\n/home=30MB\n"
    message, numbers = parse_output(text)
    assert message == "DISK OK - free space"
    assert set(numbers) == {"/", "/var", "/home"}
    assert numbers["/home"] == 30 * 1024**2


async def test_a_plugin_echoing_a_secret_from_its_env_shows_it_masked() -> None:
    """hismon gave the plugin the value, so hismon knows it and masks it (issue 10)."""
    check = make_check(cmd("/bin/sh", "-c",
                           'echo "CRITICAL - login as monitor/$DB_PASSWORD refused"; exit 2',
                           env={"DB_PASSWORD": "Hunter2-lis-db"}))
    result = await probe(check)
    assert result.state is State.CRIT
    assert result.message == "CRITICAL - login as monitor/*** refused"
    assert check.public_config()["env"] == "***"
