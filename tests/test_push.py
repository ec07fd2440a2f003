"""Pushed results against the real daemon (`hismon run` subprocess): passive checks and the
Alertmanager receiver, end to end with a real Prometheus and a real Alertmanager (Debian's
`prometheus` and `prometheus-alertmanager`).

A tiny exporter in the test serves `hospital_replication_lag_seconds`; Prometheus scrapes it
every second and evaluates the rule from docs/checks.md; Alertmanager (configured from the
docs' example, with 1 s group timings) posts to hismon; hismon opens the incident and the
ward's webhook gets the department notice. The lag drops, the rule resolves, the ward gets
the recovery notice. Bounded: each wait has its own deadline.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web

from tests.conftest import LocalServer, Receiver, free_port

REPO = Path(__file__).resolve().parent.parent
TOKEN = "api-token-for-pushes"
CHECK_TOKEN = "pacs-vendor-token"
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
CHECK = "his-db-replication-prom"


def config(port: int, receiver: Receiver, api_tokens: list[str] | None = None) -> str:
    tokens = yaml.safe_dump(api_tokens if api_tokens is not None else [TOKEN],
                            default_flow_style=True).strip()
    return f"""
site: {{name: Push Hospital, timezone: Asia/Shanghai, language: en, campuses: [main]}}
server: {{listen: "127.0.0.1:{port}", api_tokens: {tokens}}}
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 1s, timeout: 500ms, retry_interval: 250ms, confirm: 3, recover: 2}}
roles: {{it_oncall: [it-hook]}}
departments:
  - {{id: ward, name: Ward 5, campus: main, notify: [ward-hook]}}
systems:
  - {{id: his-db, name: HIS database, departments: [ward], plan: p,
     downtime_procedure: "Use the paper order forms."}}
  - {{id: pacs, name: PACS, departments: [ward], plan: p}}
checks:
  - {{id: {CHECK}, system: his-db, type: passive}}
  - {{id: pacs-vendor, system: pacs, type: passive, token: {CHECK_TOKEN},
     expect_every: 2s, grace: 1s}}
notifiers:
  - {{id: it-hook, type: webhook, url: "{receiver.url('it')}"}}
  - {{id: ward-hook, type: webhook, url: "{receiver.url('ward')}"}}
plans:
  - id: p
    steps:
      - {{after: 0s, notify: [role:it_oncall], message: outage_it}}
      - {{after: 0s, notify: [departments], message: department_outage}}
    on_recovery: [departments]
"""


async def post(client: httpx.AsyncClient, url: str, body: Any, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await client.post(url, json=body, headers=headers)


async def check_state(client: httpx.AsyncClient, base: str, check_id: str) -> dict[str, Any]:
    checks = (await client.get(f"{base}/api/v1/checks")).json()["checks"]
    return next(c for c in checks if c["id"] == check_id)


async def until(predicate: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def metric(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{re.escape(name)}{{{re.escape(labels)}}} (\S+)$", text, re.M)
    assert match, f"{name}{{{labels}}} not in /metrics"
    return float(match.group(1))


async def test_pushed_results_need_a_token_and_go_through_the_state_machine(
        daemon_factory: Any, receiver: Receiver) -> None:
    port = free_port()
    daemon = await daemon_factory(config(port, receiver), port)
    url = f"{daemon.url}/api/v1/checks/pacs-vendor/result"
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        crit = {"state": "CRIT", "message": "array: 2 disks failed", "numbers": {"failed": 2}}
        assert (await post(client, url, crit, None)).status_code == 401
        # the check has its own token: an API token is not enough
        assert (await post(client, url, crit, TOKEN)).status_code == 401
        assert (await check_state(client, daemon.url, "pacs-vendor"))["state"] == "OK"
        bad = await post(client, url, {"state": "DOWN"}, CHECK_TOKEN)
        assert bad.status_code == 422 and "state" in bad.json()["error"]
        missing = await post(client, f"{daemon.url}/api/v1/checks/nope/result", crit, TOKEN)
        assert missing.status_code == 404
        answer = await post(client, url, crit, CHECK_TOKEN)
        assert answer.status_code == 200, answer.text
        assert answer.json()["hard_state"] == "CRIT" and answer.json()["hard"] is True
        shown = await check_state(client, daemon.url, "pacs-vendor")
        assert (shown["state"], shown["message"]) == ("CRIT", "array: 2 disks failed")
        assert shown["numbers"] == {"failed": 2}
        await receiver.wait_for(lambda: "department_outage" in receiver.kinds("ward"), 20)
        # no result within expect_every + grace: "no result since ...", stale (SPEC 9):
        # the hard state stays, nothing new opens
        stale = await until(lambda: _stale(client, daemon.url), 10, "the stale verdict")
        assert re.match(r"no result since \d\d:\d\d:\d\d \(\d+s ago; expected every 2s \+ "
                        r"1s grace\)", stale["message"]), stale["message"]
        assert stale["hard_state"] == "CRIT"
        # a check without its own token takes an API token, never none
        am = f"{daemon.url}/api/v1/checks/{CHECK}/result"
        assert (await post(client, am, {"state": "OK"}, None)).status_code == 401
        assert (await post(client, am, {"state": "OK"}, TOKEN)).status_code == 200
        assert (await post(client, f"{daemon.url}/api/v1/alertmanager",
                           {"version": "4", "alerts": []}, None)).status_code == 401
        unknown = await post(client, f"{daemon.url}/api/v1/alertmanager", {
            "version": "4", "status": "firing", "alerts": [
                {"status": "firing", "labels": {"alertname": "Other", "hismon_check": "x"},
                 "annotations": {}, "fingerprint": "f1"}]}, TOKEN)
        assert unknown.json() == {"applied": 0, "unknown_check": 1}
        text = (await client.get(f"{daemon.url}/metrics")).text
        assert metric(text, "hismon_alertmanager_alerts_total", 'result="unknown_check"') == 1
        assert metric(text, "hismon_alertmanager_alerts_total", 'result="applied"') == 0


async def _stale(client: httpx.AsyncClient, base: str) -> dict[str, Any] | None:
    state = await check_state(client, base, "pacs-vendor")
    return state if state["message"].startswith("no result since") else None


async def test_without_api_tokens_a_push_is_never_accepted(
        daemon_factory: Any, receiver: Receiver) -> None:
    port = free_port()
    daemon = await daemon_factory(config(port, receiver, api_tokens=[]), port)
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        for token in (None, "", "anything"):
            answer = await post(client, f"{daemon.url}/api/v1/checks/{CHECK}/result",
                                {"state": "CRIT"}, token)
            assert answer.status_code == 401
        assert (await check_state(client, daemon.url, CHECK))["state"] == "OK"


# ---- a real Prometheus rule through a real Alertmanager ------------------------------


class Exporter(LocalServer):
    """Serves `hospital_replication_lag_seconds` with a value the test sets."""

    def __init__(self) -> None:
        super().__init__()
        self.lag = 5.0

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=f"hospital_replication_lag_seconds {self.lag}\n")

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/metrics", self._metrics)


def doc_block(first_line: str) -> Any:
    """The ```yml example of docs/checks.md that starts with `first_line`."""
    text = (REPO / "docs" / "checks.md").read_text(encoding="utf-8")
    for block in re.findall(r"```yml\n(.*?)```", text, flags=re.S):
        if block.startswith(first_line):
            return yaml.safe_load(block)
    raise AssertionError(f"no ```yml block starting with {first_line!r} in docs/checks.md")


class Service:
    def __init__(self, name: str, argv: list[str], workdir: Path, ready_url: str) -> None:
        self.name, self.argv, self.workdir, self.ready_url = name, argv, workdir, ready_url
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> Service:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.workdir)
        async with httpx.AsyncClient(trust_env=False, timeout=1) as client:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.logs()
                try:
                    if (await client.get(self.ready_url)).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} not ready: {self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
async def exporter() -> AsyncIterator[Exporter]:
    served = await Exporter().start()
    yield served
    await served.stop()


@pytest.mark.skipif(PROMETHEUS is None or ALERTMANAGER is None,
                    reason="apt-get install prometheus prometheus-alertmanager")
async def test_a_prometheus_rule_opens_the_incident_and_its_resolution_recovers(
        daemon_factory: Any, receiver: Receiver, exporter: Exporter, tmp_path: Path) -> None:
    assert PROMETHEUS is not None and ALERTMANAGER is not None
    port = free_port()
    daemon = await daemon_factory(config(port, receiver), port, name="hismon")

    am_dir = tmp_path / "alertmanager"
    am_dir.mkdir()
    (am_dir / "hismon-token").write_text(TOKEN)
    am_config = doc_block("# alertmanager.yml")
    am_config["route"].update(group_wait="1s", group_interval="1s")  # a test's patience
    (hook,) = am_config["receivers"][0]["webhook_configs"]
    hook["url"] = f"{daemon.url}/api/v1/alertmanager"
    hook["http_config"]["authorization"]["credentials_file"] = str(am_dir / "hismon-token")
    (am_dir / "alertmanager.yml").write_text(yaml.safe_dump(am_config))
    am_port = free_port()
    alertmanager = Service("alertmanager", [
        ALERTMANAGER, f"--config.file={am_dir / 'alertmanager.yml'}",
        f"--storage.path={am_dir / 'data'}", f"--web.listen-address=127.0.0.1:{am_port}",
        "--cluster.listen-address=", "--log.level=warn"], am_dir,
        f"http://127.0.0.1:{am_port}/-/ready")

    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    (rule,) = doc_block("# a Prometheus rule")
    assert rule["labels"]["hismon_check"] == CHECK
    rule.update(expr="hospital_replication_lag_seconds > 300", **{"for": "0s"})
    (prom_dir / "rules.yml").write_text(yaml.safe_dump(
        {"groups": [{"name": "hospital", "interval": "1s", "rules": [rule]}]}))
    (prom_dir / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                   "evaluation_interval": "1s"},
        "rule_files": [str(prom_dir / "rules.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{"job_name": "hisdb", "static_configs": [
            {"targets": [f"127.0.0.1:{exporter.port}"]}]}],
    }))
    prom_port = free_port()
    prometheus = Service("prometheus", [
        PROMETHEUS, f"--config.file={prom_dir / 'prometheus.yml'}",
        f"--storage.tsdb.path={prom_dir / 'data'}",
        f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"], prom_dir,
        f"http://127.0.0.1:{prom_port}/-/ready")
    try:
        await alertmanager.start()
        await prometheus.start()
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            exporter.lag = 420.0
            firing = await until(lambda: _check_in(client, daemon.url, "CRIT"), 60,
                                 "the firing rule to reach hismon")
            assert firing["message"] == "HIS standby replication lag 420s", firing
            await receiver.wait_for(lambda: "department_outage" in receiver.kinds("ward"), 30)
            notice = next(m for m in receiver.messages if m["kind"] == "department_outage")
            assert "paper order forms" in notice["text"]
            incidents = (await client.get(f"{daemon.url}/api/v1/incidents?status=open")).json()
            (incident,) = incidents["incidents"]
            assert incident["system"] == "his-db" and incident["severity"] == "critical"

            exporter.lag = 3.0
            recovered = await until(lambda: _check_in(client, daemon.url, "OK"), 60,
                                    "the resolved alert to reach hismon")
            assert recovered["message"] == (
                "no alert firing in Alertmanager (resolved: HIS standby replication lag 420s)")
            await receiver.wait_for(lambda: "recovery" in receiver.kinds("ward"), 30)
            text = (await client.get(f"{daemon.url}/metrics")).text
            assert metric(text, "hismon_alertmanager_alerts_total", 'result="applied"') >= 2
            assert (await client.get(f"{daemon.url}/api/v1/incidents?status=open")).json()[
                "incidents"] == []
    finally:
        prometheus.stop()
        alertmanager.stop()


async def _check_in(client: httpx.AsyncClient, base: str, state: str) -> dict[str, Any] | None:
    shown = await check_state(client, base, CHECK)
    return shown if shown["hard_state"] == state and shown["hard"] else None


async def test_a_follower_keeps_the_pushed_state_so_a_take_over_finds_it() -> None:
    """Only the leader takes pushes; the standby reads passive states from the shared store,
    so the instance that takes over does not find the pushed CRIT gone."""
    from monitor.config.model import Config
    from monitor.core.result import Result, State
    from monitor.runtime.daemon import Daemon
    from tests.test_store_contract import drop_schema, new_schema_name, require_pg, with_params

    schema = new_schema_name()
    url = with_params(require_pg(), schema=schema)
    config = Config.model_validate({
        "state": {"url": url}, "systems": [{"id": "his-db", "name": "HIS database"}],
        "checks": [{"id": CHECK, "system": "his-db", "type": "passive"}]})
    leader = Daemon(config, serve_http=False)
    await leader.start()
    standby = Daemon(config, serve_http=False)
    await standby.start()
    try:
        assert leader.leading and not standby.leading
        await leader.push_result(CHECK, Result(State.CRIT, "replication stopped"))

        async def adopted() -> bool:
            return standby.states[CHECK].hard_state is State.CRIT

        await until(adopted, 10, "the standby to read the pushed state")
        assert standby.states[CHECK].message == "replication stopped"
    finally:
        await standby.stop()
        await leader.stop()
        await drop_schema(schema)
