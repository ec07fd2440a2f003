"""`/metrics` per-check lines: the same exposition prometheus_client would write."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from monitor.core.result import Result, State
from monitor.probing.state import CheckState, advance
from monitor.telemetry.metrics import CHECK_FAMILIES, Metrics, MetricsSource


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
        fams = {
            "up": GaugeMetricFamily("hismon_check_up", "", labels=labels),
            "state": GaugeMetricFamily("hismon_check_state", "", labels=labels),
            "hard": GaugeMetricFamily("hismon_check_hard_state", "", labels=labels),
            "dur": GaugeMetricFamily("hismon_check_duration_seconds", "", labels=labels),
            "flap": GaugeMetricFamily("hismon_check_flapping", "", labels=["check"]),
            "stale": GaugeMetricFamily("hismon_check_stale", "", labels=["check"]),
            "runs": CounterMetricFamily("hismon_check_runs", "", labels=["check", "result"]),
            "missed": CounterMetricFamily("hismon_check_missed_runs", "", labels=["check"]),
            "cert": GaugeMetricFamily("hismon_tls_cert_expiry_seconds", "", labels=["check"]),
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


def samples(text: str) -> list[str]:
    return sorted(line for line in text.splitlines() if line and not line.startswith("#"))


async def test_per_check_lines_match_prometheus_client_exactly() -> None:
    src = source()
    metrics = Metrics(lambda: src)
    body = (await metrics.exposition()).decode()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Reference(src))
    expected = samples(generate_latest(registry).decode())
    ours = [line for line in samples(body)
            if line.split("{")[0] in {name for name, _, _ in CHECK_FAMILIES}]
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
