"""`/metrics`: the per-check and per-system lines are the exposition prometheus_client wrote.

The daemon writes those families as text from cached label strings (no per-sample objects,
`monitor/telemetry/metrics.py`); `Reference` builds them with prometheus_client's own metric
families as the daemon did before, and the tests compare the two sample by sample, through
prometheus_client's text parser, across scrapes that change, add and remove checks (the
renderer reuses the text of families whose values did not change).
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from monitor.core.result import Result, State
from monitor.probing.state import CheckState, advance
from monitor.telemetry import metrics as metrics_module
from monitor.telemetry.metrics import CHECK_FAMILIES, Metrics, MetricsSource

DOC = {name: doc for name, doc, _ in CHECK_FAMILIES}


def source(n: int = 600) -> MetricsSource:
    src = MetricsSource()
    for i in range(n):
        cs = CheckState(f'c{i}"\\x', f"sys{i % 7}", "http" if i % 2 else "tcp")
        for k, state in enumerate([State.OK, State.CRIT, State.WARN][: 1 + i % 3]):
            numbers = {"tls_cert_expiry_seconds": 86400.0 * 30 + i} if i % 5 == 0 else {}
            advance(cs, Result(state, "m", duration=0.001234 + i * 1e-7, numbers=numbers),
                    1000.0 + k, 3, 2)
        cs.missed_runs = i % 4
        cs.flapping = i % 11 == 0
        src.states[cs.check_id] = cs
    src.systems = [f"sys{i}" for i in range(7)]
    return src


class Reference:
    """The per-check families built with prometheus_client's own objects."""

    def __init__(self, src: MetricsSource) -> None:
        self.src = src

    def collect(self):  # type: ignore[no-untyped-def]
        labels = ["check", "system", "type"]

        def gauge(name: str, names: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, DOC[name], labels=names)

        def counter(name: str, names: list[str]) -> CounterMetricFamily:
            return CounterMetricFamily(name[:-len("_total")], DOC[name], labels=names)

        fams = {
            "up": gauge("hismon_check_up", labels),
            "state": gauge("hismon_check_state", labels),
            "hard": gauge("hismon_check_hard_state", labels),
            "dur": gauge("hismon_check_duration_seconds", labels),
            "flap": gauge("hismon_check_flapping", ["check"]),
            "stale": gauge("hismon_check_stale", ["check"]),
            "runs": counter("hismon_check_runs_total", ["check", "result"]),
            "missed": counter("hismon_check_missed_runs_total", ["check"]),
            "cert": gauge("hismon_tls_cert_expiry_seconds", ["check"]),
        }
        for cs in self.src.states.values():
            key = [cs.check_id, cs.system, cs.type]
            fams["up"].add_metric(key, 1.0 if int(cs.state) <= 1 else 0.0)
            fams["state"].add_metric(key, int(cs.state))
            fams["hard"].add_metric(key, int(cs.hard_state))
            fams["dur"].add_metric(key, cs.duration)
            fams["flap"].add_metric([cs.check_id], 1.0 if cs.flapping else 0.0)
            fams["stale"].add_metric([cs.check_id], 1.0 if cs.stale else 0.0)
            for result, count in cs.runs.items():
                fams["runs"].add_metric([cs.check_id, result], count)
            fams["missed"].add_metric([cs.check_id], cs.missed_runs)
            if "tls_cert_expiry_seconds" in cs.numbers:
                fams["cert"].add_metric([cs.check_id], cs.numbers["tls_cert_expiry_seconds"])
        yield from fams.values()
        # the per-system families as SystemCollector built them before SystemLines
        system_up = GaugeMetricFamily("hismon_system_up",
                                      "1 unless the system has an open critical incident",
                                      labels=["system"])
        incidents = GaugeMetricFamily("hismon_incidents_open", "Open incidents",
                                      labels=["system", "severity"])
        open_by_system = {(i.system, i.severity) for i in self.src.open_incidents}
        for system in self.src.systems:
            system_up.add_metric([system], 0.0 if (system, "critical") in open_by_system else 1.0)
            for severity in ("warning", "critical"):
                incidents.add_metric([system, severity],
                                     1.0 if (system, severity) in open_by_system else 0.0)
        yield system_up
        yield incidents


def old_exposition(metrics: Metrics, src: MetricsSource) -> str:
    """What `/metrics` was before the text renderers: every family from prometheus_client."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Reference(src))
    return (generate_latest(registry) + generate_latest(metrics.registry)).decode()


def parsed(text: str) -> list[tuple[str, str, str, dict[tuple[Any, ...], str]]]:
    """Families in order: (name, type, help, {(sample name, labels): value as repr})."""
    out = []
    for family in text_string_to_metric_families(text):
        values = {(s.name, tuple(sorted(s.labels.items()))): repr(float(s.value))
                  for s in family.samples}
        out.append((family.name, family.type, family.documentation, values))
    return out


def samples(text: str) -> list[str]:
    return sorted(line for line in text.splitlines() if line and not line.startswith("#"))


async def test_per_check_lines_match_prometheus_client_exactly() -> None:
    src = source()
    metrics = Metrics(lambda: src)
    body = (await metrics.exposition()).decode()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Reference(src))
    per_check = {name for name, _, _ in CHECK_FAMILIES}
    expected = [line for line in samples(generate_latest(registry).decode())
                if line.split("{")[0] in per_check]
    ours = [line for line in samples(body) if line.split("{")[0] in per_check]
    assert ours == expected


async def test_the_whole_exposition_parses_and_has_every_family_once() -> None:
    src = source(50)
    body = (await Metrics(lambda: src).exposition()).decode()
    names = [f.name for f in text_string_to_metric_families(body)]
    assert len(names) == len(set(names))
    for wanted in ("hismon_check_up", "hismon_check_runs", "hismon_system_up",
                   "hismon_scheduler_lag_seconds", "hismon_build_info",
                   "hismon_tls_cert_expiry_seconds", "hismon_outbox_pending"):
        assert wanted in names, wanted


def hostile_source(n: int) -> MetricsSource:
    """Label values that need escaping or are not ASCII, values on both sides of where Go's
    formatting switches to exponents, counters past a million, infinities and NaN."""
    src = MetricsSource()
    names = ['plain', 'q"uote', "back\\slash", "new\nline", "检验科-LIS", "a,b=c{d}"]
    for i in range(n):
        cs = CheckState(f"{names[i % len(names)]}-{i}", f"sys {names[(i // 3) % len(names)]}",
                        "http" if i % 2 else "tcp")
        for k, state in enumerate([State.OK, State.CRIT, State.UNKNOWN, State.WARN][: 1 + i % 4]):
            advance(cs, Result(state, "m", duration=0.001234 + i * 1e-7), 1000.0 + k, 3, 2)
        cs.stale = i % 13 == 0
        cs.flapping = i % 11 == 0
        cs.missed_runs = i % 4
        if i % 5 == 0:
            cs.numbers["tls_cert_expiry_seconds"] = [86400.0 * 30 + i, 3e7, -5.0, 12.5][i % 4]
        src.states[cs.check_id] = cs
    src.systems = sorted({cs.system for cs in src.states.values()})
    return src


def set_odd_values(src: MetricsSource) -> None:
    states = list(src.states.values())
    states[3].duration = 1234567.0  # Go: 1.234567e+06
    states[4].duration = math.inf
    states[5].duration = math.nan
    states[6].duration = 0  # an int: 0.0 in the text
    states[7].duration = -0.5
    states[8].runs["ok"] = 2_000_000  # 2e+06
    states[9].runs["ok"] = 999_999
    states[10].missed_runs = 1_500_000
    states[-1].duration = 1e-9


def assert_same(metrics: Metrics, src: MetricsSource, body: bytes) -> None:
    new, old = body.decode(), old_exposition(metrics, src)
    assert parsed(new) == parsed(old)
    assert samples(new) == samples(old)  # byte for byte, in any order


async def test_render_parses_to_the_same_samples_as_the_old_path_across_changing_scrapes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "CHUNK", 64)  # several slices and a short one, fast
    src = hostile_source(3 * 64 + 37)
    set_odd_values(src)
    critical, warning = src.systems[0], src.systems[1]
    src.open_incidents = [SimpleNamespace(system=critical, severity="critical"),  # type: ignore[list-item]
                          SimpleNamespace(system=warning, severity="warning")]
    metrics = Metrics(lambda: src)
    metrics.scheduler_lag.observe(0.003)
    metrics.probe_duration.labels("http").observe(0.02)
    assert_same(metrics, src, await metrics.exposition())
    assert_same(metrics, src, await metrics.exposition())  # all from the cached texts

    # a scrape later: some checks probed again (new duration, counts, states)
    states = list(src.states.values())
    for i, cs in enumerate(states[::7]):
        advance(cs, Result([State.CRIT, State.OK, State.WARN][i % 3], "m",
                           duration=0.5 + i * 1e-3), 2000.0, 3, 2)
    states[1].stale = not states[1].stale
    states[2].flapping = not states[2].flapping
    states[3].missed_runs += 1
    states[-2].numbers["tls_cert_expiry_seconds"] = 99.0
    states[0].numbers.pop("tls_cert_expiry_seconds", None)
    src.open_incidents = []
    body = await metrics.exposition()
    assert_same(metrics, src, body)
    assert "hismon_check_stale{" in body.decode()

    # the scheduler gives a check that moved a new state object (no reload in between)
    moved = CheckState(states[30].check_id, "elsewhere", states[30].type)
    src.states[moved.check_id] = moved
    src.systems.append("elsewhere")
    assert_same(metrics, src, await metrics.exposition())
    assert 'system="elsewhere"' in (await metrics.exposition()).decode()
    states = list(src.states.values())

    # a reload: a check moves to another system, checks go, new ones come (in the middle)
    states[20].system = "moved"
    src.systems.append("moved")
    for cs in states[60:100]:
        del src.states[cs.check_id]
    for cs in hostile_source(30).states.values():
        cs.check_id += "-new"
        src.states[cs.check_id] = cs
    metrics.check_lines.forget(src.states)
    assert_same(metrics, src, await metrics.exposition())
    # fewer checks than slices rendered before, then none
    for cs in list(src.states.values())[50:]:
        del src.states[cs.check_id]
    assert_same(metrics, src, await metrics.exposition())
    src.states.clear()
    src.systems = []
    assert_same(metrics, src, await metrics.exposition())


async def test_the_metrics_endpoint_sends_the_pieces_as_one_body_of_its_length(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`GET /metrics` sends the rendered pieces one after another (no joined copy): the
    client gets exactly the exposition, with a Content-Length that counts every piece."""
    import httpx

    from monitor.config.loader import load_config_text
    from monitor.runtime.daemon import Daemon
    from monitor.runtime.webside import DaemonWeb
    from monitor.web.app import build_app

    monkeypatch.setattr(metrics_module, "CHUNK", 16)
    checks = "\n".join(f'  - {{id: "c{i}", system: his, type: tcp, host: 127.0.0.1, port: 1}}'
                       for i in range(40))
    config = load_config_text(
        "site: {name: t, timezone: UTC, language: en}\n"
        f'state: {{url: "sqlite:///{tmp_path}/s.db"}}\n'
        "systems:\n  - {id: his, name: HIS}\nchecks:\n" + checks + "\n", "t.yaml", {})
    daemon = Daemon(config, serve_http=False)
    await daemon.store.open()
    try:
        for i, check in enumerate(config.checks):
            cs = CheckState(check.id, check.system, check.type)
            advance(cs, Result(State.OK, "m", duration=0.001 * (i + 1)), 1000.0, 3, 2)
            daemon.states[check.id] = cs
        daemon.refresh_source()
        parts = await daemon.metrics.exposition_parts()
        assert len(parts) > 20, "several slices, several pieces"
        transport = httpx.ASGITransport(app=build_app(DaemonWeb(daemon)))
        async with httpx.AsyncClient(transport=transport, base_url="http://h") as client:
            response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"] == CONTENT_TYPE_LATEST
        assert int(response.headers["content-length"]) == len(response.content)
        body = response.content.decode()
        def steady(text: str) -> list[str]:  # descriptors open may differ between renders
            return [line for line in samples(text) if not line.startswith("hismon_open_fds")]

        assert steady(body) == steady(b"".join(parts).decode())
        names = [f.name for f in text_string_to_metric_families(body)]
        assert "hismon_check_up" in names and "hismon_build_info" in names
        assert body.count('hismon_check_up{check="c39"') == 1
    finally:
        await daemon.store.close()
