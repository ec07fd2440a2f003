"""Hostile and careless config files (SPEC §10, issues 10 and 11): each is exit 2 with FILE:LINE.

Duplicate keys, alias bombs, GBK files, 5,000-digit integers, 2,000 levels of nesting, and
values that validated before and then broke `run` (overflowing intervals, port 99999,
`rate_limit: 0/min`, `every: 1ms`, a window ending in year 9999, `sqlite://` in memory).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.config.loader import ConfigError, load_config, load_config_text
from tests.conftest import free_port
from tests.test_config import VALID, problems_of, replace

REPO = Path(__file__).resolve().parent.parent


def test_two_checks_blocks_are_a_duplicate_key_naming_both_lines() -> None:
    text = VALID + "checks:\n  - {id: other, system: his, type: tcp, host: 127.0.0.1, port: 1}\n"
    problems = problems_of(text)
    assert problems == ["h.yaml:44: checks: duplicate key (first at line 24)"], problems


def test_a_key_twice_in_one_check_is_a_duplicate() -> None:
    problems = problems_of(replace("    interval: 30s\n", "    interval: 30s\n    interval: 5s\n"))
    assert problems == ["h.yaml:30: checks[0].interval: duplicate key (first at line 29)"]


def test_merge_keys_are_allowed_and_their_values_are_overridden_by_explicit_keys() -> None:
    text = VALID.replace(
        "checks:\n  - id: his-web\n",
        "checks:\n  - &base {id: t, system: his, type: http, url: 'http://127.0.0.1:1/',"
        " interval: 10s}\n  - <<: *base\n    id: his-web\n")
    config = load_config_text(text, "h.yaml", {})
    web = config.check("his-web")
    assert web.type == "http" and web.interval == 30.0  # explicit keys win over merged ones
    assert config.check("t").interval == 10.0


def test_an_alias_bomb_is_refused_quickly_with_bounded_memory() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    problems = problems_of("\n".join(lines) + "\n")
    assert time.monotonic() - started < 2.0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 50_000, grown_kib
    assert problems == ["h.yaml:1: (yaml): the document expands to more than 5,000,000 values "
                        "(aliases counted at each use): refused"]


def test_aliases_inside_bounds_still_work() -> None:
    text = replace("      - {after: 5m, notify: [departments], message: department_outage}",
                   "      - {after: 5m, notify: &d [departments], message: department_outage}\n"
                   "      - {after: 9m, notify: *d, message: department_outage}")
    config = load_config_text(text, "h.yaml", {})
    assert config.plan("standard").steps[2].notify == ["departments"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("site:\n  name: 北京协和医院信息中心监控\n".encode("gbk"),
         "h.yaml:2: (file): not UTF-8; saved as GBK? Save the file as UTF-8"),
        ("site:\n  name: x\n".encode("utf-16"),
         "h.yaml:1: (file): saved as UTF-16; save the file as UTF-8"),
        (b"site:\n  name: \xff\xfe\xfd\n",
         "h.yaml:2: (file): not UTF-8 (byte 0xff); save the file as UTF-8"),
        (b"defaults:\n  confirm: " + b"9" * 4400 + b"\n",
         "h.yaml:2: defaults.confirm: number too large (4400 digits)"),
        (b"site: " + b"[" * 2000 + b"]" * 2000 + b"\n",
         "h.yaml:1: (yaml): nested deeper than 64 levels"),
        (b"site:\n  campuses: [[main]]\n",
         "h.yaml:2: site.campuses[0]: Input should be a valid string"),
        (b"defaults:\n  confirm: .inf\n", "h.yaml:2: defaults.confirm: number out of range"),
        (b"- a\n- b\n", "h.yaml:1: (top level): the config must be a YAML mapping"),
        (b"site: !!python/object:os.system {}\n", "h.yaml:1: site: unsupported YAML tag"),
        (b'site:\n  name: "\\ud83d"\n', "h.yaml:2: "),
    ],
    ids=["gbk", "utf-16", "bad-bytes", "huge-int", "deep", "campus-list", "inf", "not-mapping",
         "python-tag", "surrogate"],
)
def test_unusable_files_are_one_clear_problem(tmp_path: Path, content: bytes,
                                              expected: str) -> None:
    path = tmp_path / "h.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={})
    shown = [str(p).replace(str(path), "h.yaml") for p in caught.value.problems]
    assert any(p.startswith(expected) for p in shown), shown


def test_validate_exits_2_on_each_without_a_traceback(tmp_path: Path) -> None:
    cases = {
        "gbk.yaml": "site:\n  name: 北京协和医院信息中心\n".encode("gbk"),
        "huge.yaml": b"defaults:\n  confirm: " + b"9" * 4400 + b"\n",
        "deep.yaml": b"site: " + b"[" * 2000 + b"]" * 2000 + b"\n",
        "campus.yaml": b"site:\n  campuses: [[main]]\n",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        proc = subprocess.run([sys.executable, "-m", "monitor", "validate", "-c",
                               str(tmp_path / name)], capture_output=True, text=True,
                              timeout=60, cwd=REPO)
        assert proc.returncode == 2, (name, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert proc.stderr.startswith(f"{tmp_path / name}:"), proc.stderr


# ---- values that validated and then broke `run` (issue 11 item 7) -------------------------

@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("interval: 30s", "interval: 99999999999999999999d",
         'h.yaml:29: checks[0].interval: duration "99999999999999999999d" is too long'),
        ("interval: 30s", "interval: 8d", "h.yaml:29: checks[0].interval: 8d 0h 00m is too long"),
        ("interval: 30s", "interval: 10ms",
         "h.yaml:29: checks[0].interval: 10ms is too short (at least 1s)"),
        ("listen: 127.0.0.1:9464", "listen: 127.0.0.1:99999",
         "h.yaml:7: server.listen: port 99999 is out of range (1..65535)"),
        ("{after: 5m, notify: [departments]", "{every: 1ms, notify: [departments]",
         "h.yaml:42: plans[0].steps[1].every: 1ms is too short (at least 1s)"),
        ("    url: http://127.0.0.1:9/it\n",
         "    url: http://127.0.0.1:9/it\n    rate_limit: 0/min\n",
         "h.yaml:34: notifiers[0].rate_limit: 0 messages per period would never send"),
        ("    url: http://127.0.0.1:9/it\n", "    url: http://127.0.0.1:9/it\n    timeout: 3650d\n",
         "h.yaml:34: notifiers[0].timeout: 3650d 0h 00m is too long (at most 5m 00s)"),
        ("    url: http://127.0.0.1:9/it\n",
         "    url: http://127.0.0.1:9/it\n    retry: {initial: 3000d}\n",
         "h.yaml:34: notifiers[0].retry.initial: 3000d 0h 00m is too long (at most 1h 00m)"),
        ("  it_oncall: [hook-it]\n", "  it_oncall: [hook-it]\nstate:\n  url: sqlite://\n",
         "h.yaml:12: state.url: no file named: the state would live only in memory"),
        ("  it_oncall: [hook-it]\n",
         "  it_oncall: [hook-it]\nstate:\n  url: postgresql://u@127.0.0.1/db?pool_size=abc\n",
         "h.yaml:12: state.url: pool_size and query_timeout must be numbers"),
        ("  it_oncall: [hook-it]\n",
         "  it_oncall: [hook-it]\nstate:\n  url: postgresql://u@127.0.0.1/db?pool_size=0\n",
         "h.yaml:12: state.url: pool_size must be >= 1"),
        ("  it_oncall: [hook-it]\n",
         "  it_oncall: [hook-it]\nstate:\n  url: sqlite:////dev/null/state.db\n",
         "h.yaml:12: state.url: /dev/null is not a directory: cannot create /dev/null/state.db"),
        ("  it_oncall: [hook-it]\n",
         "  it_oncall: [hook-it]\nmaintenance:\n  - {systems: [his], reason: r, "
         "start: '2026-12-01T22:00:00+08:00', end: '9999-12-31T23:00:00+08:00'}\n",
         "h.yaml:12: maintenance[0].end: year 9999 is out of range (2000..2099)"),
        ("  - id: hook-it\n    type: webhook\n    url: http://127.0.0.1:9/it\n",
         "  - id: hook-it\n    type: wecom\n    webhook_url: http://127.0.0.1:9/it\n"
         "    rate_limit: 30/min\n",
         "h.yaml:34: notifiers[0].rate_limit: 30/min is above wecom's own limit of 20/min"),
        ("confirm: 3", "confirm: 3", ""),
    ],
    ids=["overflowing-interval", "long-interval", "short-interval", "port", "every-1ms",
         "rate-0", "notifier-timeout", "retry-initial", "sqlite-memory", "pool-abc", "pool-0",
         "sqlite-unopenable", "year-9999", "wecom-above-channel", "noop"],
)
def test_values_run_would_choke_on_are_validation_errors(old: str, new: str,
                                                         expected: str) -> None:
    if not expected:
        load_config_text(VALID, "h.yaml", {})
        return
    text = VALID.replace(old, new) if old in VALID else VALID + new
    problems = problems_of(text)
    assert any(p.startswith(expected) for p in problems), problems


def test_run_start_up_failure_is_one_line_without_the_password(tmp_path: Path) -> None:
    """A PostgreSQL state URL with a wrong password: one line, exit 1, no traceback."""
    config = tmp_path / "h.yaml"
    role = f"hismon_nologin_{os.getpid()}"
    config.write_text(VALID.replace(
        "  it_oncall: [hook-it]\n",
        f"  it_oncall: [hook-it]\nstate:\n  url: postgresql://{role}:s3cret-pw@127.0.0.1:5432/"
        "nonexistent_db_for_hismon\n").replace("127.0.0.1:9464", f"127.0.0.1:{free_port()}"))
    proc = subprocess.run([sys.executable, "-m", "monitor", "run", "-c", str(config),
                           "--log-level", "error"], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "s3cret-pw" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("hismon:")]
    assert len(lines) == 1 and "cannot start" in lines[0], proc.stderr


def test_a_plan_whose_steps_are_a_number_is_a_problem_not_a_crash() -> None:
    """Found by the fuzzer: `steps: 5` crashed the reference checks."""
    problems = problems_of(replace("    steps:\n      - {after: 0m, notify: [role:it_oncall], "
                                   "message: outage_it}\n      - {after: 5m, notify: "
                                   "[departments], message: department_outage}\n",
                                   "    steps: 5\n"))
    assert any(p.startswith("h.yaml:40: plans[0].steps:") for p in problems), problems
    assert not any("could not check" in p for p in problems), problems


def test_a_list_as_a_person_id_is_a_problem_not_a_crash() -> None:
    """Found by the fuzzer: a list id in people crashed the person:/schedule: target check."""
    text = VALID.replace("notify: [role:it_oncall], message: outage_it",
                         "notify: [role:it_oncall, 'person:x'], message: outage_it") + \
        "people:\n  - {id: [a], name: A, notify: [hook-it]}\n"
    problems = problems_of(text)
    assert any("people[0].id: Input should be a valid string" in p for p in problems), problems
    assert not any("could not check" in p for p in problems), problems
