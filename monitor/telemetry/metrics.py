"""Prometheus metrics (SPEC §8). Per-check series are read from live state at scrape time.

The collector reads the check states, incidents and outbox; it never drives them. Per-check
histograms are deliberately absent (about 6 KiB and 14 series each): probe durations are a
histogram per check *type*, and each check's last duration is a gauge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from monitor import __version__
from monitor.core.exhaustion import fd_usage
from monitor.core.result import State

if TYPE_CHECKING:
    from monitor.core.models import Incident
    from monitor.probing.state import CheckState

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PROBE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class SystemCollector(Collector):
    """Per-system and daemon-wide families, built from live state on each scrape."""

    def __init__(self, source: Callable[[], MetricsSource]) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        src = self._source()
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
        yield GaugeMetricFamily("hismon_leader_term",
                                "Term of this instance's current or last leadership (fencing)",
                                value=float(src.leader_term))
        yield GaugeMetricFamily("hismon_cluster_members", "Live cluster members (1 alone)",
                                value=float(src.cluster_members))
        yield GaugeMetricFamily("hismon_checks_owned", "Checks this instance probes",
                                value=float(src.checks_owned))
        own = CounterMetricFamily(
            "hismon_probe_resource_errors", "Probe results that judged nothing because hismon "
            "itself was out of a resource (fd: file descriptors, memory: socket buffers)",
            labels=["resource"])
        for resource_name in ("fd", "memory"):
            own.add_metric([resource_name], float(src.exhaustion.get(resource_name, 0)))
        yield own
        usage = fd_usage()
        if usage.open is not None:
            yield GaugeMetricFamily("hismon_open_fds", "File descriptors hismon has open",
                                    value=float(usage.open))
        if usage.limit is not None:
            yield GaugeMetricFamily("hismon_max_fds", "hismon's descriptor limit "
                                    "(soft RLIMIT_NOFILE)", value=float(usage.limit))


CHECK_FAMILIES = (
    ("hismon_check_up", "1 when the check's last result is OK or WARN", "gauge"),
    ("hismon_check_state", "Last result: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN", "gauge"),
    ("hismon_check_hard_state", "Confirmed (hard) state: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN",
     "gauge"),
    ("hismon_check_duration_seconds", "Duration of the check's last probe", "gauge"),
    ("hismon_check_flapping", "1 while the check is flapping", "gauge"),
    ("hismon_check_stale", "1 while the check has no fresh result (SPEC 9)", "gauge"),
    ("hismon_check_runs_total", "Probe results by state", "counter"),
    ("hismon_check_missed_runs_total", "Runs skipped: previous run still going or overload",
     "counter"),
    ("hismon_tls_cert_expiry_seconds", "Seconds until the server certificate expires",
     "gauge"),
)
SLICE = 100
"""Checks rendered between two yields to the event loop: a scrape never delays probes."""


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def _number(value: float) -> str:
    """Prometheus text for a value, exactly as prometheus_client writes it."""
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


class CheckLines:
    """The per-check families in Prometheus text, written from label strings cached per check.

    prometheus_client spends about 11 µs per sample building and formatting objects; with
    10,000 checks (70,000 samples) that is over a second of CPU per scrape. Writing the lines
    from cached, pre-escaped label strings takes a tenth of that, and doing it in slices on
    the event loop (rather than in a thread that holds the GIL) keeps probes on time.
    """

    def __init__(self) -> None:
        self._labels: dict[str, tuple[str, str, str]] = {}

    def _labels_of(self, cs: CheckState) -> tuple[str, str]:
        key = f"{cs.system}\0{cs.type}"
        cached = self._labels.get(cs.check_id)
        if cached is None or cached[2] != key:
            check = _escape(cs.check_id)
            cached = (f'check="{check}",system="{_escape(cs.system)}",type="{_escape(cs.type)}"',
                      f'check="{check}"', key)
            self._labels[cs.check_id] = cached
        return cached[0], cached[1]

    def forget(self, keep: Iterable[str]) -> None:
        keep = set(keep)
        for check_id in [c for c in self._labels if c not in keep]:
            del self._labels[check_id]

    def render_slice(self, states: list[CheckState], families: list[list[str]]) -> None:
        up, state, hard, dur, flap, stale, runs, missed, expiry = families
        for cs in states:
            three, one = self._labels_of(cs)
            value = int(cs.state)
            up.append(f"hismon_check_up{{{three}}} {'1.0' if value <= 1 else '0.0'}\n")
            state.append(f"hismon_check_state{{{three}}} {value}.0\n")
            hard.append(f"hismon_check_hard_state{{{three}}} {int(cs.hard_state)}.0\n")
            dur.append(f"hismon_check_duration_seconds{{{three}}} {_number(cs.duration)}\n")
            flap.append(f"hismon_check_flapping{{{one}}} {'1.0' if cs.flapping else '0.0'}\n")
            stale.append(f"hismon_check_stale{{{one}}} {'1.0' if cs.stale else '0.0'}\n")
            for result, count in cs.runs.items():
                runs.append(f'hismon_check_runs_total{{{one},result="{result}"}} {count}.0\n')
            missed.append(f"hismon_check_missed_runs_total{{{one}}} {cs.missed_runs}.0\n")
            cert = cs.numbers.get("tls_cert_expiry_seconds")
            if cert is not None:
                expiry.append(f"hismon_tls_cert_expiry_seconds{{{one}}} {_number(cert)}\n")

    async def render(self, states: list[CheckState]) -> str:
        families: list[list[str]] = [[] for _ in CHECK_FAMILIES]
        for start in range(0, len(states), SLICE):
            self.render_slice(states[start:start + SLICE], families)
            await asyncio.sleep(0)
        out: list[str] = []
        for (name, doc, kind), lines in zip(CHECK_FAMILIES, families, strict=True):
            out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
            out.extend(lines)
        return "".join(out)


class MetricsSource:
    """What the collector reads; the daemon keeps it current."""

    def __init__(self) -> None:
        self.states: dict[str, CheckState] = {}
        self.systems: list[str] = []
        self.open_incidents: list[Incident] = []
        self.outbox_pending: int = 0
        self.outbox_undelivered: int = 0
        self.store_ok: bool = True
        self.leader: bool = False
        self.leader_term: int = 0
        self.cluster_members: int = 1
        self.checks_owned: int = 0
        self.exhaustion: dict[str, int] = {}
        """Own-fault probe results by resource (ProbeContext.exhaustion.counts)."""


class Metrics:
    """Owns one registry per daemon, so tests can run several daemons in one process."""

    def __init__(self, source: Callable[[], MetricsSource]) -> None:
        self._source = source
        self.check_lines = CheckLines()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SystemCollector(source))
        self.probe_duration = Histogram(
            "hismon_probe_duration_seconds", "Probe duration per check type", ["type"],
            buckets=PROBE_BUCKETS, registry=self.registry)
        self.scheduler_lag = Histogram(
            "hismon_scheduler_lag_seconds", "Start delay of a probe behind its schedule",
            buckets=LAG_BUCKETS, registry=self.registry)
        self.notifications = Counter(
            "hismon_notifications", "Notification attempts by result",
            ["notifier", "kind", "result"], registry=self.registry)
        self.plan_steps = Counter(
            "hismon_plan_steps", "Plan step occurrences by kind and result at their first "
            "decision: sent, or why held (acknowledged, dependency, maintenance, flapping, "
            "recovering)", ["kind", "result"], registry=self.registry)
        self.alertmanager_alerts = Counter(
            "hismon_alertmanager_alerts", "Alerts received from Alertmanager, by what was done",
            ["result"], registry=self.registry)
        for result in ("applied", "unknown_check"):
            self.alertmanager_alerts.labels(result)
        self.incident_errors = Counter(
            "hismon_incident_errors", "Attempts to process a system's incident that failed "
            "(the others went on; /readyz names the incident)", ["system"],
            registry=self.registry)
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
        from monitor.core.types import MESSAGE_KINDS

        for notifier in notifiers:
            for kind in MESSAGE_KINDS:
                for result in ("failed", "undeliverable"):
                    self.notifications.labels(notifier, kind, result)

    def count_incident_error(self, system: str) -> None:
        """One attempt to process a system's incident failed (not the store: SPEC 10)."""
        self.incident_errors.labels(system).inc()

    def count_step(self, kind: str, result: str) -> None:
        """One plan step occurrence decided (the incident applier calls this once each)."""
        self.plan_steps.labels(kind, result).inc()

    async def exposition(self) -> bytes:
        """The whole `/metrics` body: per-check lines on the loop in slices, then the rest."""
        states = list(self._source().states.values())
        per_check = await self.check_lines.render(states)
        return per_check.encode() + generate_latest(self.registry)

    def observe_probe(self, check_type: str, duration: float) -> None:
        self.probe_duration.labels(check_type).observe(duration)


def is_up(state: State) -> bool:
    return state in (State.OK, State.WARN)
