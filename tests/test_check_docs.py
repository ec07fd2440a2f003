"""Every YAML example in docs/checks.md validates against the example hospital's config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks import CHECK_TYPES
from monitor.config.loader import load_config_text, merged_data

REPO = Path(__file__).resolve().parent.parent
DOC = (REPO / "docs" / "checks.md").read_text(encoding="utf-8")
EXAMPLE = merged_data(REPO / "config.example.yaml")  # the main file and its conf.d/ files
PASTE_SECTION = "## Examples for config.example.yaml"
# reference examples name secrets as ${NAME} without a default, as a real config should
ENV = {name: "test-value" for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", DOC)}


def yaml_blocks(text: str) -> list[list[dict[str, Any]]]:
    blocks = []
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S):
        data = yaml.safe_load(block)
        assert isinstance(data, list), block
        blocks.append(data)
    return blocks


def validate(checks: list[dict[str, Any]], env: dict[str, str] = ENV) -> None:
    """Load config.example.yaml with `checks` as its checks, as `hismon validate` would."""
    config = {**EXAMPLE, "checks": checks}
    load_config_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False),
                     "config.example.yaml+docs", env=env)


REFERENCE, PASTE = DOC.split(PASTE_SECTION)


@pytest.mark.parametrize("checks", yaml_blocks(REFERENCE),
                         ids=lambda checks: checks[0]["id"])
def test_each_reference_example_validates(checks: list[dict[str, Any]]) -> None:
    validate(checks)


def test_the_examples_to_paste_validate_together_with_the_existing_checks() -> None:
    (examples,) = yaml_blocks(PASTE)
    present = {c["id"] for c in EXAMPLE["checks"]}  # examples already pasted in
    fresh = [c for c in examples if c["id"] not in present]
    validate([*EXAMPLE["checks"], *fresh], env={})  # a fresh checkout: no secrets set


def test_every_type_is_documented_with_a_pasteable_example() -> None:
    (examples,) = yaml_blocks(PASTE)
    assert {c["type"] for c in examples} >= set(CHECK_TYPES)
    for check_type in CHECK_TYPES:
        assert f"## {check_type}" in REFERENCE or check_type in (
            "postgres", "mysql", "oracle", "mssql"), check_type
