"""Message templates: every kind in zh and en, rendered from a realistic outage context.

`realistic_context()` mirrors what the daemon builds (monitor/delivery/context.py and
docs/messages.md): the outpatient doctor station of a two-campus hospital is down since 08:05
because the HIS database fails. docs/messages.md shows these same renderings.
"""

from __future__ import annotations

import copy
from typing import Any

import jinja2
import pytest

from monitor.delivery.messages import MessageRenderer, template_environment

KINDS = [
    "early_warning", "outage_it", "department_outage", "leadership_report",
    "vendor_escalation", "progress_update", "recovery", "acknowledged",
    "maintenance_notice", "maintenance_over",
]
LANGUAGES = ["zh", "en"]
BASE_URL = "http://hismon.hospital.internal:9464"

NAMES: dict[str, dict[str, Any]] = {
    "zh": {
        "site": "某市第一人民医院",
        "systems": {
            "his-outpatient": "门诊医生站",
            "his-registration": "挂号收费系统",
            "pharmacy-outpatient": "门诊药房系统",
            "lis": "检验系统（LIS）",
        },
        "departments": [
            ("emergency", "急诊科", "本部"),
            ("outpatient", "门诊部", "本部"),
            ("fever-clinic", "发热门诊", "北院"),
        ],
        "more_departments": [
            ("internal-medicine", "心内科门诊", "本部"), ("surgery", "普外科门诊", "本部"),
            ("pediatrics", "儿科门诊", "本部"), ("gynecology", "妇产科门诊", "本部"),
            ("ophthalmology", "眼科门诊", "本部"), ("stomatology", "口腔科", "北院"),
            ("dermatology", "皮肤科门诊", "北院"), ("ent", "耳鼻喉科门诊", "北院"),
            ("rehab", "康复医学科", "北院"),
        ],
        "check_names": {
            "his-db-primary": "HIS 数据库主库",
            "his-outpatient-web": "门诊医生站 Web",
            "his-registration-api": "挂号收费接口",
        },
        "procedure": (
            "1. 门诊处方改用纸质处方（B-3 表），医生手写并签名；\n"
            "2. 检查、检验申请使用纸质申请单，注明患者姓名和门诊号；\n"
            "3. 收费处手工开具收据，药房凭纸质处方发药；\n"
            "4. 所有纸质单据按时间顺序保存，系统恢复后补录。"
        ),
        "long_procedure": (
            "1. 门诊处方改用纸质处方（B-3 表），医生手写并签名，注明患者姓名、门诊号、诊断；\n"
            "2. 检查、检验申请使用纸质申请单（C-1 表），标本由护士送检验科窗口登记；\n"
            "3. 影像检查申请使用纸质申请单，放射科凭申请单登记检查；\n"
            "4. 收费处手工开具收据，药房凭纸质处方发药并登记发药清单；\n"
            "5. 急诊抢救患者先救治后补手续，医嘱口头下达须复述确认并在 6 小时内补记；\n"
            "6. 所有纸质单据按时间顺序保存，系统恢复后由各科室指定专人补录。"
        ),
        "still_works": "检验系统（LIS）、影像系统（PACS）可正常使用；院内电话正常。",
        "reg_procedure": "挂号改为手工挂号，发放纸质号条并按顺序叫号；收费处手工开具收据。",
        "reg_still_works": "自助机可查询检验报告；住院系统不受影响。",
        "vendor": "某某软件",
        "vendor_contact": "张工 138-0000-0000（7×24 支持热线 400-800-0000）",
        "oncall": "李明",
        "ack_note": "正在切换至备用数据库",
        "note": "主库存储故障，正在切换至备库，预计 09:30 前恢复门诊医生站。",
        "maintenance_reason": "数据库服务器迁移",
    },
    "en": {
        "site": "Example General Hospital",
        "systems": {
            "his-outpatient": "Outpatient Doctor Station",
            "his-registration": "Registration & Billing",
            "pharmacy-outpatient": "Outpatient Pharmacy",
            "lis": "Laboratory System (LIS)",
        },
        "departments": [
            ("emergency", "Emergency", "Main campus"),
            ("outpatient", "Outpatient Clinic", "Main campus"),
            ("fever-clinic", "Fever Clinic", "North campus"),
        ],
        "more_departments": [
            ("internal-medicine", "Cardiology Clinic", "Main campus"),
            ("surgery", "General Surgery Clinic", "Main campus"),
            ("pediatrics", "Pediatrics Clinic", "Main campus"),
            ("gynecology", "Obstetrics & Gynecology Clinic", "Main campus"),
            ("ophthalmology", "Ophthalmology Clinic", "Main campus"),
            ("stomatology", "Dental Clinic", "North campus"),
            ("dermatology", "Dermatology Clinic", "North campus"),
            ("ent", "ENT Clinic", "North campus"),
            ("rehab", "Rehabilitation", "North campus"),
        ],
        "check_names": {
            "his-db-primary": "HIS database primary",
            "his-outpatient-web": "Outpatient Doctor Station web",
            "his-registration-api": "Registration API",
        },
        "procedure": (
            "1. Write prescriptions on paper (form B-3), signed by the doctor.\n"
            "2. Use paper request slips for lab and imaging, with patient name and number.\n"
            "3. Cashier issues manual receipts; pharmacy dispenses against paper prescriptions.\n"
            "4. Keep every slip in time order for back-fill after recovery."
        ),
        "long_procedure": (
            "1. Write prescriptions on paper (form B-3), signed, with patient name, "
            "outpatient number and diagnosis.\n"
            "2. Use paper lab requests (form C-1); nurses bring samples to the lab desk.\n"
            "3. Imaging requests on paper slips; radiology registers them by hand.\n"
            "4. Cashier issues manual receipts; pharmacy dispenses against paper "
            "prescriptions and keeps a dispensing list.\n"
            "5. Emergency: treat first, paperwork later; verbal orders are read back and "
            "written down within 6 hours.\n"
            "6. Keep every slip in time order; each department names a person to back-fill."
        ),
        "still_works": "Lab (LIS) and imaging (PACS) work normally; hospital phones work.",
        "reg_procedure": "Register patients by hand and hand out paper queue numbers, "
                         "called in order; the cashier issues manual receipts.",
        "reg_still_works": "Kiosks print lab reports; the inpatient system is not affected.",
        "vendor": "Acme Medical Software",
        "vendor_contact": "Zhang Wei +86 138-0000-0000 (24/7 hotline 400-800-0000)",
        "oncall": "Li Ming",
        "ack_note": "switching to the standby database",
        "note": "Primary database storage failed; switching to the standby, "
                "Outpatient Doctor Station expected back before 09:30.",
        "maintenance_reason": "database server migration",
    },
}

FAILING = [
    ("his-db-primary", "postgres", "CRIT", "connection refused 10.1.2.3:5432"),
    ("his-outpatient-web", "http", "CRIT", "HTTP 503 in 120ms"),
    ("his-registration-api", "http", "CRIT", "HTTP 500 in 85ms"),
]
EVIDENCE = [
    "his-db-primary (postgres): connection refused 10.1.2.3:5432 while core-switch (icmp) answers",
    "his-outpatient-web (http): HTTP 503 in 120ms while his-app-01:8080 (tcp) answers",
]


def realistic_context(
    kind: str = "outage_it",
    language: str = "zh",
    *,
    drill: bool = False,
    department: str | None = "default",
    acknowledged: bool | None = None,
    resolved: bool | None = None,
    severity: str | None = None,
    cause: str = "database",
    sla_status: str | None = "auto",
    note: bool = True,
    note_missing: bool = False,
    many_departments: bool = False,
    long_procedure: bool = False,
) -> dict[str, Any]:
    """What the daemon hands a template for `kind`, with realistic hospital data."""
    n = NAMES[language]
    if department == "default":
        department = "emergency" if kind in {
            "department_outage", "recovery", "maintenance_notice", "maintenance_over"} else None
    if resolved is None:
        resolved = kind == "recovery"
    if acknowledged is None:  # vendor_escalation is `unless: acknowledged`
        acknowledged = kind not in {"early_warning", "outage_it", "vendor_escalation"}
    if sla_status == "auto":
        sla_status = "kept" if acknowledged else "missed" if kind == "vendor_escalation" \
            else "pending"
    if severity is None:
        severity = "warning" if kind == "early_warning" else "critical"
    depts = list(n["departments"]) + (list(n["more_departments"]) if many_departments else [])
    by_campus: dict[str, list[str]] = {}
    for _, name, campus in depts:
        by_campus.setdefault(campus, []).append(name)
    affected = ["his-outpatient", "his-registration", "pharmacy-outpatient"]
    if many_departments:
        affected.append("lis")
    duration = {"early_warning": "7m 12s", "outage_it": "4m 30s", "department_outage": "9m 05s",
                "acknowledged": "4m 30s", "leadership_report": "25m 40s",
                "vendor_escalation": "31m 02s"}.get(kind, "1h 05m")
    checks, evidence = FAILING, EVIDENCE
    if severity == "warning":
        checks = [("his-db-primary", "postgres", "WARN",
                   "query took 2.4s (warn 800ms, crit 3s); 182 of 200 connections used")]
        evidence = ["his-db-primary (postgres): query took 2.4s while core-switch (icmp) "
                    "answers in 1ms"]
    dept = next((d for d in depts if d[0] == department), None)
    procedure = n["long_procedure"] if long_procedure else n["procedure"]
    system = {"id": "his-outpatient", "name": n["systems"]["his-outpatient"],
              "criticality": "critical", "downtime_procedure": procedure,
              "still_works": n["still_works"]}
    incident = {
        "id": "inc-42",
        "system": "his-outpatient",
        "system_name": system["name"],
        "severity": severity,
        "status": "resolved" if resolved else "open",
        "started_at": "2026-11-20T08:05:12+08:00",
        "started_at_local": "2026-11-20 08:05",
        "resolved_at": "2026-11-20T09:10:40+08:00" if resolved else None,
        "resolved_at_local": "2026-11-20 09:10" if resolved else None,
        "duration": duration,
        "acknowledged_by": n["oncall"] if acknowledged else None,
        "acknowledged_at": "2026-11-20T08:09:30+08:00" if acknowledged else None,
        "acknowledged_at_local": "2026-11-20 08:09" if acknowledged else None,
        "ack_note": n["ack_note"] if acknowledged else None,
        "suspected_cause": cause,
        "cause_evidence": list(evidence),
        "caused_by": None,
        "caused_by_system": None,
        "affected_departments": [d[0] for d in depts],
        "failing_checks": [
            {"id": cid, "name": n["check_names"][cid], "type": ctype, "state": state,
             "message": message}
            for cid, ctype, state, message in checks
        ],
        "held": None,
        "drill": drill,
    }
    context: dict[str, Any] = {
        "kind": kind,
        "drill": drill,
        "language": language,
        "site": {"name": n["site"], "timezone": "Asia/Shanghai"},
        "status_url": f"{BASE_URL}/",
        "incident_url": f"{BASE_URL}/incidents/inc-42",
        "department_url": f"{BASE_URL}/departments/{department}" if dept else None,
        "department": {"id": dept[0], "name": dept[1], "campus": dept[2]} if dept else None,
        "incident": incident,
        "system": system,
        "affected_systems": [{"id": s, "name": n["systems"][s]} for s in affected],
        "departments": [{"id": i, "name": name, "campus": c} for i, name, c in depts],
        "departments_by_campus": by_campus,
        "cause": {"code": cause, "evidence": list(evidence)},
        "vendor": {"name": n["vendor"], "contact": n["vendor_contact"], "response_sla": "30m",
                   "sla_status": sla_status},
        "note": {"by": n["oncall"], "text": n["note"], "at_local": "2026-11-20 09:00"}
        if note else None,
        "note_missing": note_missing,
        "maintenance": None,
    }
    if kind in {"maintenance_notice", "maintenance_over"}:
        context["incident"] = None
        context["vendor"] = None
        context["note"] = None
        context["cause"] = None
        context["affected_systems"] = [
            {"id": s, "name": n["systems"][s]} for s in ("his-outpatient", "his-registration")]
        context["maintenance"] = {
            "reason": n["maintenance_reason"],
            "start_local": "2026-12-01 22:00",
            "end_local": "2026-12-02 02:00",
            "duration": "4h 00m",
            "systems": [
                {"id": "his-outpatient", "name": system["name"],
                 "downtime_procedure": procedure, "still_works": n["still_works"]},
                {"id": "his-registration", "name": n["systems"]["his-registration"],
                 "downtime_procedure": n["reg_procedure"], "still_works": n["reg_still_works"]},
            ],
        }
    return context


ENV = template_environment()
RENDERER = MessageRenderer()


def render(kind: str, language: str, context: dict[str, Any]) -> tuple[str, str]:
    """Render through MessageRenderer, after making sure the built-in template itself renders
    (the renderer would otherwise hide a template bug behind its plain fallback)."""
    ENV.get_template(f"{language}/{kind}.j2").render(**context)
    return RENDERER.render(kind, language, context)


def check_ids() -> list[str]:
    return [cid for cid, *_ in FAILING]


# ---- every kind, both languages ------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_clean(kind: str, language: str) -> None:
    title, text = render(kind, language, realistic_context(kind, language))
    assert title and "\n" not in title
    assert len(title) <= 120
    assert text
    for junk in ("None", "Undefined", "{{", "{%", "}}", "\n\n\n", "[]", "（）", "()"):
        assert junk not in title + "\n" + text, junk
    if language == "zh":
        assert "DRILL" not in title and "演练" not in text
    else:
        assert "DRILL" not in title + text
    assert all(line == line.rstrip() for line in text.splitlines())


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_drill_is_marked_in_title_and_text(kind: str, language: str) -> None:
    title, text = render(kind, language, realistic_context(kind, language, drill=True))
    assert "DRILL" in title
    marker = "演练" if language == "zh" else "DRILL"
    assert marker in text
    assert text.count("DRILL") + text.count("演练") >= 1
    if language == "zh":
        assert "演练" in title


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_near_empty_context_does_not_raise(kind: str, language: str) -> None:
    template = ENV.get_template(f"{language}/{kind}.j2")
    sparse: list[dict[str, Any]] = [
        {},
        {"drill": True},
        {key: None for key in realistic_context(kind, language)},
        {"incident": {"failing_checks": None, "affected_departments": None, "duration": None},
         "departments_by_campus": {None: None, "-": ["急诊科"]}, "departments": [None, {}],
         "affected_systems": [None, {}], "cause": {"code": None, "evidence": None},
         "vendor": {}, "note": {}, "note_missing": True, "department": {},
         "maintenance": {"systems": [None, {}]}},
    ]
    for context in sparse:
        rendered = template.render(**context).strip()
        assert rendered
        title, text = RENDERER.render(kind, language, context)
        assert title and "\n" not in title
        assert "None" not in title + text


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_field_missing_one_at_a_time(kind: str, language: str) -> None:
    full = realistic_context(kind, language)
    for key in list(full):
        context = copy.deepcopy(full)
        context[key] = None
        render(kind, language, context)
        del context[key]
        render(kind, language, context)
    for key in list(full["incident"] or {}):
        context = copy.deepcopy(full)
        context["incident"][key] = None
        title, text = render(kind, language, context)
        assert "None" not in title + text, key


# ---- department_outage -------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_department_outage_speaks_to_clinical_staff(language: str) -> None:
    context = realistic_context("department_outage", language)
    n = NAMES[language]
    title, text = render("department_outage", language, context)
    assert n["systems"]["his-outpatient"] in title
    assert n["procedure"] in text  # verbatim, lines intact
    assert "08:05" in text
    assert n["still_works"] in text
    assert n["departments"][0][1] in text  # addressed to its own department
    assert context["department_url"] in text and context["status_url"] in text
    assert n["systems"]["his-registration"] in text  # what else is down
    for cid in check_ids():
        assert cid not in text
    for jargon in ("connection refused", "postgres", "HTTP 503", "inc-42", "hismon ", "CRIT"):
        assert jargon not in text
    if language == "zh":
        assert "请立即启用应急预案" in text
        assert "纸质记录" in text and "补录" in text
        assert "信息科" in text and n["oncall"] in text
    else:
        assert "DOWNTIME PROCEDURE" in text
        assert "paper" in text and "back-fill" in text.lower()
        assert "IT" in text and n["oncall"] in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_department_outage_without_procedure_still_says_go_to_paper(language: str) -> None:
    context = realistic_context("department_outage", language, acknowledged=False)
    context["system"]["downtime_procedure"] = None
    _, text = render("department_outage", language, context)
    assert ("纸质" in text) if language == "zh" else ("paper" in text)
    assert NAMES[language]["oncall"] not in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_longest_department_outage_fits_a_wecom_text_message(language: str) -> None:
    context = realistic_context("department_outage", language, drill=True,
                                many_departments=True, long_procedure=True)
    title, text = render("department_outage", language, context)
    assert NAMES[language]["long_procedure"] in text
    assert len(f"{title}\n\n{text}".encode()) <= 2048


# ---- IT-facing -----------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_outage_it_has_what_on_call_needs(language: str) -> None:
    context = realistic_context("outage_it", language, acknowledged=False)
    title, text = render("outage_it", language, context)
    assert NAMES[language]["systems"]["his-outpatient"] in title
    for cid, ctype, _, message in FAILING:
        assert cid in text and message in text and ctype in text
    for evidence in EVIDENCE:
        assert evidence in text
    assert ("数据库" in text) if language == "zh" else ("database" in text)
    assert ("严重" in title + text) if language == "zh" else ("CRITICAL" in title + text)
    assert "08:05" in text
    for _, name, campus in NAMES[language]["departments"]:
        assert name in text and campus in text
    assert "hismon ack inc-42 --by" in text
    assert NAMES[language]["vendor"] in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_outage_it_when_already_acknowledged(language: str) -> None:
    context = realistic_context("outage_it", language, acknowledged=True)
    _, text = render("outage_it", language, context)
    assert NAMES[language]["oncall"] in text
    assert "hismon ack" not in text


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(("code", "zh", "en"), [
    ("network", "网络", "network"), ("database", "数据库", "database"),
    ("application", "应用", "application"), ("certificate", "证书", "certificate"),
    ("capacity", "容量", "capacity"), ("unknown", "待查", "unknown"),
])
def test_cause_codes_are_translated(language: str, code: str, zh: str, en: str) -> None:
    for kind in ("outage_it", "leadership_report", "early_warning"):
        _, text = render(kind, language, realistic_context(kind, language, cause=code))
        assert (zh if language == "zh" else en) in text, kind


@pytest.mark.parametrize("language", LANGUAGES)
def test_early_warning_for_it(language: str) -> None:
    context = realistic_context("early_warning", language, acknowledged=False)
    title, text = render("early_warning", language, context)
    assert ("预警" in title) if language == "zh" else ("Early warning" in title)
    assert "his-db-primary" in text and "query took 2.4s" in text
    assert "hismon ack inc-42 --by" in text
    assert "08:05" in text
    assert ("数据库" in text) if language == "zh" else ("database" in text)


@pytest.mark.parametrize("language", LANGUAGES)
def test_early_warning_for_a_department_says_prepare(language: str) -> None:
    context = realistic_context("early_warning", language, department="fever-clinic")
    title, text = render("early_warning", language, context)
    assert NAMES[language]["procedure"] in text
    assert "his-db-primary" not in text and "hismon ack" not in text
    assert context["department_url"] in text
    if language == "zh":
        assert "准备" in title + text and "发热门诊" in text
    else:
        assert "prepare" in (title + text).lower() and "Fever Clinic" in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_acknowledged_notice(language: str) -> None:
    n = NAMES[language]
    title, text = render("acknowledged", language, realistic_context("acknowledged", language))
    assert n["oncall"] in title + text
    assert "08:09" in text and n["ack_note"] in text
    assert "inc-42" in text


# ---- leadership, vendor, progress ----------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_leadership_report_is_complete(language: str) -> None:
    n = NAMES[language]
    context = realistic_context("leadership_report", language, many_departments=True,
                                sla_status="kept")
    title, text = render("leadership_report", language, context)
    assert n["systems"]["his-outpatient"] in title
    for _, name, campus in n["departments"] + n["more_departments"]:
        assert name in text and campus in text
    for name in n["systems"].values():
        assert name in text
    for evidence in EVIDENCE:
        assert evidence in text
    for _, _, _, message in FAILING:
        assert message in text
    assert "2026-11-20 08:05" in text
    assert n["oncall"] in text and n["vendor"] in text
    if language == "zh":
        assert "25分钟40秒" in text and "数据库" in text and "达标" in text
    else:
        assert "25m 40s" in text and "database" in text and "kept" in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_leadership_report_not_acknowledged_and_sla_missed(language: str) -> None:
    context = realistic_context("leadership_report", language, acknowledged=False,
                                sla_status="missed")
    _, text = render("leadership_report", language, context)
    if language == "zh":
        assert "尚未确认" in text and "超时" in text
    else:
        assert "not yet acknowledged" in text.lower() and "missed" in text.lower()


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("status", ["pending", "kept", "missed", None])
def test_leadership_report_states_the_sla(language: str, status: str | None) -> None:
    context = realistic_context("leadership_report", language, sla_status=status)
    _, text = render("leadership_report", language, context)
    words = {"zh": {"pending": "等待", "kept": "达标", "missed": "超时", None: "30分钟"},
             "en": {"pending": "pending", "kept": "kept", "missed": "missed", None: "30m"}}
    assert words[language][status] in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_vendor_escalation(language: str) -> None:
    n = NAMES[language]
    context = realistic_context("vendor_escalation", language, sla_status="pending")
    title, text = render("vendor_escalation", language, context)
    assert n["systems"]["his-outpatient"] in title + text
    assert n["site"] in title + text
    assert "2026-11-20 08:05" in text
    for cid, _, _, message in FAILING:
        assert cid in text and message in text
    assert ("30分钟" in text) if language == "zh" else ("30m" in text)
    assert "inc-42" in text and n["vendor"] in text
    assert ("信息科值班" in text) if language == "zh" else ("IT on-call" in text)
    context = realistic_context("vendor_escalation", language, acknowledged=True)
    _, text = render("vendor_escalation", language, context)
    assert n["oncall"] in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_progress_update_carries_the_note(language: str) -> None:
    n = NAMES[language]
    context = realistic_context("progress_update", language)
    _, text = render("progress_update", language, context)
    assert n["note"] in text and n["oncall"] in text and "09:00" in text
    assert ("1小时5分钟" in text) if language == "zh" else ("1h 05m" in text)
    assert "hismon update" not in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_progress_update_asks_for_a_note_when_none_came(language: str) -> None:
    context = realistic_context("progress_update", language, note=False, note_missing=True)
    _, text = render("progress_update", language, context)
    assert 'hismon update inc-42 --text' in text
    assert ("没有收到新的" in text) if language == "zh" else ("No new progress note" in text)


@pytest.mark.parametrize("language", LANGUAGES)
def test_progress_update_to_a_department_stays_clinical(language: str) -> None:
    context = realistic_context("progress_update", language, department="outpatient",
                                note=False, note_missing=True)
    _, text = render("progress_update", language, context)
    assert "hismon update" not in text and "his-db-primary" not in text
    assert ("应急预案" in text) if language == "zh" else ("downtime procedure" in text)


# ---- recovery and maintenance --------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("department", ["default", None])
def test_recovery_gives_the_back_fill_window(language: str, department: str | None) -> None:
    context = realistic_context("recovery", language, department=department)
    title, text = render("recovery", language, context)
    assert "2026-11-20 08:05" in text and "09:10" in text
    if language == "zh":
        assert "恢复" in title and "补录" in text and "纸质" in text and "1小时5分钟" in text
    else:
        assert "restored" in title.lower() and "back-fill" in text.lower()
        assert "paper" in text and "1h 05m" in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_maintenance_notice(language: str) -> None:
    n = NAMES[language]
    context = realistic_context("maintenance_notice", language)
    title, text = render("maintenance_notice", language, context)
    assert n["systems"]["his-outpatient"] in title + text
    assert n["systems"]["his-registration"] in title + text
    assert "2026-12-01 22:00" in text and "2026-12-02 02:00" in text
    assert n["procedure"] in text and n["reg_procedure"] in text
    assert n["maintenance_reason"] in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_maintenance_over(language: str) -> None:
    n = NAMES[language]
    title, text = render("maintenance_over", language,
                         realistic_context("maintenance_over", language))
    assert n["systems"]["his-outpatient"] in title + text
    assert n["systems"]["his-registration"] in title + text
    assert "2026-12-01 22:00" in text and "2026-12-02 02:00" in text
    assert ("补录" in text) if language == "zh" else ("back-fill" in text.lower())


# ---- overrides ---------------------------------------------------------------------------


def test_config_override_wins() -> None:
    renderer = MessageRenderer({"en": {"outage_it": "Custom {{ system.name }}\nbody"}})
    title, text = renderer.render("outage_it", "en", realistic_context("outage_it", "en"))
    assert title == "Custom Outpatient Doctor Station"
    assert text == "body"
    # other kinds and languages keep the built-in templates
    title, _ = renderer.render("outage_it", "zh", realistic_context("outage_it", "zh"))
    assert title.startswith("【严重故障】")


def test_override_can_use_the_shared_macros() -> None:
    override = ('{% import "zh/_macros.j2" as m %}{{ m.sysname(system, incident) }} 故障\n'
                '原因：{{ m.cause(cause.code) }}，已持续 {{ m.dur(incident.duration) }}')
    renderer = MessageRenderer({"zh": {"outage_it": override}})
    title, text = renderer.render("outage_it", "zh", realistic_context("outage_it", "zh"))
    assert title == "门诊医生站 故障"
    assert text == "原因：数据库问题，已持续 4分钟30秒"


def test_templates_use_chainable_undefined() -> None:
    assert template_environment().undefined is jinja2.ChainableUndefined


# ---- issue 10 item 6: the combined department notice names what each department uses ----

COMBINED = """
site: {name: H, timezone: Asia/Shanghai, language: en}
roles: {it_oncall: [it]}
departments:
  - {id: opd, name: Outpatient, notify: [opd-hook]}
  - {id: lab, name: Laboratory, notify: [lab-hook], language: zh}
systems:
  - {id: core, name: Core network, plan: p}
  - id: his
    name: Doctor station
    departments: [opd]
    depends_on: [core]
    plan: p
    downtime_procedure: Paper prescriptions (form B-3).
  - id: lis
    name: LIS
    departments: [lab, opd]
    depends_on: [core]
    plan: p
    downtime_procedure: 手写条码和纸质申请单。
checks:
  - {id: core-ping, system: core, type: icmp, host: 127.0.0.1}
  - {id: his-web, system: his, type: http, url: "http://127.0.0.1:1/"}
  - {id: lis-web, system: lis, type: http, url: "http://127.0.0.1:1/"}
notifiers:
  - {id: it, type: console}
  - {id: opd-hook, type: console}
  - {id: lab-hook, type: console}
plans:
  - id: p
    steps:
      - {after: 0m, notify: [role:it_oncall], message: outage_it}
      - {after: 5m, notify: [departments], message: department_outage}
"""


@pytest.mark.parametrize("settle_first", [True])
async def test_the_combined_department_notice_names_each_departments_systems(
    tmp_path: Any, settle_first: bool
) -> None:
    """The core network (no downtime_procedure, as the docs recommend) takes down the doctor
    station and the LIS: Outpatient reads both, each with its own procedure; Laboratory
    reads the LIS in Chinese; no title names the core network."""
    from monitor.config.loader import load_config_text
    from monitor.core.result import Result, State
    from monitor.incidents.engine import Engine
    from monitor.probing.state import CheckState, advance
    from monitor.store.sqlite import SqliteStore

    config = load_config_text(COMBINED, "c.yaml", {})
    store = SqliteStore(f"sqlite:///{tmp_path}/s.db")
    await store.open()
    now = [1_800_000_000.0]
    states = {c.id: CheckState(c.id, c.system, c.type, probed=True) for c in config.checks}
    engine = Engine(config, store, states, lambda: now[0])
    for check_id in states:
        advance(states[check_id], Result(State.CRIT, f"{check_id} down", cause="network"),
                now[0], 1, 2)
        engine.check_changed(states[check_id])
    for step in (0, 10, 301, 302):
        now[0] = 1_800_000_000.0 + step
        await engine.tick()
    notices = {m.notifier: m.payload for m in await store.list_messages()
               if m.kind == "department_outage"}
    await store.close()
    assert set(notices) == {"opd-hook", "lab-hook"}, notices
    opd, lab = notices["opd-hook"], notices["lab-hook"]
    assert "Doctor station" in opd["title"] and "LIS" in opd["title"]
    assert "Core network" not in opd["title"] and "Core network" not in lab["title"]
    assert "Paper prescriptions (form B-3)." in opd["text"]
    assert "手写条码和纸质申请单。" in opd["text"]
    assert "LIS" in lab["title"] and "Doctor station" not in lab["title"]
    assert "手写条码和纸质申请单。" in lab["text"] and "Paper prescriptions" not in lab["text"]
    generic = "Continue on paper with your department's manual procedure"
    assert generic not in opd["text"]


def test_department_systems_in_the_context(language: str = "en") -> None:
    """`department_systems` with one system is the old single-system notice."""
    context = realistic_context("department_outage", language)
    context["department_systems"] = [dict(context["system"])]
    title, _text = render("department_outage", language, context)
    assert context["system"]["name"] in title
