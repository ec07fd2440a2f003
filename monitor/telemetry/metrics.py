"""Prometheus metrics (SPEC §8). Per-check series are read from live state at scrape time.

The collector reads the check states, incidents and outbox; it never drives them. Per-check
histograms are deliberately absent (about 6 KiB and 14 series each): probe durations are a
histogram per check *type*, and each check's last duration is a gauge.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, repeat
from operator import attrgetter, methodcaller
from typing import TYPE_CHECKING, Any

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
    """Daemon-wide families, built from live state on each scrape (the per-system ones are
    written by `SystemLines`, the per-check ones by `CheckLines`)."""

    def __init__(self, source: Callable[[], MetricsSource]) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        src = self._source()
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
        yield GaugeMetricFamily("hismon_probes_in_flight", "Probes running now (those waiting "
                                "for a slot show as hismon_scheduler_lag_seconds)",
                                value=float(src.probes_in_flight))
        yield GaugeMetricFamily("hismon_probes_in_flight_limit", "Probes allowed in flight at "
                                "once, from the descriptor limit (docs/operations.md)",
                                value=float(src.probes_in_flight_limit))
        own = CounterMetricFamily(
            "hismon_probe_resource_errors", "Probe results that judged nothing because hismon "
            "itself was out of a resource (fd: file descriptors, memory: socket buffers, "
            "loop: its event loop was held up past the probe's time limit)",
            labels=["resource"])
        for resource_name in ("fd", "memory", "loop"):
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
CHUNK = 1000
"""Checks rendered between two yields to the event loop: one slice stays a few ms, so a
scrape never delays probes (SPEC §12: lag p99 ≤ 20 ms while scraping)."""

_CHECK_ID = attrgetter("check_id")
_SYSTEM = attrgetter("system")
_TYPE = attrgetter("type")
_STATE = attrgetter("state")
_HARD = attrgetter("hard_state")
_DURATION = attrgetter("duration")
_FLAPPING = attrgetter("flapping")
_STALE = attrgetter("stale")
_RUNS = attrgetter("runs")
_MISSED = attrgetter("missed_runs")
_NUMBERS = attrgetter("numbers")
_CERT = methodcaller("get", "tls_cert_expiry_seconds")
_UP_TEXT = {s: "1.0" if int(s) <= 1 else "0.0" for s in State}
_STATE_TEXT = {s: f"{int(s)}.0" for s in State}
_BOOL_TEXT = {False: "0.0", True: "1.0"}
_SAFE_RESULTS: set[str] = set()
"""`result` label values seen that need no escaping (the states' names, in practice)."""


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def _number(value: float) -> str:
    """Prometheus text for a value, exactly as prometheus_client writes it."""
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


def _interleave(labels: Sequence[str], values: Iterable[object]) -> tuple[object, ...]:
    """(label0, value0, label1, value1, ...) by slice assignment: no per-sample object."""
    args: list[object] = [None] * (2 * len(labels))
    args[0::2] = labels
    args[1::2] = values
    return tuple(args)


def _floats_text(values: list[float]) -> tuple[str, Iterable[object]]:
    """The `%` conversion and values for floats: `%r` is floatToGoString for any finite value
    below 1e6 (Go switches to exponents there); anything else goes through floatToGoString."""
    if max(values) < 1e6 and math.isfinite(sum(values)):
        return "%r", values
    return "%s", map(_number, values)


def _ints_text(values: list[int]) -> tuple[str, Iterable[object]]:
    """The same for counters kept as ints: "N.0" while exact, else floatToGoString."""
    if values and (max(values) >= 1_000_000 or min(values) <= -10**15
                   or set(map(type, values)) != {int}):
        return "%s", map(_number, map(float, values))
    return "%d.0", values


class _Chunk:
    """One slice of checks: the states it was built from, their label strings, and each
    family's text of the last scrape with the values it was written from (a family whose
    values did not change is reused)."""

    __slots__ = ("one", "states", "texts", "three")

    def __init__(self, states: list[CheckState], three: list[str], one: list[str]) -> None:
        self.states = states
        self.three = three
        self.one = one
        self.texts: dict[str, tuple[object, bytes]] = {}

    def family(self, name: str, values: object,
               write: Callable[[], str]) -> bytes:
        cached = self.texts.get(name)
        if cached is not None and cached[0] == values:
            return cached[1]
        text = write().encode()
        self.texts[name] = (values, text)
        return text


_THREE = 'check="{}",system="{}",type="{}"'.format
_ONE = 'check="{}"'.format


def _escaped(values: list[str]) -> list[str] | Iterable[str]:
    """`values` escaped for a label; as they are when none needs it (one C-level search)."""
    joined = "\0".join(values)
    if "\\" in joined or "\n" in joined or '"' in joined:
        return list(map(_escape, values))
    return values


class CheckLines:
    """The per-check families in Prometheus text, written without per-sample objects.

    prometheus_client spends about 11 µs per sample building and formatting objects (a
    `Sample`, a label dict, validation, `floatToGoString`): with 10,000 checks (70,000
    samples) over a second per scrape. Here the label strings of a slice of checks are built
    at once (C-level `str.format` over the slice) and kept with the slice; each family of a
    slice is one `%` format over a template (`line * n`), fed by C-level attribute reads
    (`map(attrgetter(...))`), and a family whose values are the same as at the last scrape
    (states, hard states, flapping, stale, missed runs, certificates: nearly always) is not
    written again; the kept texts cost ~330 bytes per check, durations and run counts (new at
    every probe) are not kept. Slices of `CHUNK` checks, with a yield to the loop between
    them, keep probes on time; a thread would hold the GIL against the loop instead.

    A slice is reused while it holds the same state objects (one C-level comparison of
    identities): a check's id, system and type never change in a state object (the
    scheduler makes a new state when they do), and a reload calls `forget`.
    """

    def __init__(self) -> None:
        self._chunks: list[_Chunk] = []

    def forget(self, keep: Iterable[str]) -> None:
        """After a reload: build every slice's labels again at the next render."""
        self._chunks.clear()

    def _chunk(self, index: int, states: list[CheckState]) -> _Chunk:
        chunks = self._chunks
        if index < len(chunks) and chunks[index].states == states:  # `is` first, in C
            return chunks[index]
        ids = _escaped(list(map(_CHECK_ID, states)))
        three = list(map(_THREE, ids, _escaped(list(map(_SYSTEM, states))),
                         _escaped(list(map(_TYPE, states)))))
        chunk = _Chunk(states, three, list(map(_ONE, ids)))
        if index < len(chunks):
            chunks[index] = chunk
        else:
            chunks.append(chunk)
        return chunk

    def render_slice(self, index: int, states: list[CheckState],
                     families: list[list[bytes]]) -> None:
        chunk = self._chunk(index, states)
        three, one = chunk.three, chunk.one
        n = len(states)
        up, state, hard, dur, flap, stale, runs, missed, expiry = families

        values = list(map(_STATE, states))
        up.append(chunk.family("up", values, lambda: (
            "hismon_check_up{%s} %s\n" * n) % _interleave(three, map(_UP_TEXT.__getitem__,
                                                                    values))))
        state.append(chunk.family("state", values, lambda: (
            "hismon_check_state{%s} %s\n" * n) % _interleave(three, map(
                _STATE_TEXT.__getitem__, values))))
        hard_values = list(map(_HARD, states))
        hard.append(chunk.family("hard", hard_values, lambda: (
            "hismon_check_hard_state{%s} %s\n" * n) % _interleave(three, map(
                _STATE_TEXT.__getitem__, hard_values))))
        durations = list(map(float, map(_DURATION, states)))

        def write_durations() -> str:
            conv, texts = _floats_text(durations)
            return (f"hismon_check_duration_seconds{{%s}} {conv}\n" * n) % _interleave(
                three, texts)

        dur.append(write_durations().encode())  # changes at every probe: not worth keeping
        flags = list(map(bool, map(_FLAPPING, states)))
        flap.append(chunk.family("flap", flags, lambda: (
            "hismon_check_flapping{%s} %s\n" * n) % _interleave(one, map(
                _BOOL_TEXT.__getitem__, flags))))
        stale_flags = list(map(bool, map(_STALE, states)))
        stale.append(chunk.family("stale", stale_flags, lambda: (
            "hismon_check_stale{%s} %s\n" * n) % _interleave(one, map(
                _BOOL_TEXT.__getitem__, stale_flags))))
        runs.append(self._runs(one, states))
        counts = list(map(_MISSED, states))

        def write_missed() -> str:
            conv, texts = _ints_text(counts)
            return (f"hismon_check_missed_runs_total{{%s}} {conv}\n" * n) % _interleave(
                one, texts)

        missed.append(chunk.family("missed", counts, write_missed))
        certs = list(map(_CERT, map(_NUMBERS, states)))
        expiry.append(chunk.family("cert", certs, lambda: self._certs(one, certs)))

    @staticmethod
    def _runs(one: list[str], states: list[CheckState]) -> bytes:
        """`hismon_check_runs_total{check,result}`: a check has one line per result seen, in
        its dict's order. The (label, result, count) triples are laid out by C-level
        iteration over the dicts (no Python step per check)."""
        by_check = list(map(_RUNS, states))
        results: list[Any] = list(chain.from_iterable(by_check))
        if not results:
            return b""
        counts: list[Any] = list(chain.from_iterable(map(dict.values, by_check)))
        args: list[Any] = [None] * (3 * len(results))
        args[0::3] = chain.from_iterable(map(repeat, one, map(len, by_check)))
        for result in set(results).difference(_SAFE_RESULTS):
            if _escape(result) != result:
                results = list(map(_escape, results))
                break
            _SAFE_RESULTS.add(result)
        args[1::3] = results
        conv, texts = _ints_text(counts)
        args[2::3] = counts if conv == "%d.0" else texts
        line = f'hismon_check_runs_total{{%s,result="%s"}} {conv}\n'
        return ((line * len(results)) % tuple(args)).encode()

    @staticmethod
    def _certs(one: list[str], certs: list[float | None]) -> str:
        """`hismon_tls_cert_expiry_seconds{check}`: only checks that measured a certificate."""
        if certs.count(None) == len(certs):
            return ""
        return "".join(f"hismon_tls_cert_expiry_seconds{{{label}}} {_number(float(cert))}\n"
                       for label, cert in zip(one, certs, strict=True) if cert is not None)

    async def render(self, states: list[CheckState]) -> bytes:
        return b"".join(await self.render_parts(states))

    async def render_parts(self, states: list[CheckState]) -> list[bytes]:
        """The text in pieces, to be joined once with what follows it (24 MB at 50,000
        checks: every copy is a pause of the loop)."""
        families: list[list[bytes]] = [[] for _ in CHECK_FAMILIES]
        for index, start in enumerate(range(0, len(states), CHUNK)):
            self.render_slice(index, states[start:start + CHUNK], families)
            await asyncio.sleep(0)
        del self._chunks[(len(states) + CHUNK - 1) // CHUNK:]
        out: list[bytes] = []
        for (name, doc, kind), chunks in zip(CHECK_FAMILIES, families, strict=True):
            out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n".encode())
            out.extend(chunks)
        return out


class SystemLines:
    """`hismon_system_up{system}` and `hismon_incidents_open{system,severity}` as text.

    Three samples per system (3,000 at 50,000 checks) cost prometheus_client ~11 µs each;
    written from cached label strings they cost well under a microsecond.
    """

    def __init__(self) -> None:
        self._labels: dict[str, str] = {}

    def render(self, systems: list[str], open_incidents: Iterable[Incident]) -> bytes:
        labels = self._labels
        if len(labels) > 2 * len(systems) + 100:
            labels.clear()
        texts = []
        for system in systems:
            label = labels.get(system)
            if label is None:
                label = labels[system] = f'system="{_escape(system)}"'
            texts.append(label)
        critical = {i.system for i in open_incidents if i.severity == "critical"}
        warning = {i.system for i in open_incidents if i.severity == "warning"}
        n = len(texts)
        up = [_BOOL_TEXT[s not in critical] for s in systems]
        warn = [_BOOL_TEXT[s in warning] for s in systems]
        crit = [_BOOL_TEXT[s in critical] for s in systems]
        incidents: list[object] = [None] * (4 * n)
        incidents[0::4] = texts
        incidents[1::4] = warn
        incidents[2::4] = texts
        incidents[3::4] = crit
        return ("# HELP hismon_system_up 1 unless the system has an open critical incident\n"
                "# TYPE hismon_system_up gauge\n"
                + ("hismon_system_up{%s} %s\n" * n) % _interleave(texts, up)
                + "# HELP hismon_incidents_open Open incidents\n"
                "# TYPE hismon_incidents_open gauge\n"
                + ('hismon_incidents_open{severity="warning",%s} %s\n'
                   'hismon_incidents_open{severity="critical",%s} %s\n') * n
                % tuple(incidents)).encode()


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
        self.probes_in_flight: int = 0
        self.probes_in_flight_limit: int = 0
        self.exhaustion: dict[str, int] = {}
        """Own-fault probe results by resource (ProbeContext.exhaustion.counts)."""


class Metrics:
    """Owns one registry per daemon, so tests can run several daemons in one process."""

    def __init__(self, source: Callable[[], MetricsSource]) -> None:
        self._source = source
        self.check_lines = CheckLines()
        self.system_lines = SystemLines()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SystemCollector(source))
        self.probe_duration = Histogram(
            "hismon_probe_duration_seconds", "Probe duration per check type", ["type"],
            buckets=PROBE_BUCKETS, registry=self.registry)
        self._probe_children: dict[str, Histogram] = {}
        """`probe_duration`'s child per check type (`observe_probe`)."""
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
        return b"".join(await self.exposition_parts())

    async def exposition_parts(self) -> list[bytes]:
        """`exposition()` in the pieces it is rendered in (`/metrics` sends them as they are:
        joined, 24 MB at 50,000 checks, the copy is a pause of the loop)."""
        states = list(self._source().states.values())
        parts = await self.check_lines.render_parts(states)
        src = self._source()
        parts.append(self.system_lines.render(src.systems, src.open_incidents))
        parts.append(generate_latest(self.registry))
        return parts

    def observe_probe(self, check_type: str, duration: float) -> None:
        """Once per probe: the histogram's child per type is kept (`labels()` validates and
        locks on every call)."""
        child = self._probe_children.get(check_type)
        if child is None:
            child = self._probe_children[check_type] = self.probe_duration.labels(check_type)
        child.observe(duration)


def is_up(state: State) -> bool:
    return state in (State.OK, State.WARN)
