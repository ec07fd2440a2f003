"""`config.example.yaml` is what hospitals copy first: it must validate and stay realistic.

The example promises two things a fresh clone relies on: `hismon validate` passes with no
environment variables set (every `${NAME}` has a default), and it shows the whole model
(two campuses, departments with their own channels, the SPEC §2 standard plan).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks import CHECK_TYPES
from monitor.config.loader import ConfigError, load_config, load_config_text, merged_data
from monitor.config.model import Config

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.yaml"
FILES = [EXAMPLE, *sorted((REPO / "conf.d").glob("*.yaml"))]
"""The main file and the team files it includes (SPEC §14)."""
ENV_NAME = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def _clean_env() -> dict[str, str]:
    """The environment minus every variable the example reads and the HISMON_/WECOM_ families."""
    referenced = {name for file in FILES
                  for name in ENV_NAME.findall(file.read_text(encoding="utf-8"))}
    return {k: v for k, v in os.environ.items()
            if k not in referenced and not k.startswith(("HISMON_", "WECOM_"))}


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(EXAMPLE, env=_clean_env())


def test_validates_without_environment(config: Config) -> None:
    assert config.site.timezone == "Asia/Shanghai"
    assert config.site.language == "zh"
    assert config.site.campus_ids == ["main", "north"]


def test_has_enough_systems_and_departments_on_both_campuses(config: Config) -> None:
    assert len(config.systems) >= 8
    assert len(config.departments) >= 6
    assert {d.campus for d in config.departments} == {"main", "north"}


def test_every_system_names_existing_departments_and_a_plan(config: Config) -> None:
    departments = {d.id for d in config.departments}
    plans = {p.id for p in config.plans}
    for system in config.systems:
        assert set(system.departments) <= departments, system.id
        assert system.plan in plans, system.id
        assert system.downtime_procedure and system.downtime_procedure.strip(), system.id
        assert system.vendor is not None and system.vendor.notify, system.id
        assert system.vendor.response_sla, system.id
    # Everything clinical depends, directly or further down, on the database and the network.
    clinical = [s for s in config.systems if s.id not in ("his-db", "core-network", "pacs")]
    for system in clinical:
        assert {"his-db", "core-network"} <= set(config.dependencies(system.id)), system.id


def test_each_department_has_its_own_notifier(config: Config) -> None:
    """A shared notifier would be deduplicated and tell unaffected departments too."""
    seen: set[str] = set()
    for department in config.departments:
        assert department.notify, department.id
        assert not seen & set(department.notify), department.id
        seen |= set(department.notify)


def test_standard_plan_has_the_spec_step_kinds(config: Config) -> None:
    plan = config.plan("standard-outage")
    assert plan.early_warning == ["role:it_oncall"]
    by_kind: dict[str, Any] = {}
    for step in plan.steps:  # the first step of each kind (reminders and backup follow, 13.1)
        by_kind.setdefault(step.message, step)
    assert list(by_kind) == ["outage_it", "department_outage", "leadership_report",
                             "vendor_escalation", "progress_update"]
    assert "schedule:it-oncall:next" in plan.steps[2].notify, "the backup step (SPEC 13.1)"
    assert by_kind["outage_it"].after == 0
    assert "role:it_oncall" in by_kind["outage_it"].notify
    assert by_kind["department_outage"].after == 300
    assert by_kind["department_outage"].notify == ["departments"]
    assert by_kind["leadership_report"].after == 900
    assert "role:leadership" in by_kind["leadership_report"].notify
    assert by_kind["vendor_escalation"].after == 1800
    assert by_kind["vendor_escalation"].notify == ["vendor"]
    assert by_kind["vendor_escalation"].unless == "acknowledged"
    assert by_kind["progress_update"].every == 1800
    assert set(plan.on_recovery) == {"role:it_oncall", "departments", "role:leadership"}
    assert len(config.plans) >= 2


def test_maintenance_is_announced(config: Config) -> None:
    assert any(window.announce == [86400, 3600] for window in config.maintenance)


def test_messages_falling_due_together_are_grouped(config: Config) -> None:
    """SPEC 6: the example config groups within 10 s."""
    assert config.alerting.group_window == 10.0


def test_secrets_come_from_the_environment() -> None:
    """No literal webhook key or password in the file: each is `${NAME:-default}`."""
    text = "".join(file.read_text(encoding="utf-8") for file in FILES)
    for line in text.splitlines():
        stripped = line.split("#", 1)[0]
        if re.search(r"\b(webhook_url|password|secret|api_tokens):", stripped):
            assert "${" in stripped, line


def test_environment_values_are_used() -> None:
    env = {**_clean_env(), "WECOM_EMERGENCY_URL": "https://wecom.test/send?key=abc"}
    config = load_config(EXAMPLE, env=env)
    assert config.notifier("wecom-emergency").webhook_url == "https://wecom.test/send?key=abc"


def test_hismon_validate_exits_0_with_a_clean_environment() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "monitor", "validate", "-c", str(EXAMPLE)],
        cwd=REPO, env=_clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def _commented_checks() -> list[dict[str, object]]:
    """The check examples kept as comments (`  # - id: ...`) for optional or upcoming types."""
    items: list[list[str]] = []
    current: list[str] | None = None
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.startswith("  # - id:"):
            current = [line.replace("  # ", "  ", 1)]
            items.append(current)
        elif current is not None and line.startswith("  #   "):
            current.append(line.replace("  # ", "  ", 1))
        else:
            current = None
    return [yaml.safe_load("\n".join(item))[0] for item in items]


def test_commented_check_examples_are_valid_once_their_type_exists(config: Config) -> None:
    """Examples for optional drivers and upcoming types must not rot: each one whose type is
    registered (and whose driver is installed) validates when uncommented."""
    examples = _commented_checks()
    assert len(examples) >= 5
    systems = {s.id for s in config.systems}
    for example in examples:
        assert example["system"] in systems, example
    data = merged_data(EXAMPLE)
    tried = 0
    for example in examples:
        if example["type"] not in CHECK_TYPES:
            continue
        trial = {**data, "checks": [*data["checks"], example]}
        text = yaml.safe_dump(trial, allow_unicode=True, sort_keys=False)
        try:
            load_config_text(text, "config.example.yaml+commented", env=_clean_env())
        except ConfigError as exc:
            if all("pip install 'hismon[" in p.message for p in exc.problems):
                continue  # the optional driver is not installed here
            raise AssertionError(f"{example['id']}: {exc}") from None
        tried += 1
    if tried == 0:
        pytest.skip("no commented example has a registered type with its driver installed")


def test_the_estate_is_split_into_team_files(config: Config) -> None:
    """SPEC §14: network, PACS and server teams each own a file under conf.d/."""
    assert config.files == [str(EXAMPLE), *(str(REPO / "conf.d" / name) for name in
                                            ("network.yaml", "pacs.yaml", "servers.yaml"))]
    assert config.system("core-network").plan == "network-outage"
    assert config.check("pacs-dicom-port").system == "pacs"
    assert len(config.hosts) == 20


def test_apply_rules_make_a_check_per_host_and_template(config: Config) -> None:
    made = {c.id for c in config.checks if c.id.split("-")[-1] in ("ping", "ssh", "rdp")}
    assert len([c for c in made if c.endswith("-ping")]) == 20
    assert len([c for c in made if c.endswith("-ssh")]) == 14
    assert len([c for c in made if c.endswith("-rdp")]) == 6
    ssh = config.check("his-db-01-ssh")
    assert (ssh.system, ssh.host, ssh.port, ssh.interval) == ("his-db", "10.1.2.21", 22, 60.0)
    assert config.check("his-db-01-oracle-listener").retry_interval == 3.0
    assert config.check("queue-main-ping").system == "queue-calling"
    assert "his-db-01-node-exporter" not in {c.id for c in config.checks}  # not tagged app


def test_validate_names_every_file_it_read_and_expand_prints_the_checks() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "monitor", "validate", "-c", "config.example.yaml"],
        cwd=REPO, env=_clean_env(), capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert ("read 4 files: config.example.yaml, conf.d/network.yaml, conf.d/pacs.yaml, "
            "conf.d/servers.yaml") in listed.stdout
    env = {**_clean_env(), "HISMON_PROMETHEUS_URL": "http://hismon:pw-in-url@127.0.0.1:9090"}
    expanded = subprocess.run(
        [sys.executable, "-m", "monitor", "validate", "--expand", "-c", "config.example.yaml"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert expanded.returncode == 0, expanded.stderr
    checks = yaml.safe_load(expanded.stdout)["checks"]
    by_id = {c["id"]: c for c in checks}
    assert by_id["his-app-01-node-exporter"]["url"] == "http://10.1.2.11:9100/metrics"
    assert by_id["his-app-01-node-exporter"]["system"] == "his-outpatient"
    assert len(checks) == len(load_config(EXAMPLE, env=_clean_env()).checks)
    assert "pw-in-url" not in expanded.stdout


def test_the_example_rotation_has_four_people_a_backup_step_and_links(config: Config) -> None:
    """Issue 12: a realistic four-person IT rotation, a backup step, links (public_url)."""
    import datetime as dt

    from monitor.people.oncall import oncall

    schedule = config.schedule("it-oncall")
    assert len(schedule.members) == 4 and config.server.public_url
    steps = config.plan("standard-outage").steps
    assert any("schedule:it-oncall:next" in s.notify and s.unless == "acknowledged"
               for s in steps)
    new_year = dt.datetime(2027, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    entry = oncall(config, new_year.timestamp())[0]
    assert entry["override"] and entry["on_duty"]["id"] != entry["next"]["id"], \
        "the stand-in and the backup are two people"
