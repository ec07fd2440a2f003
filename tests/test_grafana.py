"""Deployment files work for real: dashboard, alert rules, systemd unit, sd_notify.

A real Prometheus (Debian package `prometheus`) scrapes a real `hismon run` subprocess that
probes local targets (one failing, one TLS port) and notifies a webhook that refuses every
message. Every dashboard panel's PromQL must return data from that Prometheus, and the alert
rules must load, evaluate without errors and fire for what is actually wrong.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitor.runtime import sdnotify
from tests.conftest import REPO, DaemonProcess, HttpTarget, Receiver, free_port

DASHBOARD = REPO / "deploy" / "grafana" / "hismon.json"
RULES = REPO / "deploy" / "prometheus" / "hismon-rules.yml"
UNIT = REPO / "deploy" / "systemd" / "hismon.service"
PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1m",
                     "$system": ".*"}
needs_prometheus = pytest.mark.skipif(
    not PROMETHEUS.exists() or not PROMTOOL.exists(),
    reason="Prometheus is not installed: apt-get install prometheus")


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables replaced) for every dashboard target."""
    found = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"unknown variable in {panel['title']}: {expr}"
            found.append((panel["title"], expr))
    return found


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


# ---- files on their own ------------------------------------------------------------------

def test_dashboard_has_every_panel_the_operators_need() -> None:
    """Availability, latency, incidents, notifications, outbox, lag, missed runs, TLS."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    text = " ".join(expr for _, expr in panel_queries())
    for metric in ("hismon_system_up", "hismon_check_duration_seconds",
                   "hismon_incidents_open", "hismon_notifications_total",
                   "hismon_outbox_pending", "hismon_scheduler_lag_seconds_bucket",
                   "hismon_check_missed_runs_total", "hismon_tls_cert_expiry_seconds"):
        assert metric in text, metric
    assert "histogram_quantile(0.99" in text
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["targets"], panel["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "system"}


def test_alert_rules_cover_hismon_itself_and_the_hospital() -> None:
    """The rules a hospital needs when the monitor, or what it watches, is in trouble."""
    by_name = {rule["alert"]: rule for rule in rules()}
    assert by_name["HismonDown"]["expr"] == 'up{job="hismon"} == 0'
    assert by_name["HismonAbsent"]["expr"].startswith("absent(")
    assert "hismon_check_runs_total" in by_name["HismonNotProbing"]["expr"]
    assert "0.99" in by_name["HismonSchedulerLagHigh"]["expr"]
    assert "hismon_check_missed_runs_total" in by_name["HismonMissedRuns"]["expr"]
    assert "hismon_notifications_total" in by_name["HismonNotificationsFailing"]["expr"]
    assert "hismon_outbox_pending" in by_name["HismonOutboxStuck"]["expr"]
    assert "hismon_config_last_reload_successful" in by_name["HismonConfigReloadFailed"]["expr"]
    assert "hismon_system_up" in by_name["HospitalSystemDown"]["expr"]
    for rule in rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


@needs_prometheus
def test_promtool_accepts_the_rules() -> None:
    """`promtool check rules` is what an operator runs before reloading Prometheus."""
    result = subprocess.run([str(PROMTOOL), "check", "rules", str(RULES)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def unit_directives() -> dict[str, list[str]]:
    """systemd allows a key more than once (ExecReload=), so no configparser."""
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_systemd_unit_runs_hardened_as_an_unprivileged_user() -> None:
    """Non-root, read-only system, only its state directory writable, only CAP_NET_RAW."""
    unit = unit_directives()
    assert unit["User"] == ["hismon"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["ReadWritePaths"] == ["/var/lib/hismon"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["PrivateTmp"] == ["yes"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["AmbientCapabilities"] == ["CAP_NET_RAW"]
    assert unit["CapabilityBoundingSet"] == ["CAP_NET_RAW"]
    assert unit["ExecReload"][-1] == "/bin/kill -HUP $MAINPID"
    assert unit["ExecStart"][0].endswith("hismon run -c /etc/hismon/config.yaml")
    assert unit["Type"] == ["notify"], "the daemon sends READY=1 (monitor/runtime/sdnotify.py)"


# ---- sd_notify -----------------------------------------------------------------------------

def test_sd_notify_sends_ready_to_the_socket_systemd_names(tmp_path: Path) -> None:
    """READY=1 arrives as one datagram on $NOTIFY_SOCKET; without it nothing is sent."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(2)
        assert sdnotify.ready("3 checks", env={"NOTIFY_SOCKET": str(path)})
        message = server.recv(4096).decode()
        assert "READY=1" in message.splitlines() and "STATUS=3 checks" in message
        assert sdnotify.stopping(env={"NOTIFY_SOCKET": str(path)})
        assert server.recv(4096) == b"STOPPING=1"
        assert sdnotify.reloading(env={"NOTIFY_SOCKET": str(path)})
        assert server.recv(4096).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
    assert sdnotify.ready(env={}) is False
    assert sdnotify.ready(env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}) is False


def test_sd_notify_reaches_an_abstract_socket() -> None:
    """systemd may hand out `@name`: the abstract namespace, no file on disk."""
    name = f"hismon-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(2)
        assert sdnotify.status("probing", env={"NOTIFY_SOCKET": "@" + name})
        assert server.recv(4096) == b"STATUS=probing"


@pytest.mark.slow
async def test_the_daemon_tells_systemd_it_is_ready(
    http_target: HttpTarget, tmp_path: Path
) -> None:
    """With Type=notify systemd waits for this datagram before `start` returns."""
    path = tmp_path / "notify.sock"
    port = free_port()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.setblocking(False)
    daemon = DaemonProcess(daemon_config(http_target, None, None, port), tmp_path, port)
    daemon.env["NOTIFY_SOCKET"] = str(path)
    try:
        await daemon.start()
        loop = asyncio.get_running_loop()
        message = await asyncio.wait_for(loop.sock_recv(server, 4096), 10)
        assert b"READY=1" in message.split(b"\n")
    finally:
        daemon.kill()
        server.close()


# ---- a real Prometheus scraping a real hismon ----------------------------------------------

def daemon_config(target: HttpTarget, receiver: Receiver | None, tls: TlsServer | None,
                  port: int) -> str:
    tls_check = (f"""
  - {{id: his-tls, system: his, type: tls, host: 127.0.0.1, port: {tls.port},
     ca_file: "{tls.ca_file}"}}""" if tls else "")
    hooks = (f"""
  - {{id: it-hook, type: webhook, url: "{receiver.url('it')}",
     retry: {{initial: 100ms, max_delay: 200ms, max_age: 1m}}}}""" if receiver else "")
    return f"""
site: {{name: Grafana Hospital, timezone: Asia/Shanghai, language: en, campuses: [main]}}
server: {{listen: "127.0.0.1:{port}", api_tokens: [t]}}
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 1s, timeout: 500ms, retry_interval: 250ms, confirm: 2, recover: 2}}
roles: {{it_oncall: [{'it-hook' if receiver else 'console'}]}}
departments:
  - {{id: er, name: Emergency, campus: main, notify: [console]}}
systems:
  - {{id: his, name: HIS, departments: [er], plan: p}}
  - {{id: lis, name: LIS, departments: [er], plan: p}}
checks:
  - {{id: his-web, system: his, type: http, url: "{target.url}"}}{tls_check}
  - {{id: lis-web, system: lis, type: http, url: "{target.url}",
     expect: {{status: [204]}}}}
notifiers:
  - {{id: console, type: console}}{hooks}
plans:
  - id: p
    steps:
      - {{after: 0s, notify: [role:it_oncall], message: outage_it}}
      - {{after: 0s, notify: [departments], message: department_outage}}
"""


class TlsServer:
    """A TLS port with a certificate from a throwaway CA, for the tls check's expiry gauge."""

    def __init__(self, tmp: Path) -> None:
        import trustme

        ca = trustme.CA()
        self.ca_file = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self.context)
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def start(self) -> TlsServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0,
                                                  ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


class Prometheus:
    """`prometheus` on loopback with a 1 s scrape interval and our rules loaded."""

    def __init__(self, tmp: Path, hismon_port: int) -> None:
        self.port = free_port()
        self.dir = tmp / "prometheus"
        self.dir.mkdir()
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "hismon", "static_configs": [
                {"targets": [f"127.0.0.1:{hismon_port}"]}]}],
        }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (self.dir / "prometheus.log").open("wb")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Prometheus:
        self.proc = subprocess.Popen(
            [str(PROMETHEUS), f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=self.log, cwd=self.dir)
        async with httpx.AsyncClient(trust_env=False, timeout=2) as client:
            for _ in range(300):  # 30 s
                if self.proc.poll() is not None:
                    break
                try:
                    if (await client.get(f"{self.url}/-/ready")).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"prometheus did not start: {self.logs()}")

    async def query(self, expr: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            answer = await client.get(f"{self.url}/api/v1/query", params={"query": expr})
        body = answer.json()
        assert body["status"] == "success", f"{expr}: {body}"
        return list(body["data"]["result"])

    async def rule_groups(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            return list((await client.get(f"{self.url}/api/v1/rules")).json()["data"]["groups"])

    def logs(self) -> str:
        return (self.dir / "prometheus.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[TlsServer]:
    server = await TlsServer(tmp_path).start()
    yield server
    await server.stop()


async def wait_until_all_return_data(
    prometheus: Prometheus, queries: list[tuple[str, str]], seconds: float
) -> dict[str, list[dict[str, Any]]]:
    """Poll until every query has a result; the empty ones are reported if time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        results = {expr: await prometheus.query(expr) for _, expr in queries}
        empty = [(title, expr) for title, expr in queries if not results[expr]]
        if not empty:
            return results
        if time.monotonic() > deadline:
            raise AssertionError(f"panels without data after {seconds:.0f}s: {empty}")
        await asyncio.sleep(1)


@pytest.mark.slow
@needs_prometheus
async def test_dashboard_queries_and_alert_rules_work_against_real_prometheus(
    http_target: HttpTarget, receiver: Receiver, tls_server: TlsServer, tmp_path: Path
) -> None:
    """Every panel shows data; rules evaluate cleanly and fire for the real problems."""
    # IT's webhook rejects every message (a revoked robot key answers 4xx): given up at once,
    # so the failure shows without waiting for `max_age` (at least 1m since the config bounds).
    receiver.fail_with = 400
    port = free_port()
    daemon = DaemonProcess(daemon_config(http_target, receiver, tls_server, port), tmp_path,
                           port)
    prometheus = Prometheus(tmp_path, port)
    try:
        await daemon.start()
        await prometheus.start()
        queries = panel_queries()
        results = await wait_until_all_return_data(prometheus, queries, seconds=60)

        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            exposition = (await client.get(f"{daemon.url}/metrics")).text
        used = set(re.findall(r"\bhismon_[a-z_]+", DASHBOARD.read_text() + RULES.read_text()))
        for name in sorted(used):
            assert re.search(rf"^{name}[{{ ]", exposition, re.M), f"{name} is not exported"

        down = results['count(hismon_system_up{system=~".*"} == 0) or vector(0)']
        assert float(down[0]["value"][1]) == 1.0, "exactly one system (lis) is down"
        expiry = results["min by (check) (hismon_tls_cert_expiry_seconds)"]
        assert expiry[0]["metric"]["check"] == "his-tls"
        assert float(expiry[0]["value"][1]) > 30 * 86400, "trustme certificates last long"

        # Rules: loaded, evaluated without errors, and firing for what is wrong.
        for _ in range(30):
            evaluated = [r for g in await prometheus.rule_groups() for r in g["rules"]]
            if evaluated and all(r["health"] != "unknown" for r in evaluated):
                break
            await asyncio.sleep(1)
        assert len(evaluated) == len(rules())
        assert all(r["health"] == "ok" for r in evaluated), [
            (r["name"], r.get("lastError")) for r in evaluated if r["health"] != "ok"]

        exprs = {rule["alert"]: rule["expr"] for rule in rules()}
        assert [s["metric"]["system"] for s in
                await prometheus.query(exprs["HospitalSystemDown"])] == ["lis"]
        failing = await prometheus.query(exprs["HismonNotificationsFailing"])
        assert [s["metric"]["notifier"] for s in failing] == ["it-hook"]
        for quiet in ("HismonDown", "HismonAbsent", "HismonNotProbing",
                      "HismonConfigReloadFailed", "HismonStoreDown",
                      "TLSCertificateExpiresSoon"):
            assert await prometheus.query(exprs[quiet]) == [], quiet

        # hismon dies: the rule that pages about the monitor itself sees it.
        daemon.kill()
        for _ in range(20):
            if await prometheus.query(exprs["HismonDown"]):
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError("HismonDown never matched a dead hismon")
    finally:
        daemon.kill()
        prometheus.stop()
