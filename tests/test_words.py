"""Timeline entries said again in the reader's language (monitor/people/words.py)."""

from __future__ import annotations

import pytest

from monitor.config.loader import load_config_text
from monitor.core.models import TimelineEntry
from monitor.people import words

CONFIG = """\
site: {name: H, timezone: Asia/Shanghai, language: zh}
departments:
  - {id: er, name: {zh: 急诊科, en: Emergency}, notify: [it]}
  - {id: opd, name: {zh: 门诊部, en: Outpatient}, notify: [it]}
systems:
  - {id: core, name: {zh: 核心网络, en: Core network}, departments: [er]}
  - {id: his, name: {zh: 门诊医生站, en: Doctor station}, departments: [opd], depends_on: [core]}
checks:
  - {id: c, system: core, type: tcp, host: 127.0.0.1, port: 1}
notifiers:
  - {id: it, type: console}
"""


def entry(kind: str, data: dict[str, object], text: str = "stored") -> TimelineEntry:
    return TimelineEntry("inc-1", 0.0, kind, text, data)


@pytest.mark.parametrize("kind", sorted(words._RENDER))
def test_an_entry_without_its_data_keeps_its_stored_text(kind: str) -> None:
    """Entries written before their data carried what the sentence needs."""
    config = load_config_text(CONFIG, "w.yaml", {})
    for language in ("zh", "en"):
        said = words.entry_text(entry(kind, {}, "as stored"), config, language)
        assert said == "as stored" or kind in (  # sentences without data
            "escalated", "resolved", "hold", "vendor_responded"), (kind, said)


@pytest.mark.parametrize("language,expected", [
    ("zh", ["核心网络 同时故障，新增受影响科室：急诊科、门诊部", "由 核心网络 故障引起（inc-0）",
            "暂缓发送通知：维护窗口内", "恢复发送通知", "故障（科室）未发送：已确认接手"]),
    ("en", ["Core network is down too: Emergency and Outpatient affected",
            "caused by Core network (inc-0)", "notifications held: maintenance window",
            "notifications released", "outage (department) not sent: acknowledged"])])
def test_ids_become_names_in_the_readers_language(language: str, expected: list[str]) -> None:
    config = load_config_text(CONFIG, "w.yaml", {})
    said = [words.entry_text(e, config, language) for e in (
        entry("departments_added", {"system": "core", "departments": ["er", "opd"]}),
        entry("caused_by", {"root": "inc-0", "system": "core"}),
        entry("hold", {"reason": "maintenance"}),
        entry("hold", {"reason": None}),
        entry("step_skipped", {"step": "step-1", "kind": "department_outage",
                               "reason": "acknowledged"}))]
    assert said == expected


def test_every_kind_said_has_a_name_in_both_languages() -> None:
    for language in ("zh", "en"):
        assert set(words._RENDER) <= set(words.TIMELINE_KINDS[language]), language
        assert set(words.SENTENCES[language]) == set(words.SENTENCES["en"])
    assert set(words.REVIEW_TEXT["zh"]) == set(words.REVIEW_TEXT["en"])
