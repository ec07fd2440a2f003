"""Suspected cause from what fails and what still answers."""

from __future__ import annotations

from monitor.core.result import State
from monitor.incidents.cause import suspect
from monitor.probing.state import CheckState


def state(check_id: str, kind: str, result: State, cause: str | None = None) -> CheckState:
    cs = CheckState(check_id, "sys", kind, state=result, probed=True,
                    message=f"{check_id} says {result.name}")
    cs.cause = cause
    return cs


def test_database_fails_while_the_network_answers() -> None:
    cause, evidence = suspect([state("db", "postgres", State.CRIT, "database"),
                               state("ping", "icmp", State.OK)])
    assert cause == "database"
    assert evidence[0].startswith("db (postgres): ") and "ping (icmp) answers" in evidence[1]


def test_network_when_the_host_does_not_answer() -> None:
    assert suspect([state("ping", "icmp", State.CRIT, "network"),
                    state("web", "http", State.CRIT, "network")])[0] == "network"


def test_application_when_http_fails_but_tcp_answers() -> None:
    assert suspect([state("web", "http", State.CRIT, "application"),
                    state("port", "tcp", State.OK)])[0] == "application"


def test_certificate_and_capacity_and_unknown() -> None:
    assert suspect([state("web", "http", State.WARN, "certificate")])[0] == "certificate"
    assert suspect([state("disk", "prometheus", State.WARN, "capacity")])[0] == "capacity"
    assert suspect([state("job", "command", State.CRIT)])[0] == "unknown"
    assert suspect([state("web", "http", State.OK)]) == ("unknown", [])


# ---- issue 10 item 8: the cause follows SPEC §4 and its evidence never contradicts it ----

import asyncio  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from monitor.config.loader import load_config_text  # noqa: E402
from monitor.core.result import Result  # noqa: E402
from monitor.incidents.cause import suspect_system  # noqa: E402
from monitor.probing.state import advance  # noqa: E402
from monitor.probing.trend import TrendTracker  # noqa: E402
from tests.probe_helpers import close_at_once, closed_port, make_check, probe, tcp_server  # noqa: E402

PG_DSN = os.environ.get("HISMON_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), 2):
            return True
    except OSError:
        return False


def probed(check_id: str, kind: str, result: Result, system: str = "db") -> CheckState:
    """A check state after one real probe result (confirm 1: hard at once)."""
    cs = CheckState(check_id, system, kind)
    advance(cs, result, 1000.0, confirm=1, recover=2)
    return cs


def contradicts(cause: str, evidence: list[str]) -> bool:
    """Network blamed while a line says something answers, or a host blamed as silent
    under any other cause."""
    answers = any(" answers" in line for line in evidence)
    silent = any("nothing answers" in line for line in evidence)
    return (cause == "network" and answers and not silent) or (cause != "network" and silent)


async def test_a_database_listener_down_while_the_host_answers_is_database() -> None:
    """Real probes: PostgreSQL and TCP to a closed port, while another port of 127.0.0.1
    answers. The host is reachable, so the network is not the cause."""
    port = closed_port()
    async with tcp_server(close_at_once) as open_port:
        config = load_config_text(f"""
systems: [{{id: db, name: HIS database}}]
checks:
  - {{id: db-sql, system: db, type: postgres, dsn: "postgresql://u@127.0.0.1:{port}/x",
     query: "select 1", timeout: 2s}}
  - {{id: db-port, system: db, type: tcp, host: 127.0.0.1, port: {port}}}
  - {{id: db-ssh, system: db, type: tcp, host: 127.0.0.1, port: {open_port}}}
""", "c.yaml", {})
        states = {c.id: probed(c.id, c.type, await probe(c)) for c in config.checks}
    assert states["db-sql"].state is State.CRIT and states["db-ssh"].state is State.OK
    cause, evidence = suspect_system(config, "db", states)
    assert cause == "database", evidence
    assert not contradicts(cause, evidence), evidence
    assert any(line.startswith("db-ssh (tcp) answers") for line in evidence), evidence


async def test_a_tcp_port_refusing_on_a_host_answering_elsewhere_is_not_network() -> None:
    """The demo's case: the database port (a TCP check of the database system) refuses while
    other systems' checks to the same host answer."""
    port = closed_port()
    async with tcp_server(close_at_once) as open_port:
        config = load_config_text(f"""
systems: [{{id: his-db, name: HIS database}}, {{id: pacs, name: PACS}}]
checks:
  - {{id: his-db-port, system: his-db, type: tcp, host: 127.0.0.1, port: {port}}}
  - {{id: pacs-port, system: pacs, type: tcp, host: 127.0.0.1, port: {open_port}}}
""", "c.yaml", {})
        states = {c.id: probed(c.id, c.type, await probe(c), c.system) for c in config.checks}
    cause, evidence = suspect_system(config, "his-db", states)
    assert cause != "network", evidence
    assert not contradicts(cause, evidence), evidence


async def test_nothing_on_the_host_answers_is_network() -> None:
    port = closed_port()
    config = load_config_text(f"""
systems: [{{id: db, name: HIS database}}]
checks:
  - {{id: db-port, system: db, type: tcp, host: 127.0.0.1, port: {port}}}
  - {{id: db-sql, system: db, type: postgres, dsn: "postgresql://u@127.0.0.1:{port}/x",
     query: "select 1", timeout: 2s}}
""", "c.yaml", {})
    states = {c.id: probed(c.id, c.type, await probe(c)) for c in config.checks}
    cause, evidence = suspect_system(config, "db", states)
    assert cause == "network", evidence
    assert any("nothing answers" in line and "127.0.0.1" in line for line in evidence)
    assert not contradicts(cause, evidence), evidence


@pytest.mark.skipif(not _pg_up(), reason="PostgreSQL not reachable at 127.0.0.1:5432")
async def test_a_value_threshold_on_a_resource_is_capacity() -> None:
    """Real PostgreSQL: `select 95` against `crit: 90` (used connections %)."""
    result = await probe(make_check({"type": "postgres", "dsn": PG_DSN, "query": "select 95",
                                     "value": {"warn": 80, "crit": 90}}))
    assert result.state is State.CRIT, result.message
    cause, evidence = suspect([probed("db-conn", "postgres", result)])
    assert cause == "capacity", evidence
    assert evidence and "95" in evidence[0]


def test_a_latency_trend_is_not_capacity() -> None:
    """A slow but answering HTTP service: the answer proves network and port, so it is the
    application; a latency trend is no resource threshold."""
    from checks.base import TrendConfig

    trend = TrendTracker(TrendConfig(window=5, baseline=10, latency_factor=3.0))
    for _ in range(10):
        trend.observe(Result(State.OK, "200 in 20ms", numbers={"latency_seconds": 0.02}))
    warned = None
    for _ in range(5):
        warned = trend.observe(Result(State.OK, "200 in 900ms",
                                      numbers={"latency_seconds": 0.9}))
    assert warned is not None and warned.state is State.WARN
    cause, evidence = suspect([probed("web", "http", warned, "his")])
    assert cause == "application", evidence
    assert "trend" in evidence[0]


async def test_a_slow_answer_over_the_latency_limit_is_not_capacity(
    http_target: Any,
) -> None:
    """Real HTTP target answering in 0.3 s against `latency: {crit: 100ms}`."""
    http_target.delay = 0.3
    result = await probe(make_check({"type": "http", "url": http_target.url,
                                     "expect": {"latency": {"crit": "100ms"}}}))
    assert result.state is State.CRIT, result.message
    cause, _ = suspect([probed("web", "http", result, "his")])
    assert cause == "application"


def test_checks_that_break_and_heal_in_one_second_keep_a_cause_with_evidence() -> None:
    """Failed and answered again before the engine looked: still hard CRIT (recover 2), and
    the cause comes from the failure, not from the OK answer."""
    cs = CheckState("web", "his", "http")
    advance(cs, Result(State.CRIT, "HTTP 503 from /health", cause="application"), 1000.0,
            confirm=1, recover=2)
    advance(cs, Result(State.OK, "HTTP 200 in 4ms"), 1000.5, confirm=1, recover=2)
    assert cs.failing and cs.state is State.OK
    cause, evidence = suspect([cs])
    assert cause == "application"
    assert evidence and "HTTP 503" in evidence[0]


async def test_the_engine_keeps_a_cause_for_an_incident_that_heals_at_once(
    tmp_path: Any,
) -> None:
    """Through the real engine: the incident opened after the check healed has evidence."""
    from monitor.incidents.engine import Engine
    from monitor.store.sqlite import SqliteStore

    config = load_config_text("""
systems: [{id: his, name: HIS}]
checks: [{id: web, system: his, type: http, url: "http://127.0.0.1:1/"}]
""", "c.yaml", {})
    store = SqliteStore(f"sqlite:///{tmp_path}/s.db")
    await store.open()
    cs = CheckState("web", "his", "http")
    advance(cs, Result(State.CRIT, "HTTP 503 from /health", cause="application"), 1000.0,
            confirm=1, recover=2)
    advance(cs, Result(State.OK, "HTTP 200 in 4ms"), 1000.5, confirm=1, recover=2)
    engine = Engine(config, store, {"web": cs}, lambda: 1001.0)
    engine.check_changed(cs)
    await engine.tick()
    incident = engine.open["his"]
    assert incident.suspected_cause == "application"
    assert incident.cause_evidence and "HTTP 503" in incident.cause_evidence[0]
    await store.close()
    await asyncio.sleep(0)
