"""SNMP check against a real agent: Debian's `snmpd` on a loopback high port.

The test writes a throwaway snmpd.conf (a read-only community, v3 users made with
`createUser` for each auth/priv protocol family, and an `override` OID set to a known value),
starts snmpd in the foreground with its persistent files in a temporary directory, and
reads sysUpTime, the loopback interface's ifOperStatus and the overridden OID.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from checks.base import ProbeContext
from checks.snmp import SnmpCheck
from monitor.core.result import State
from tests.probe_helpers import make_check, probe

SNMPD = shutil.which("snmpd") or ("/usr/sbin/snmpd" if os.path.exists("/usr/sbin/snmpd")
                                  else None)
COMMUNITY = "ward-switch-ro"
AUTH_KEY, PRIV_KEY = "auth-key-123", "priv-key-456"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
IF_OPER_STATUS_LO = "1.3.6.1.2.1.2.2.1.8.1"  # ifIndex 1 is `lo` on Linux: always up (1)
BATTERY = "1.3.6.1.4.1.99999.1.0"  # our `override`: a UPS's minutes of battery left
MISSING = "1.3.6.1.4.1.99999.7.0"
# (user, auth protocol as hismon and net-snmp name it, priv protocol likewise)
V3_USERS = [
    ("ups-md5-des", "MD5", "MD5", "DES", "DES"),
    ("ups-sha-aes", "SHA", "SHA", "AES", "AES"),
    ("ups-sha-aes192", "SHA", "SHA", "AES192", "AES-192"),
    ("ups-sha-aes256", "SHA", "SHA", "AES256", "AES-256"),
    ("ups-sha224", "SHA224", "SHA-224", "AES", "AES"),
    ("ups-sha256", "SHA256", "SHA-256", "AES", "AES"),
    ("ups-sha384", "SHA384", "SHA-384", "AES256", "AES-256"),
    ("ups-sha512", "SHA512", "SHA-512", "AES256", "AES-256"),
]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if SNMPD is None:
        pytest.skip("snmpd is not installed (apt-get install snmpd)")
    workdir: Path = tmp_path_factory.mktemp("snmpd")
    port = free_udp_port()
    lines = [f"agentAddress udp:127.0.0.1:{port}", f"rocommunity {COMMUNITY} 127.0.0.1",
             f"override .{BATTERY} integer 42", "createUser ups-noauth", "rouser ups-noauth noauth"]
    for user, _, auth, _, priv in V3_USERS:
        lines += [f"createUser {user} {auth} {AUTH_KEY} {priv} {PRIV_KEY}", f"rouser {user} priv"]
    lines += [f"createUser ups-authonly SHA {AUTH_KEY}", "rouser ups-authonly auth"]
    (workdir / "snmpd.conf").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "MIBS": "", "SNMP_PERSISTENT_DIR": str(workdir / "persist")}
    proc = subprocess.Popen(
        [SNMPD, "-f", "-C", "-c", str(workdir / "snmpd.conf"), "-Lf", str(workdir / "log"),
         "-p", str(workdir / "pid")], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError((workdir / "log").read_text(errors="replace")[-2000:])
            if "NET-SNMP version" in (workdir / "log").read_text(errors="replace") \
                    if (workdir / "log").exists() else False:
                break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def v2c(port: int, **extra: Any) -> dict[str, Any]:
    return {"type": "snmp", "host": "127.0.0.1", "port": port, "community": COMMUNITY,
            "timeout": "5s", **extra}


async def test_v2c_reads_uptime_interface_status_and_the_value_we_set(agent: int) -> None:
    result = await probe(v2c(agent, oids=[IF_OPER_STATUS_LO, SYS_UPTIME, BATTERY], expect=1))
    assert result.state is State.OK, result.message
    assert result.message.startswith(f"{IF_OPER_STATUS_LO} = 1, {SYS_UPTIME} = ")
    assert f"{BATTERY} = 42" in result.message
    assert result.numbers[IF_OPER_STATUS_LO] == 1
    assert result.numbers[BATTERY] == 42
    assert result.numbers[SYS_UPTIME] > 0  # TimeTicks since the agent started
    assert result.numbers["value"] == 1


async def test_expect_mismatch_is_critical_naming_oid_and_value(agent: int) -> None:
    result = await probe(v2c(agent, oids=[BATTERY], expect=1))
    assert result.state is State.CRIT
    assert result.message == f"{BATTERY} = 42, expected 1"
    assert result.cause == "network"


async def test_value_thresholds_judge_the_first_numeric_value(agent: int) -> None:
    low = await probe(v2c(agent, oids=[BATTERY], value={"warn": 60, "crit": 30, "below": True},
                          cause="capacity"))
    assert low.state is State.WARN
    assert low.message == f"{BATTERY} 42 below WARN limit 60"
    assert low.cause == "capacity"
    crit = await probe(v2c(agent, oids=[BATTERY], value={"warn": 50, "crit": 45,
                                                          "below": True}))
    assert crit.state is State.CRIT
    fine = await probe(v2c(agent, oids=[BATTERY, SYS_UPTIME], value={"crit": 10,
                                                                      "below": True}))
    assert fine.state is State.OK
    assert fine.message.startswith(f"{BATTERY} 42, {SYS_UPTIME} = ")


async def test_a_missing_oid_is_unknown_and_named(agent: int) -> None:
    result = await probe(v2c(agent, oids=[SYS_UPTIME, MISSING]))
    assert result.state is State.UNKNOWN
    assert result.message.startswith(f"{MISSING}: noSuchObject")


async def test_a_wrong_community_times_out_as_critical_and_says_why(agent: int) -> None:
    result = await probe(v2c(agent, oids=[SYS_UPTIME], community="not-the-community",
                             timeout="2s"))
    assert result.state is State.CRIT
    assert result.message.startswith(f"no SNMP answer from 127.0.0.1:{agent} within")
    assert "wrong community" in result.message
    assert "not-the-community" not in result.message


async def test_no_agent_on_the_port_is_a_timeout() -> None:
    started = time.monotonic()
    result = await probe({"type": "snmp", "host": "127.0.0.1", "port": free_udp_port(),
                          "community": COMMUNITY, "oids": [SYS_UPTIME], "timeout": "2s"})
    assert result.state is State.CRIT
    assert "no SNMP answer" in result.message
    assert time.monotonic() - started < 3  # the probe's own budget, not the runner's


@pytest.mark.parametrize(("user", "auth", "priv"), [(u, a, p) for u, a, _, p, _ in V3_USERS],
                         ids=[u for u, *_ in V3_USERS])
async def test_v3_auth_priv_with_every_protocol(agent: int, user: str, auth: str,
                                                priv: str) -> None:
    result = await probe({"type": "snmp", "host": "127.0.0.1", "port": agent, "user": user,
                          "auth_protocol": auth, "auth_key": AUTH_KEY, "priv_protocol": priv,
                          "priv_key": PRIV_KEY, "oids": [BATTERY], "expect": "42",
                          "timeout": "5s"})
    assert result.state is State.OK, result.message
    assert result.message == f"{BATTERY} = 42"


async def test_v3_auth_only_and_no_auth_levels(agent: int) -> None:
    auth_only = await probe({"type": "snmp", "host": "127.0.0.1", "port": agent,
                             "user": "ups-authonly", "auth_key": AUTH_KEY, "oids": [BATTERY],
                             "timeout": "5s"})
    assert auth_only.state is State.OK, auth_only.message
    no_auth = await probe({"type": "snmp", "host": "127.0.0.1", "port": agent,
                           "user": "ups-noauth", "oids": [BATTERY], "timeout": "5s"})
    assert no_auth.state is State.OK, no_auth.message


async def test_v3_wrong_auth_key_is_unknown_authentication_failure(agent: int) -> None:
    result = await probe({"type": "snmp", "host": "127.0.0.1", "port": agent,
                          "user": "ups-sha256", "auth_protocol": "SHA256",
                          "auth_key": "wrong-auth-key", "priv_protocol": "AES",
                          "priv_key": PRIV_KEY, "oids": [BATTERY], "timeout": "5s"})
    assert result.state is State.UNKNOWN
    assert result.message == (f"SNMP 127.0.0.1:{agent}: v3 authentication failed "
                              "(wrong auth_key or auth_protocol?)")


async def test_v3_wrong_priv_key_is_dropped_by_the_agent_so_it_times_out(agent: int) -> None:
    result = await probe({"type": "snmp", "host": "127.0.0.1", "port": agent,
                          "user": "ups-sha256", "auth_protocol": "SHA256", "auth_key": AUTH_KEY,
                          "priv_protocol": "AES", "priv_key": "wrong-priv-key",
                          "oids": [BATTERY], "timeout": "2s"})
    assert result.state is State.CRIT
    assert "wrong v3 user/keys" in result.message


async def test_one_engine_is_shared_per_credential_set(agent: int) -> None:
    ctx = ProbeContext()
    try:
        first = make_check(v2c(agent, oids=[SYS_UPTIME]))
        second = make_check({**v2c(agent, oids=[BATTERY]), "id": "other"})
        assert (await probe(first, ctx)).state is State.OK
        assert (await probe(second, ctx)).state is State.OK
        assert len(ctx._resources) == 1
    finally:
        await ctx.close()
    assert ctx._resources == {}


def test_secrets_are_masked() -> None:
    check = make_check({"type": "snmp", "host": "ups1", "user": "u", "auth_key": AUTH_KEY,
                        "priv_key": PRIV_KEY, "oids": [BATTERY]})
    shown = check.public_config()
    assert shown["auth_key"] == shown["priv_key"] == "***"
    assert AUTH_KEY not in repr(shown) and PRIV_KEY not in repr(shown)
    assert make_check(v2c(161, oids=[BATTERY])).public_config()["community"] == "***"


@pytest.mark.parametrize(("extra", "wanted"), [
    ({"oids": ["sysUpTime.0"]}, "not a numeric dotted OID"),
    ({"user": "u"}, "set either community (SNMP v2c) or user (SNMP v3)"),
    ({"community": None}, "set either community"),
    ({"auth_key": AUTH_KEY}, "only apply to SNMP v3"),
    ({"expect": 1, "value": {"crit": 1}}, "either value thresholds or expect"),
    ({"auth_protocol": "SHA1"}, "auth_protocol"),
])
def test_bad_settings_are_refused(extra: dict[str, Any], wanted: str) -> None:
    data = {"type": "snmp", "host": "ups1", "community": COMMUNITY, "oids": [BATTERY], **extra}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ValidationError, match=wanted.replace("(", r"\(").replace(")", r"\)")):
        make_check(data)


def test_v3_keys_need_the_right_companions() -> None:
    base = {"type": "snmp", "host": "ups1", "user": "u", "oids": [BATTERY]}
    with pytest.raises(ValidationError, match="priv_key needs auth_key"):
        make_check({**base, "priv_key": PRIV_KEY})
    with pytest.raises(ValidationError, match="at least 8"):
        make_check({**base, "auth_key": "short"})
    check = make_check({**base, "auth_key": AUTH_KEY, "priv_key": PRIV_KEY})
    assert isinstance(check, SnmpCheck)
    assert (check.version, check.security_level) == ("3", "authPriv")
