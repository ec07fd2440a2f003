"""Prometheus check against a real Prometheus (Debian package `prometheus`).

The test starts `prometheus` on a free loopback port with a temporary config that scrapes
a tiny /metrics server of the test every second, waits (at most 60 s) until the first
samples are queryable, and asks it real PromQL. Skips only if the binary is absent.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from monitor.core.result import State
from tests.probe_helpers import closed_port, make_check, probe

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"

METRICS = b"""\
# TYPE hospital_disk_used_percent gauge
hospital_disk_used_percent{host="pacs-01",mount="/data"} 93.5
hospital_disk_used_percent{host="pacs-01",mount="/logs"} 40
hospital_disk_used_percent{host="his-db",mount="/u01"} 85
# TYPE hospital_disk_free_bytes gauge
hospital_disk_free_bytes{host="pacs-01",mount="/data"} 5e+09
# TYPE hospital_queue_length gauge
hospital_queue_length 3
"""

pytestmark = pytest.mark.skipif(
    not Path(PROMETHEUS).exists(),
    reason="prometheus binary absent: apt-get install -y prometheus",
)


class _Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(METRICS)

    def log_message(self, *args: object) -> None:
        pass


def _free_port() -> int:
    return closed_port()


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("prometheus")
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    port = _free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: hospital\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter.server_port}']}}]\n"
    )
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError((tmp / "prometheus.log").read_text()[-2000:])
            try:
                answer = httpx.get(f"{url}/api/v1/query", timeout=2, params={
                    "query": "count_over_time(hospital_disk_free_bytes[1m])"}).json()
                if answer["data"]["result"] and float(answer["data"]["result"][0]["value"][1]) >= 2:
                    break  # two samples: enough for predict_linear
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("Prometheus had no data after 60 s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        exporter.shutdown()
        log.close()


def prom(url: str, query: str, **extra: object) -> dict[str, object]:
    return {"type": "prometheus", "url": url, "query": query, "timeout": "5s", **extra}


async def test_a_value_within_limits_is_ok(prometheus_url: str) -> None:
    result = await probe(prom(prometheus_url, "hospital_queue_length",
                              value={"warn": 10, "crit": 20}))
    assert result.state is State.OK, result.message
    assert result.message.startswith("query returned 3 ")
    assert result.numbers["value"] == 3
    assert result.numbers["latency_seconds"] > 0


async def test_the_worst_series_is_reported_with_its_labels(prometheus_url: str) -> None:
    result = await probe(prom(prometheus_url, "hospital_disk_used_percent",
                              value={"warn": 80, "crit": 90}))
    assert result.state is State.CRIT
    assert result.message.startswith(
        'query returned 93.5 above CRIT limit 90 for {host="pacs-01", instance="127.0.0.1:')
    assert result.message.endswith('job="hospital", mount="/data"} (2 of 3 series over limits)')
    assert result.numbers["series"] == 3
    assert result.cause == "capacity"


async def test_a_warning_level_value(prometheus_url: str) -> None:
    result = await probe(prom(prometheus_url, 'hospital_disk_used_percent{mount="/u01"}',
                              value={"warn": 80, "crit": 90}))
    assert result.state is State.WARN
    assert result.message.startswith("query returned 85 above WARN limit 80")


async def test_predict_linear_of_free_disk_below_a_limit(prometheus_url: str) -> None:
    """The disk-full forecast: free bytes predicted in 4h below 10 GB is CRIT."""
    query = "predict_linear(hospital_disk_free_bytes[1m], 4*3600)"
    result = await probe(prom(prometheus_url, query,
                              value={"warn": 20e9, "crit": 10e9, "below": True}))
    assert result.state is State.CRIT
    assert "below CRIT limit 1e+10" in result.message
    assert result.numbers["value"] == pytest.approx(5e9)


async def test_a_scalar_answer(prometheus_url: str) -> None:
    result = await probe(prom(prometheus_url, "scalar(hospital_queue_length) * 2",
                              value={"crit": 5}))
    assert result.state is State.CRIT
    assert result.message == "query returned 6 above CRIT limit 5"


async def test_no_data_is_unknown_unless_configured(prometheus_url: str) -> None:
    query = "hospital_queue_length > 100"
    unknown = await probe(prom(prometheus_url, query, value={"crit": 100}))
    assert unknown.state is State.UNKNOWN
    assert unknown.message.startswith("query returned no data")
    ok = await probe(prom(prometheus_url, query, empty="ok"))
    assert ok.state is State.OK


async def test_a_promql_error_is_unknown_with_the_reason(prometheus_url: str) -> None:
    result = await probe(prom(prometheus_url, "sum(hospital_queue_length"))
    assert result.state is State.UNKNOWN
    assert result.message.startswith("PromQL bad_data (HTTP 400): ")
    assert "parse error" in result.message


async def test_a_range_vector_is_refused(prometheus_url: str) -> None:
    result = await probe(prom(prometheus_url, "hospital_queue_length[1m]"))
    assert result.state is State.UNKNOWN
    assert "matrix" in result.message


async def test_prometheus_down_is_unknown_not_the_target() -> None:
    port = closed_port()
    result = await probe(prom(f"http://127.0.0.1:{port}", "up"))
    assert result.state is State.UNKNOWN
    assert result.message == f"Prometheus at 127.0.0.1:{port} unreachable: connection refused"


async def test_a_url_with_user_and_password_never_shows_the_password() -> None:
    """`http://user:password@host` printed the password in the message (issue 10)."""
    port = closed_port()
    check = make_check(prom(f"http://grafana:s3cret-Prom@127.0.0.1:{port}", "up"))
    result = await probe(check)
    assert result.message == f"Prometheus at 127.0.0.1:{port} unreachable: connection refused"
    shown = check.public_config()["url"]
    assert shown == f"http://grafana:***@127.0.0.1:{port}" and "s3cret" not in str(
        check.public_config())
    assert "s3cret-Prom" not in check.scrub("GET http://grafana:s3cret-Prom@x failed: s3cret-Prom")
