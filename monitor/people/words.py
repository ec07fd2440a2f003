"""What people read of an incident's record, in their language (SPEC 7, 13.6).

The store keeps each timeline entry's `kind`, its machine `data` and an English `text` (for
the API and the log). The incident page, the printed review and `hismon review --format md`
say the entry again from its kind and data in the reader's language, with names for ids
(a department "急诊科", not "er"; a message kind "故障（科室）", not "department_outage");
an entry whose data lacks what its sentence needs (written by an older version) keeps its
stored text. One home for these words, so the page and the review cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from monitor.config.i18n import join_names, text
from monitor.core.models import TimelineEntry

CAUSES: dict[str, dict[str, str]] = {
    "en": {"network": "network", "database": "database", "application": "application",
           "certificate": "certificate", "capacity": "capacity", "hardware": "hardware",
           "unknown": "not yet known"},
    "zh": {"network": "网络", "database": "数据库", "application": "应用程序",
           "certificate": "证书", "capacity": "容量/资源", "hardware": "硬件",
           "unknown": "尚不明确"},
}

TIMELINE_KINDS: dict[str, dict[str, str]] = {
    "en": {
        "opened": "Incident opened", "escalated": "Escalated", "check_failed": "Check failed",
        "check_recovered": "Check recovered", "check_state": "Check changed",
        "resolved": "Resolved", "caused_by": "Caused by another system",
        "caused_by_cleared": "Cause cleared", "departments_added": "Departments added",
        "window_extended": "Outage window extended",
        "hold": "Notifications", "step_sent": "Notification sent",
        "step_skipped": "Notification skipped", "acknowledged": "Acknowledged",
        "note": "Progress note",
        "department_on_paper": "Department on paper",
        "department_backfill_done": "Back-entry done",
        "vendor_escalated": "Vendor escalation delivered",
        "vendor_responded": "Vendor responding", "cause_confirmed": "Cause confirmed",
        "root_cause": "Root cause written", "actions": "Actions recorded",
    },
    "zh": {
        "opened": "事件开始", "escalated": "升级为故障", "check_failed": "检测异常",
        "check_recovered": "检测恢复", "check_state": "检测状态变化", "resolved": "已恢复",
        "caused_by": "由其他系统引起", "caused_by_cleared": "上游故障已解除",
        "departments_added": "新增受影响科室", "window_extended": "故障时段前移",
        "hold": "通知", "step_sent": "已发送通知",
        "step_skipped": "未发送通知", "acknowledged": "已确认", "note": "进展说明",
        "department_on_paper": "科室已启用纸质流程", "department_backfill_done": "科室补录完成",
        "vendor_escalated": "厂商升级通知已送达", "vendor_responded": "厂商已响应",
        "cause_confirmed": "确认原因", "root_cause": "填写根本原因",
        "actions": "记录整改措施",
    },
}
"""The names of timeline entries (the incident page's and the review's "event" column)."""

MESSAGE_KINDS: dict[str, dict[str, str]] = {
    "en": {"early_warning": "early warning", "outage_it": "outage (IT)",
           "department_outage": "outage (department)", "leadership_report": "leadership report",
           "vendor_escalation": "vendor escalation", "progress_update": "progress update",
           "recovery": "recovery", "acknowledged": "acknowledged",
           "maintenance_notice": "maintenance notice", "maintenance_over": "maintenance over",
           "backfill_reminder": "back-entry reminder", "monitor_degraded": "monitor degraded",
           "monitor_ok": "monitor ok"},
    "zh": {"early_warning": "预警", "outage_it": "故障（信息科）",
           "department_outage": "故障（科室）", "leadership_report": "领导报告",
           "vendor_escalation": "厂商升级", "progress_update": "进展通报",
           "recovery": "恢复通知", "acknowledged": "已确认接手",
           "maintenance_notice": "维护通知", "maintenance_over": "维护结束",
           "backfill_reminder": "补录提醒", "monitor_degraded": "监控自身异常",
           "monitor_ok": "监控恢复正常"},
}
"""The names of message kinds (the JSON keeps the kind)."""

HOLD_REASONS: dict[str, dict[str, str]] = {
    "en": {"acknowledged": "acknowledged", "dependency": "waiting for the system it depends on",
           "maintenance": "maintenance window", "flapping": "a check is flapping",
           "recovering": "recovering"},
    "zh": {"acknowledged": "已确认接手", "dependency": "等待上游系统判定",
           "maintenance": "维护窗口内", "flapping": "检测结果反复波动",
           "recovering": "正在恢复"},
}

WORDS: dict[str, dict[str, str]] = {
    "en": {"critical": "outage", "warning": "early warning", "checks": "checks",
           "manual": "declared by hand", "kept": "kept", "missed": "missed",
           "pending": "pending"},
    "zh": {"critical": "故障", "warning": "预警", "checks": "自动检测", "manual": "人工申报",
           "kept": "达标", "missed": "超时", "pending": "待定"},
}
"""Severity, source and vendor SLA verdicts as the reader says them."""

REVIEW_TEXT: dict[str, dict[str, str]] = {
    "en": {"title": "Post-incident review", "printed": "printed", "summary": "Summary",
           "systems": "Systems", "severity": "Severity", "window": "Outage window",
           "ongoing": "ongoing", "detection": "Detection (first failed probe → first IT "
           "message delivered)", "never": "never", "ack": "Acknowledged",
           "cause": "Cause", "suspected": "Suspected cause", "confirmed": "Confirmed cause",
           "root": "Root cause", "departments": "Departments", "department": "Department",
           "campus": "Campus", "on_paper": "On paper", "backfill": "Back-entry done",
           "no_answer": "never answered", "pending": "pending", "vendor": "Vendor",
           "escalated": "escalated", "responded": "responded", "actions": "Actions",
           "notes": "Progress notes", "messages": "Messages", "kind": "Kind",
           "recipient": "Recipient", "due": "Due", "delivered": "Delivered / why not",
           "timeline": "Timeline"},
    "zh": {"title": "故障复盘报告", "printed": "打印于", "summary": "概要", "systems": "系统",
           "severity": "级别", "window": "故障时段", "ongoing": "尚未恢复",
           "detection": "发现（首次探测失败 → 首条信息科消息送达）", "never": "从未",
           "ack": "确认接手", "cause": "原因分析", "suspected": "初步原因", "confirmed": "确认原因",
           "root": "根本原因", "departments": "科室", "department": "科室", "campus": "院区",
           "on_paper": "启用纸质流程", "backfill": "补录完成", "no_answer": "未回复",
           "pending": "未完成", "vendor": "厂商", "escalated": "升级于",
           "responded": "响应于", "actions": "整改措施", "notes": "进展记录",
           "messages": "消息", "kind": "类型", "recipient": "接收方", "due": "应发时间",
           "delivered": "送达 / 未送达原因", "timeline": "时间线"},
}
"""The review's headings and words (the printed page and `hismon review --format md`)."""

SENTENCES: dict[str, dict[str, str]] = {
    "en": {
        "opened": "{severity} opened", "declared": "{severity} declared by {by}: {title}",
        "escalated": "early warning escalated to an outage",
        "resolved": "all checks OK again", "resolved_by": "resolved by {by}{note}",
        "caused_by": "caused by {system} ({root})",
        "caused_by_cleared": "{root} resolved; this system still fails on its own",
        "departments_added": "{system} is down too: {departments} affected",
        "window_extended": "the outage window starts with {system}'s first failed probe",
        "held": "notifications held: {reason}", "released": "notifications released",
        "step_sent": "{kind} → {recipients}", "nobody": "nobody",
        "step_skipped": "{kind} not sent: {reason}",
        "acknowledged": "acknowledged by {by}{note}",
        "department_on_paper": "{department}: on paper{by}",
        "department_backfill_done": "{department}: back-entry done{by}",
        "vendor_escalated": "vendor escalation delivered ({notifier})",
        "vendor_responded": "vendor responding{by}{eta}", "eta": ", ETA {eta}",
        "cause_confirmed": "cause confirmed by {by}: {cause}",
        "root_cause": "root cause written by {by}",
        "actions": "{count} actions set by {by}",
        "note": ": {text}", "who": " ({by})", "by": ": {by}",
    },
    "zh": {
        "opened": "{severity}事件开始", "declared": "{by} 人工申报{severity}：{title}",
        "escalated": "预警升级为故障",
        "resolved": "全部检测恢复正常", "resolved_by": "{by} 关闭事件{note}",
        "caused_by": "由 {system} 故障引起（{root}）",
        "caused_by_cleared": "{root} 已恢复，本系统仍然故障",
        "departments_added": "{system} 同时故障，新增受影响科室：{departments}",
        "window_extended": "故障时段从 {system} 首次探测失败起算",
        "held": "暂缓发送通知：{reason}", "released": "恢复发送通知",
        "step_sent": "{kind} → {recipients}", "nobody": "无接收方",
        "step_skipped": "{kind}未发送：{reason}",
        "acknowledged": "{by} 已确认接手{note}",
        "department_on_paper": "{department}：已启用纸质流程{by}",
        "department_backfill_done": "{department}：补录完成{by}",
        "vendor_escalated": "厂商升级通知已送达（{notifier}）",
        "vendor_responded": "厂商已响应{by}{eta}", "eta": "，预计 {eta}",
        "cause_confirmed": "{by} 确认原因：{cause}",
        "root_cause": "{by} 填写根本原因",
        "actions": "{by} 记录整改措施 {count} 项",
        "note": "：{text}", "who": "（{by}）", "by": "：{by}",
    },
}


def name_of(config: Any, kind: str, item_id: str, language: str) -> str:
    """A department's, system's or person's name in `language`; its id when the config
    lacks it (renamed since, or an older record)."""
    look = {"department": config.department, "system": config.system,
            "person": config.person}[kind]
    try:
        item = look(item_id)
    except KeyError:
        return item_id
    return str(text(item, "name", language, config.site.language))


def entry_text(entry: TimelineEntry, config: Any, language: str) -> str:
    """The entry's sentence in `language`, else (data it lacks) the stored text."""
    language = language if language in SENTENCES else "en"
    s = SENTENCES[language]
    data = entry.data or {}
    render = _RENDER.get(entry.kind)
    if render is None:
        return entry.text
    try:
        return render(s, data, config, language) or entry.text
    except (KeyError, TypeError, ValueError):
        return entry.text


def _opt(s: dict[str, str], key: str, value: Any) -> str:
    """An optional part (": note", " (by)"): empty when there is no value."""
    return s[key].format(by=value, text=value, eta=value) if value else ""


def _opened(s: dict[str, str], data: dict[str, Any], config: Any, language: str) -> str:
    severity = WORDS[language][str(data["severity"])]
    if data.get("source") == "manual":
        if "title" not in data:
            return ""
        return s["declared"].format(severity=severity, by=data["by"], title=data["title"])
    return s["opened"].format(severity=severity[:1].upper() + severity[1:]
                              if language == "en" else severity)


def _resolved(s: dict[str, str], data: dict[str, Any], config: Any, language: str) -> str:
    if data.get("by"):
        return s["resolved_by"].format(by=data["by"], note=_opt(s, "note", data.get("note")))
    return s["resolved"]


def _hold(s: dict[str, str], data: dict[str, Any], config: Any, language: str) -> str:
    reason = data.get("reason")
    if not reason:
        return s["released"]
    return s["held"].format(reason=HOLD_REASONS[language].get(str(reason), str(reason)))


def _step_sent(s: dict[str, str], data: dict[str, Any], config: Any, language: str) -> str:
    kind = str(data["kind"])
    recipients = [str(r) for r in data["recipients"]]
    return s["step_sent"].format(kind=MESSAGE_KINDS[language].get(kind, kind),
                                 recipients=", ".join(recipients) or s["nobody"])


def _step_skipped(s: dict[str, str], data: dict[str, Any], config: Any, language: str) -> str:
    kind, reason = str(data["kind"]), str(data["reason"])
    return s["step_skipped"].format(kind=MESSAGE_KINDS[language].get(kind, kind),
                                    reason=HOLD_REASONS[language].get(reason, reason))


def _department(s: dict[str, str], data: dict[str, Any], config: Any, language: str,
                kind: str) -> str:
    return s[kind].format(department=name_of(config, "department", data["department"], language),
                          by=_opt(s, "who", data.get("by")))


def _vendor_responded(s: dict[str, str], data: dict[str, Any], config: Any,
                      language: str) -> str:
    return s["vendor_responded"].format(by=_opt(s, "by", data.get("by")),
                                        eta=_opt(s, "eta", data.get("eta")))


Render = Callable[[dict[str, str], dict[str, Any], Any, str], str]
_RENDER: dict[str, Render] = {
    "opened": _opened,
    "escalated": lambda s, d, c, lang: s["escalated"],
    "resolved": _resolved,
    "caused_by": lambda s, d, c, lang: s["caused_by"].format(
        system=name_of(c, "system", d["system"], lang), root=d["root"]),
    "caused_by_cleared": lambda s, d, c, lang: s["caused_by_cleared"].format(root=d["root"]),
    "departments_added": lambda s, d, c, lang: s["departments_added"].format(
        system=name_of(c, "system", d["system"], lang), departments=join_names(
            [name_of(c, "department", x, lang) for x in d["departments"]], lang)),
    "window_extended": lambda s, d, c, lang: s["window_extended"].format(
        system=name_of(c, "system", d["system"], lang)),
    "hold": _hold,
    "step_sent": _step_sent,
    "step_skipped": _step_skipped,
    "acknowledged": lambda s, d, c, lang: s["acknowledged"].format(
        by=d["by"], note=_opt(s, "note", d.get("note"))),
    "department_on_paper": lambda s, d, c, lang: _department(s, d, c, lang,
                                                             "department_on_paper"),
    "department_backfill_done": lambda s, d, c, lang: _department(
        s, d, c, lang, "department_backfill_done"),
    "vendor_escalated": lambda s, d, c, lang: s["vendor_escalated"].format(
        notifier=d["notifier"]),
    "vendor_responded": _vendor_responded,
    "cause_confirmed": lambda s, d, c, lang: s["cause_confirmed"].format(
        by=d["by"], cause=CAUSES[lang].get(str(d["confirmed_cause"]), "—")
        if d["confirmed_cause"] else "—"),
    "root_cause": lambda s, d, c, lang: s["root_cause"].format(by=d["by"]),
    "actions": lambda s, d, c, lang: s["actions"].format(by=d["by"], count=len(d["actions"])),
}
"""Kinds said from their data; `note` and the check entries (a person's words, a probe's
message) keep their stored text."""
