"""The scripted hospital the simulator runs: a core network everything depends on, a database
the HIS depends on, an independent LIS, departments with their own channels and one plan.

Channels have fallbacks (SPEC 6): IT to an SMS, leadership to IT (already a direct recipient
of some steps, so those get no copy), each ward channel to one ward SMS (two channels of the
Emergency department share it: one copy per step and department; the Laboratory and
Radiology hear of one maintenance window), the vendor to leadership
after 1m, and a drill notifier to a real SMS, which a drill must never use.

Timing is scaled down (10 s interval, 2 s retry) so an hour of hospital life is a few thousand
virtual seconds; the rules see exactly what they would see at 30 s / 5 s.
"""

from __future__ import annotations

from monitor.config.loader import load_config_text
from monitor.config.model import Config

INTERVAL, RETRY, TIMEOUT, CONFIRM, RECOVER = 10.0, 2.0, 2.0, 3, 2

CONFIG = f"""\
site: {{name: Sim General Hospital, timezone: Asia/Shanghai, language: en, campuses: [main]}}
defaults: {{interval: {INTERVAL:g}s, retry_interval: {RETRY:g}s, timeout: {TIMEOUT:g}s,
           confirm: {CONFIRM}, recover: {RECOVER}}}
roles:
  it_oncall: [it]
  leadership: [boss]
departments:
  - {{id: er, name: Emergency, campus: main, notify: [er-hook, er-mail]}}
  - {{id: opd, name: Outpatient, campus: main, notify: [opd-hook]}}
  - {{id: lab, name: Laboratory, campus: main, notify: [lab-hook]}}
  - {{id: rad, name: Radiology, campus: main, notify: [rad-hook]}}
systems:
  - {{id: core-net, name: Core network, departments: [er], plan: standard}}
  - id: his-db
    name: HIS database
    departments: [er]
    depends_on: [core-net]
    plan: standard
  - id: his
    name: Outpatient doctor station
    departments: [opd, er]
    depends_on: [his-db]
    plan: standard
    vendor: {{name: Vendor A, notify: [vendor-hook], response_sla: 30m}}
    downtime_procedure: Paper prescriptions (form B-3).
  - {{id: lis, name: LIS, departments: [lab], plan: standard}}
  - {{id: pacs, name: PACS, departments: [rad], depends_on: [core-net], plan: standard}}
checks:
  - {{id: net-icmp, system: core-net, type: icmp, host: 127.0.0.1}}
  - {{id: db-pg, system: his-db, type: tcp, host: 127.0.0.1, port: 1}}
  - {{id: his-web, system: his, type: http, url: "http://127.0.0.1:1/"}}
  - {{id: his-tcp, system: his, type: tcp, host: 127.0.0.1, port: 1}}
  - {{id: lis-web, system: lis, type: http, url: "http://127.0.0.1:1/"}}
  - {{id: pacs-tcp, system: pacs, type: tcp, host: 127.0.0.1, port: 1}}
notifiers:
  - {{id: it, type: console, fallback: it-sms}}
  - {{id: it-sms, type: console}}
  - {{id: boss, type: console, fallback: it, retry: {{max_age: 10m}}}}
  - {{id: er-hook, type: console, fallback: ward-sms}}
  - {{id: er-mail, type: console, fallback: ward-sms}}
  - {{id: opd-hook, type: console, fallback: ward-sms}}
  - {{id: lab-hook, type: console, fallback: ward-sms}}
  - {{id: rad-hook, type: console, fallback: ward-sms}}
  - {{id: vendor-hook, type: console, fallback: boss, fallback_after: 1m}}
  - {{id: ward-sms, type: console}}
  - {{id: drill-group, type: console, drill: true, fallback: ward-sms}}
  - {{id: drill-sms, type: console, drill: true}}
maintenance:
  - {{systems: [lis, pacs], start: "2027-01-15T16:20:00+08:00", end: "2027-01-15T16:30:00+08:00",
     reason: LIS upgrade, announce: [15m, 2m]}}
plans:
  - id: standard
    early_warning: [role:it_oncall]
    steps:
      - {{after: 0m, notify: [role:it_oncall], message: outage_it}}
      - {{after: 3m, notify: [departments], message: department_outage}}
      - {{after: 8m, notify: [role:leadership], message: leadership_report}}
      - {{after: 12m, notify: [vendor], message: vendor_escalation, unless: acknowledged}}
      - {{every: 10m, notify: [role:leadership, departments], message: progress_update}}
    on_recovery: [role:it_oncall, departments, role:leadership]
"""

IT = "it"
REAL_NOTIFIERS = {"it", "it-sms", "boss", "er-hook", "er-mail", "opd-hook", "lab-hook",
                  "rad-hook", "vendor-hook", "ward-sms"}
DRILL_NOTIFIERS = {"drill-group", "drill-sms"}
ANNOUNCED = (("lis", "pacs"), 1200.0, 1800.0)
"""The config's announced maintenance window (systems, start, end; seconds from the run's
start, which is T0 = 2027-01-15 16:00 in Shanghai): notices at 300 s and 1080 s to the
Laboratory and Radiology, "maintenance over" at 1800 s."""
DEPARTMENT_STEP_AFTER = 180.0


def hospital() -> Config:
    return load_config_text(CONFIG, "sim.yaml", {})
