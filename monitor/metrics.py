"""Prometheus metrics (SPEC §8). Per-check series are read from live state at scrape time.

The collector reads the check states, incidents and outbox; it never drives them. Per-check
histograms are deliberately absent (about 6 KiB and 14 series each): probe durations are a
histogram per check *type*, and each check's last duration is a gauge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.result import State

if TYPE_CHECKING:
    from monitor.state import CheckState

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PROBE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class StateCollector(Collector):
    """Builds the per-check and per-system families from the daemon's state on each scrape."""

    def __init__(self, source: Callable[[], MetricsSource]) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        src = self._source()
        states = list(src.states.values())
        labels = ["check", "system", "type"]
        up = GaugeMetricFamily("hismon_check_up", "1 when the check's last result is OK or WARN",
                               labels=labels)
        state = GaugeMetricFamily("hismon_check_state",
                                  "Last result: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN", labels=labels)
        hard = GaugeMetricFamily("hismon_check_hard_state",
                                 "Confirmed (hard) state: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN",
                                 labels=labels)
        duration = GaugeMetricFamily("hismon_check_duration_seconds",
                                     "Duration of the check's last probe", labels=labels)
        flapping = GaugeMetricFamily("hismon_check_flapping", "1 while the check is flapping",
                                     labels=["check"])
        runs = CounterMetricFamily("hismon_check_runs", "Probe results by state",
                                   labels=["check", "result"])
        missed = CounterMetricFamily("hismon_check_missed_runs",
                                     "Runs skipped: previous run still going or overload",
                                     labels=["check"])
        expiry = GaugeMetricFamily("hismon_tls_cert_expiry_seconds",
                                   "Seconds until the server certificate expires",
                                   labels=["check"])
        for cs in states:
            key = [cs.check_id, cs.system, cs.type]
            value = int(cs.state)
            up.add_metric(key, 1.0 if value <= 1 else 0.0)
            state.add_metric(key, value)
            hard.add_metric(key, int(cs.hard_state))
            duration.add_metric(key, cs.duration)
            flapping.add_metric([cs.check_id], 1.0 if cs.flapping else 0.0)
            for result, count in cs.runs.items():
                runs.add_metric([cs.check_id, result], count)
            missed.add_metric([cs.check_id], cs.missed_runs)
            cert = cs.numbers.get("tls_cert_expiry_seconds")
            if cert is not None:
                expiry.add_metric([cs.check_id], cert)
        yield from (up, state, hard, duration, flapping, runs, missed, expiry)

        system_up = GaugeMetricFamily("hismon_system_up",
                                      "1 unless the system has an open critical incident",
                                      labels=["system"])
        incidents = GaugeMetricFamily("hismon_incidents_open", "Open incidents",
                                      labels=["system", "severity"])
        open_by_system = {(i.system, i.severity) for i in src.open_incidents}
        for system in src.systems:
            system_up.add_metric([system], 0.0 if (system, "critical") in open_by_system else 1.0)
            for severity in ("warning", "critical"):
                incidents.add_metric([system, severity],
                                     1.0 if (system, severity) in open_by_system else 0.0)
        yield system_up
        yield incidents
        yield GaugeMetricFamily("hismon_outbox_pending", "Messages waiting to be delivered",
                                value=src.outbox_pending)
        yield GaugeMetricFamily("hismon_outbox_undelivered",
                                "Messages given up on (failed or undeliverable) in the last 24h",
                                value=src.outbox_undelivered)
        yield GaugeMetricFamily("hismon_store_up", "1 when the state store answers",
                                value=1.0 if src.store_ok else 0.0)
        yield GaugeMetricFamily("hismon_leader",
                                "1 on the instance that runs incidents, plans and notifications",
                                value=1.0 if src.leader else 0.0)


class MetricsSource:
    """What the collector reads; the daemon keeps it current."""

    def __init__(self) -> None:
        self.states: dict[str, CheckState] = {}
        self.systems: list[str] = []
        self.open_incidents: list = []
        self.outbox_pending: int = 0
        self.outbox_undelivered: int = 0
        self.store_ok: bool = True
        self.leader: bool = False


class Metrics:
    """Owns one registry per daemon, so tests can run several daemons in one process."""

    def __init__(self, source: Callable[[], MetricsSource]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StateCollector(source))
        self.probe_duration = Histogram(
            "hismon_probe_duration_seconds", "Probe duration per check type", ["type"],
            buckets=PROBE_BUCKETS, registry=self.registry)
        self.scheduler_lag = Histogram(
            "hismon_scheduler_lag_seconds", "Start delay of a probe behind its schedule",
            buckets=LAG_BUCKETS, registry=self.registry)
        self.notifications = Counter(
            "hismon_notifications", "Notification attempts by result",
            ["notifier", "kind", "result"], registry=self.registry)
        self.config_reload_ok = Gauge(
            "hismon_config_last_reload_successful", "1 if the last config (re)load succeeded",
            registry=self.registry)
        self.config_reload_time = Gauge(
            "hismon_config_last_reload_success_timestamp_seconds",
            "Time of the last successful config load", registry=self.registry)
        self.build_info = Gauge("hismon_build_info", "hismon version", ["version"],
                                registry=self.registry)
        self.build_info.labels(__version__).set(1)
        self.config_reload_ok.set(1)

    def init_notifier_series(self, notifiers: Iterable[str]) -> None:
        """Create failure series at 0, so the first failure shows in `increase()`/`rate()`."""
        from monitor.config import MESSAGE_KINDS

        for notifier in notifiers:
            for kind in MESSAGE_KINDS:
                for result in ("failed", "undeliverable"):
                    self.notifications.labels(notifier, kind, result)

    def observe_probe(self, check_type: str, duration: float) -> None:
        self.probe_duration.labels(check_type).observe(duration)


def is_up(state: State) -> bool:
    return state in (State.OK, State.WARN)
