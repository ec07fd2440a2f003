"""Names in the reader's language (SPEC §7): `{zh, en}` maps, campuses `{id, name}`, fallbacks.

Messages are rendered with the real templates; config comes through the real loader.
"""

from __future__ import annotations

import pytest

from monitor.config.i18n import text
from monitor.config.loader import ConfigError, load_config_text
from monitor.config.model import Config
from monitor.core.models import Incident
from monitor.delivery.context import maintenance_context, message_context
from monitor.delivery.messages import MessageRenderer

CONFIG = """
site:
  name: H
  language: zh
  campuses: [{id: main, name: {zh: 本部院区, en: Main campus}}, north]
departments:
  - {id: er, name: {zh: 急诊科, en: Emergency}, campus: main}
  - {id: intl, name: {zh: 国际医疗部, en: International clinic}, campus: north, language: en}
  - {id: lab, name: 检验科, campus: north, language: en}
systems:
  - id: his
    name: {zh: 门诊医生站, en: Outpatient doctor station}
    departments: [er, intl, lab]
    downtime_procedure:
      zh: 改用纸质处方（B-3 表）。
      en: Switch to paper prescriptions (form B-3).
    still_works: {zh: 影像浏览}
    vendor: {name: {zh: 甲公司, en: Vendor A}}
maintenance:
  - systems: [his]
    start: "2030-03-01T22:00:00+08:00"
    end: "2030-03-02T02:00:00+08:00"
    reason: {zh: 数据库迁移, en: database migration}
"""


def config() -> Config:
    return load_config_text(CONFIG, "h.yaml")


def test_plain_fields_hold_the_site_language_and_text_picks_per_reader() -> None:
    c = config()
    his = c.system("his")
    assert his.name == "门诊医生站"  # site language zh: what every other reader sees
    assert text(his, "name", "en") == "Outpatient doctor station"
    # Only zh written: an English reader falls back to the site's language.
    assert text(his, "still_works", "en") == "影像浏览"
    assert text(c.department("lab"), "name", "en") == "检验科"  # a plain string is for all
    assert c.site.campus_ids == ["main", "north"]
    assert [text(x, "name", "en") for x in c.site.campuses] == ["Main campus", "north"]
    assert text(his.vendor, "name", "en") == "Vendor A"


def test_an_english_site_falls_back_to_any_written_language() -> None:
    c = load_config_text(CONFIG.replace("language: zh\n", "language: en\n", 1), "h.yaml")
    assert c.system("his").name == "Outpatient doctor station"
    assert c.system("his").still_works == "影像浏览"  # no en text: any


@pytest.mark.parametrize(("bad", "message"), [
    ("{zh: 急诊科, fr: Urgences}", "name: language keys are zh and en, not fr"),
    ("{zh: ''}", "name: each language needs a non-empty text"),
])
def test_bad_language_maps_are_file_line_errors(bad: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text(CONFIG.replace("{zh: 急诊科, en: Emergency}", bad), "h.yaml")
    shown = [str(p) for p in caught.value.problems]
    assert any(p.startswith("h.yaml:7: departments[0]") and message in p for p in shown), shown


def test_a_campus_item_must_be_an_id_or_id_and_name() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text(CONFIG.replace("north]", "{name: x}]", 1), "h.yaml")
    assert any("site.campuses[1].id" in str(p) for p in caught.value.problems)


def test_each_department_reads_the_outage_in_its_own_language() -> None:
    c = config()
    incident = Incident(id="inc-1", system="his", severity="critical", started_at=1.9e9,
                        opened_at=1.9e9, affected_departments=["er", "intl"])
    renderer = MessageRenderer()
    english = message_context("department_outage", incident, c, 1.9e9 + 60,
                              department_id="intl", language="en")
    assert english["system"]["name"] == "Outpatient doctor station"
    assert english["system"]["downtime_procedure"] == "Switch to paper prescriptions (form B-3)."
    assert english["department"]["name"] == "International clinic"
    assert english["incident"]["system_name"] == "Outpatient doctor station"
    assert english["vendor"]["name"] == "Vendor A"
    assert english["departments_by_campus"] == {"Main campus": ["Emergency"],
                                                "north": ["International clinic"]}
    title, body = renderer.render("department_outage", "en", english)
    assert "Outpatient doctor station" in title + body
    assert "Switch to paper prescriptions" in body and "门诊医生站" not in title + body
    chinese = message_context("department_outage", incident, c, 1.9e9 + 60,
                              department_id="er", language="zh")
    title, body = renderer.render("department_outage", "zh", chinese)
    assert "门诊医生站" in title + body and "改用纸质处方" in body


def test_maintenance_notice_reason_and_names_in_the_readers_language() -> None:
    c = config()
    window = c.maintenance[0]
    assert window.start is not None and window.end is not None
    context = maintenance_context("maintenance_notice", c, ["his"], window.start.timestamp(),
                                  window.end.timestamp(), window.reason, department_id="intl",
                                  language="en", window_key="config-0")
    assert context["maintenance"]["reason"] == "database migration"
    assert context["maintenance"]["systems"][0]["name"] == "Outpatient doctor station"
    title, body = MessageRenderer().render("maintenance_notice", "en", context)
    assert "database migration" in title + body and "数据库迁移" not in title + body


def test_the_review_names_campuses_and_departments_in_the_readers_language() -> None:
    """The printed review (/incidents/{id}/review?lang=) showed campus ids ("main") and the
    site's names whatever the reader asked for."""
    from monitor.people.review import build_review, review_markdown

    c = config()
    incident = Incident(id="inc-1", system="his", severity="critical", started_at=1.9e9,
                        opened_at=1.9e9, affected_departments=["er", "lab"])
    english = build_review(c, incident, [], [], 1.9e9 + 600, "en")
    assert [(d["name"], d["campus"], d["campus_name"]) for d in english["departments"]] == [
        ("Emergency", "main", "Main campus"), ("检验科", "north", "north")]
    assert english["systems"][0]["name"] == "Outpatient doctor station"
    assert english["vendor"]["name"] == "Vendor A"
    assert "| Emergency | Main campus | never answered | pending |" in review_markdown(english)
    site = build_review(c, incident, [], [], 1.9e9 + 600)  # the API: the site's language
    assert [d["campus_name"] for d in site["departments"]] == ["本部院区", "north"]
    assert site["systems"][0]["name"] == "门诊医生站"
