"""What the pages put first (SPEC §7): order, procedures, banner, back-fill notices. Pure."""

from __future__ import annotations

from monitor.config.loader import load_config_text
from monitor.config.model import Config
from monitor.core.models import Incident
from monitor.incidents.maintenance import Window
from monitor.web import whattodo
from monitor.web.pages import STRINGS

CONFIG = """
site: {name: H, language: en}
departments:
  - {id: er, name: {zh: 急诊科, en: Emergency}}
  - {id: lab, name: Laboratory}
systems:
  - {id: net, name: {zh: 核心网络, en: Core network}}
  - {id: his, name: HIS, departments: [er], depends_on: [net],
     downtime_procedure: {zh: 纸质处方, en: Paper prescriptions}}
  - {id: lis, name: LIS, departments: [lab], depends_on: [net], downtime_procedure: Paper forms}
  - {id: pacs, name: PACS, departments: [er]}
"""


def config() -> Config:
    return load_config_text(CONFIG, "h.yaml")


def incident(n: int, system: str, started: float, **kw: object) -> Incident:
    return Incident(id=f"inc-{n}", system=system, severity="critical", started_at=started,
                    opened_at=started, **kw)  # type: ignore[arg-type]


def test_root_first_then_by_start_with_the_dependents_procedures_and_departments() -> None:
    c = config()
    his = incident(1, "his", 100.0, caused_by="inc-3", caused_by_system="net",
                   affected_departments=["er"])
    pacs = incident(2, "pacs", 50.0, affected_departments=["er"])
    net = incident(3, "net", 110.0, affected_departments=["er", "lab"])
    lis = incident(4, "lis", 105.0, caused_by="inc-3", caused_by_system="net",
                   affected_departments=["lab"])
    cards = whattodo.incident_cards([his, pacs, net, lis], c, "en")
    assert [card.incident.id for card in cards] == ["inc-2", "inc-3", "inc-1", "inc-4"]
    root = cards[1]
    assert root.root and [d.id for d in root.dependents] == ["inc-1", "inc-4"]
    assert [(p.system, p.text) for p in root.procedures] == [("his", "Paper prescriptions"),
                                                            ("lis", "Paper forms")]
    assert root.departments == [("er", "Emergency"), ("lab", "Laboratory")]
    assert cards[0].procedures == []  # PACS has none written
    zh = whattodo.incident_cards([his, net, lis], c, "zh")
    assert zh[0].procedures[0].text == "纸质处方" and zh[0].departments[0][1] == "急诊科"
    lines = whattodo.banner_lines(cards, c, "en", STRINGS["en"])
    assert lines == ["PACS down: 1 system affected", "Core network down: 3 systems affected"]
    assert whattodo.banner_lines(zh, c, "zh", STRINGS["zh"]) == ["核心网络故障：影响 3 个系统"]


def test_one_backfill_notice_per_system_and_none_for_an_announced_window() -> None:
    first = incident(1, "his", 100.0, status="resolved", resolved_at=200.0)
    second = incident(2, "his", 300.0, status="resolved", resolved_at=400.0)
    lis = incident(3, "lis", 300.0, status="resolved", resolved_at=350.0,
                   affected_departments=["er"])
    planned = incident(4, "pacs", 1000.0, status="resolved", resolved_at=1100.0)
    unannounced = incident(5, "lis", 2000.0, status="resolved", resolved_at=2100.0,
                           affected_departments=["er"])
    windows = [Window("config-0", ("pacs",), 900.0, 1200.0, "upgrade", (86400.0,)),
               Window("sil-1", ("lis",), 1900.0, 2200.0, "repair")]
    found = whattodo.backfill_notices([first, second, lis, planned, unannounced], windows,
                                      {"his", "pacs"}, "er")
    assert [i.id for i in found] == ["inc-5", "inc-2"]  # latest per system, newest first
    drill = incident(6, "his", 500.0, status="resolved", resolved_at=600.0, drill=True)
    assert [i.id for i in whattodo.backfill_notices([drill], [], {"his"}, "er")] == []
