"""Config validation: every problem at once, each as FILE:LINE: path: message."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from monitor.config.loader import ConfigError, load_config, load_config_text

VALID = """\
site:
  name: Test Hospital
  timezone: Asia/Shanghai
  language: en
  campuses: [main, north]
server:
  listen: 127.0.0.1:9464
  api_tokens: ["${TOKEN:-dev-token}"]
roles:
  it_oncall: [hook-it]
departments:
  - id: er
    name: Emergency
    campus: north
    notify: [hook-er]
systems:
  - id: his-db
    name: HIS database
  - id: his
    name: Outpatient
    departments: [er]
    depends_on: [his-db]
    plan: standard
checks:
  - id: his-web
    system: his
    type: http
    url: http://127.0.0.1:8080/health
    interval: 30s
notifiers:
  - id: hook-it
    type: webhook
    url: http://127.0.0.1:9/it
  - id: hook-er
    type: webhook
    url: http://127.0.0.1:9/er
plans:
  - id: standard
    early_warning: [role:it_oncall]
    steps:
      - {after: 0m, notify: [role:it_oncall], message: outage_it}
      - {after: 5m, notify: [departments], message: department_outage}
    on_recovery: [role:it_oncall, departments]
"""


def problems_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "h.yaml", env or {})
    return [str(p) for p in caught.value.problems]


def replace(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new)


def test_the_valid_base_config_loads_and_inherits_defaults() -> None:
    config = load_config_text(VALID, "h.yaml", {})
    check = config.checks[0]
    assert check.interval == 30.0
    assert check.timeout == 5.0 and check.confirm == 3 and check.recover == 2
    assert config.server.api_tokens == ["dev-token"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (replace("interval: 30s", "interval: 30x"),
         'h.yaml:29: checks[0].interval: invalid duration "30x"'),
        (replace("    url: http://127.0.0.1:8080/health\n",
                 "    url: http://127.0.0.1:8080/health\n    colour: red\n"),
         "h.yaml:29: checks[0].colour: unknown key"),
        (replace("    system: his\n    type: http", "    system: nope\n    type: http"),
         'h.yaml:26: checks[0].system: unknown system "nope"'),
        (replace("    type: http\n", "    type: gopher\n"),
         "h.yaml:27: checks[0].type: unknown type 'gopher'"),
        (replace("    departments: [er]\n", "    departments: [er, icu]\n"),
         'h.yaml:21: systems[1].departments[1]: unknown department "icu"'),
        (replace("    plan: standard\n", "    plan: missing-plan\n"),
         'h.yaml:23: systems[1].plan: unknown plan "missing-plan"'),
        (replace("notify: [role:it_oncall], message: outage_it",
                 "notify: [role:pharmacy], message: outage_it"),
         'h.yaml:41: plans[0].steps[0].notify[0]: unknown role "pharmacy"'),
        (replace("message: department_outage", "message: department_outrage"),
         "h.yaml:42: plans[0].steps[1].message: Input should be"),
        (replace("  - id: hook-er\n", "  - id: hook-it\n"),
         'h.yaml:34: notifiers[1].id: duplicate id "hook-it" (also notifiers[0])'),
        (replace("  - id: his-db\n    name: HIS database\n",
                 "  - id: his-db\n    name: HIS database\n    depends_on: [his]\n"),
         "h.yaml:19: systems[0].depends_on: dependency cycle: his-db -> his -> his-db"),
        (replace('["${TOKEN:-dev-token}"]', '["${HISMON_TOKEN}"]'),
         "h.yaml:8: server.api_tokens[0]: environment variable HISMON_TOKEN is not set"),
        (replace("    url: http://127.0.0.1:8080/health\n", ""),
         "h.yaml:25: checks[0].url: missing required key"),
        (replace("  timezone: Asia/Shanghai", "  timezone: Mars/Olympus"),
         'h.yaml:3: site.timezone: unknown time zone "Mars/Olympus"'),
        (replace("{after: 5m, notify", "{notify"),
         "h.yaml:42: plans[0].steps[1]: a step needs `after`, `every` or both"),
        (replace("  - id: hook-er\n    type: webhook\n",
                 "  - id: hook-er\n    type: webhook\n    fallback: hook-er\n"),
         "h.yaml:36: notifiers[1].fallback: a notifier cannot fall back to itself"),
        (replace("    notify: [hook-er]\n", "    notify: [hook-nowhere]\n"),
         'h.yaml:15: departments[0].notify[0]: unknown notifier "hook-nowhere"'),
        (replace("    campus: north\n", "    campus: south\n"),
         'h.yaml:14: departments[0].campus: unknown campus "south"'),
    ],
    ids=["bad-duration", "unknown-key", "unknown-system", "unknown-check-type",
         "unknown-department", "unknown-plan", "unknown-role", "bad-message-kind",
         "duplicate-id", "dependency-cycle", "unset-env", "missing-key", "bad-timezone",
         "step-timing", "self-fallback", "unknown-notifier", "unknown-campus"],
)
def test_each_problem_names_file_line_and_key(text: str, expected: str) -> None:
    problems = problems_of(text)
    assert any(p.startswith(expected) for p in problems), problems


def test_all_problems_are_reported_at_once_in_line_order() -> None:
    text = replace("interval: 30s", "interval: soon").replace(
        "    plan: standard\n", "    plan: nowhere\n").replace("language: en", "language: fr")
    problems = problems_of(text)
    assert len(problems) == 3, problems
    assert [p.split(":")[1] for p in problems] == ["4", "23", "29"]


def test_yaml_syntax_errors_name_the_line() -> None:
    problems = problems_of(VALID.replace("  name: Test Hospital", "  name: [unclosed"))
    assert problems[0].startswith("h.yaml:3: (yaml):") or problems[0].startswith("h.yaml:4:")


def test_env_substitution_uses_the_environment_and_defaults() -> None:
    text = replace('["${TOKEN:-dev-token}"]', '["${TOKEN:-dev-token}", "${OTHER}"]')
    config = load_config_text(text, "h.yaml", {"TOKEN": "t1", "OTHER": "t2"})
    assert config.server.api_tokens == ["t1", "t2"]


def test_timeout_longer_than_interval_is_refused() -> None:
    problems = problems_of(replace("interval: 30s", "interval: 2s\n    timeout: 5s"))
    assert any("checks[0]: timeout 5s is longer than interval 2s" in p for p in problems)


def test_validate_command_exit_codes(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(VALID)
    bad.write_text(replace("interval: 30s", "interval: 30x"))
    ok = subprocess.run([sys.executable, "-m", "monitor", "validate", "-c", str(good)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    failed = subprocess.run([sys.executable, "-m", "monitor", "validate", "-c", str(bad)],
                            capture_output=True, text=True)
    assert failed.returncode == 2
    assert f'{bad}:29: checks[0].interval: invalid duration "30x"' in failed.stderr


def test_run_with_an_invalid_config_starts_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent(replace("interval: 30s", "interval: 30x")))
    proc = subprocess.run([sys.executable, "-m", "monitor", "run", "-c", str(bad)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "checks[0].interval" in proc.stderr
    assert not (tmp_path / "hismon-state.db").exists()


def test_a_missing_file_is_a_clear_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(caught.value)


def test_a_vantage_quorum_needs_a_shared_store() -> None:
    problems = problems_of(replace("interval: 30s", "interval: 30s\n    vantage_quorum: 2"))
    assert problems == ["h.yaml:30: checks[0].vantage_quorum: needs several instances "
                        "sharing a postgresql:// state store"]
