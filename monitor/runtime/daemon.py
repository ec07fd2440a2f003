"""The composition root: wires config → scheduler → state → engine → outbox, plus the API.

Everything runs on one asyncio loop. Signals: SIGTERM/SIGINT stop cleanly, SIGHUP (or a
changed config file) reloads; a bad reload keeps the running config.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog

from checks.base import ProbeContext
from monitor.cluster import assign
from monitor.cluster.leader import Leadership, config_lease_ttl
from monitor.cluster.membership import Membership, MemberStore, default_member_id
from monitor.config.loader import ConfigError
from monitor.config.model import Config
from monitor.config.reload import Reloader, WatchedFiles
from monitor.core.exhaustion import STORE_FDS, FdReserve, fd_usage, probe_budget
from monitor.core.result import Result, State
from monitor.delivery.outbox import Outbox
from monitor.history.query import HistoryReader
from monitor.history.recorder import HistoryRecorder
from monitor.history.service import HistoryService
from monitor.incidents.engine import Engine
from monitor.probing.pushed import AlertBook, AmAlert, Applied
from monitor.probing.scheduler import Scheduler
from monitor.probing.state import CheckState, from_record, mark_stale, stale_after
from monitor.runtime import loop as event_loop
from monitor.runtime import memtrim, sdnotify, staleness
from monitor.runtime.selfwatch import SELF_KINDS, SelfWatch, assess, self_alert_notifiers
from monitor.runtime.storewatch import adopt_replaced_store
from monitor.store import open_store
from monitor.store.base import StatesMark
from monitor.store.buffered import BufferedStore
from monitor.telemetry.metrics import Metrics, MetricsSource

log = structlog.get_logger("hismon.daemon")

class Daemon:
    def __init__(
        self,
        config: Config,
        config_path: str | None = None,
        clock: Callable[[], float] = time.time,
        shard: tuple[int, int] | None = None,
        serve_http: bool = True,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.clock = clock
        self.serve_http = serve_http
        self.started_at = clock()
        self.states: dict[str, CheckState] = {}
        self.source = MetricsSource()
        self.source.states = self.states
        self.metrics = Metrics(lambda: self.source)
        self.metrics.init_notifier_series(n.id for n in config.notifiers)
        self.ctx = ProbeContext()
        self.ctx.app_state["started_at"] = self.started_at
        # Incidents and messages go on from memory while the store refuses writes.
        self.store = BufferedStore(open_store(config.state.url), clock)
        self.outbox = Outbox(config, self.store, clock, self._count_notification)
        self.engine = Engine(config, self.store, self.states, clock, self.outbox.wake,
                             count_step=self.metrics.count_step,
                             on_incident_error=self.metrics.count_incident_error)
        # Quorum checks count only once the votes of other instances were read.
        self.engine.unconfirmed = {c.id for c in config.checks if c.vantage_quorum > 1}
        self.outbox.on_sent = self.engine.delivered
        self.scheduler = Scheduler(config, self.ctx, self.states, self.metrics,
                                   self._check_changed, clock, shard)
        self.alerts = AlertBook()
        """Alertmanager alerts by fingerprint per passive check (SPEC 15)."""
        self.shard = shard
        self.history_recorder = HistoryRecorder()
        self.scheduler.recorder = self.history_recorder
        self.history = HistoryService(self.store, self.history_recorder,
                                      lambda: self.config.site.tz, self._windows)
        self._history_task: asyncio.Task[None] | None = None
        self.history_reader = HistoryReader(self.store, self.history_recorder,
                                            lambda: self.config.site.tz, self._windows)
        self.leadership = Leadership(self.store.inner, ttl=config_lease_ttl(config))
        self.membership = self._membership(config)
        self.leading = False
        """Only the leader opens incidents, runs plans and sends (SPEC §9); all instances probe."""
        self._term_stop: asyncio.Event | None = None
        self._engine_task: asyncio.Task[None] | None = None
        self.stop_event = asyncio.Event()
        self.link_key: bytes | None = None
        """The store's link-signing key, read at start (monitor/links/tokens.py)."""
        self.ready = False
        self.store_error: str | None = None
        self.store_identity_error: str | None = None
        """The store was deleted or replaced under us (monitor/runtime/storewatch.py)."""
        self._tasks: list[asyncio.Task[Any]] = []
        self._server: Any = None
        self._listen_socket: socket.socket | None = None
        self._watch = WatchedFiles(config.watch_paths or ([config_path] if config_path else []))
        self._reloader = Reloader(config_path, self._apply_reloaded, self._reject_reload,
                                  watch=self._watch) if config_path else None
        self._store_down_since: float | None = None
        self._failing_channels: list[tuple[str, str]] = []
        self._shared_runs: dict[str, float] = {}
        """The `last_run` of each check this instance probes, as it last saved it."""
        self._member_mark: StatesMark | None = None
        """How far the leader has read the states other members saved (changed-only reads)."""
        self._pushed_mark: StatesMark | None = None
        """How far a follower has read the passive checks' states the leader saved."""
        self._adopting = asyncio.Lock()
        """One read of saved states at a time: an older answer never lands after a newer."""
        self._probed_stale = staleness.StaleGroups(interval=None, timeout=0.0)
        self._self_stale = staleness.StaleGroups(interval=30.0, timeout=5.0)
        self._quorum: tuple[Config | None, dict[str, Any]] = (None, {})
        self._any_pushed: tuple[Config | None, bool] = (None, False)
        self.fd_reserve = FdReserve()
        self._direct_retries = 0
        """Freed to send "out of file descriptors" when there are none left (issue 11)."""
        self.selfwatch = SelfWatch(self.membership.me if self.membership is not None
                                   else default_member_id(config.server.listen))

    # ---- wiring ----------------------------------------------------------------------

    def _membership(self, config: Config) -> Membership | None:
        """`cluster: {shards: auto}`: checks follow the live members (SPEC 9)."""
        if config.cluster is None or not isinstance(self.store.inner, MemberStore):
            return None
        me = config.cluster.member_id or default_member_id(config.server.listen)
        shortest = min((float(c.interval) for c in config.checks if c.interval), default=None)
        return Membership(self.store.inner, me, self.leadership.ttl, self._check_replicas,
                          self._owned_changed, period=shortest)

    def _check_replicas(self) -> list[tuple[str, int]]:
        replicas = self.config.cluster.replicas if self.config.cluster else 1
        return [(c.id, assign.replicas_for(c.vantage_quorum, replicas))
                for c in self.config.checks]

    def _everywhere(self) -> set[str]:
        """Checks every member keeps, whatever the assignment: results pushed to hismon
        (passive, heartbeat) arrive at whichever instance the sender reaches (the leader),
        nothing is probed for them, so they are never "another member's"."""
        return {c.id for c in self.config.checks if getattr(c, "pushed", False)
                or c.type == "heartbeat"}

    def _owned_changed(self, owned: set[str]) -> None:
        if self.scheduler.owned is None:  # before start: the scheduler starts with this set
            return
        task = asyncio.ensure_future(self._take_over(owned))
        self._tasks.append(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Future[Any]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)  # type: ignore[arg-type]

    async def _take_over(self, owned: set[str]) -> None:
        """Checks that moved here start from the hard state their last owner saved."""
        moving_in = owned - set(self.scheduler.probing)
        if moving_in:
            try:
                saved = await asyncio.wait_for(self.store.load_check_states(), 5.0)
            except Exception as exc:
                log.warning("cluster_states_unavailable",
                            error=f"{type(exc).__name__}: {exc}"[:300])
                saved = {}
            for check in self.config.checks:
                record = saved.get(check.id)
                if check.id in moving_in and record is not None:
                    self.states[check.id] = from_record(check.id, check.system, check.type,
                                                        record)
        moved = self.scheduler.set_owned(owned | self._everywhere())
        if moved:
            log.info("cluster_checks_taken", member=self.membership.me if self.membership
                     else None, checks=len(moved))

    async def _history_tick(self) -> None:
        """Once per bucket (the tick returns at once otherwise); failed rows are kept."""
        try:
            await asyncio.wait_for(self.history.tick(self.clock(), self.leading), 30.0)
        except Exception as exc:
            log.error("history_write_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    def _windows(self, now: float) -> list[Any]:
        return self.engine.windows(now)

    def _count_notification(self, notifier: str, kind: str, result: str) -> None:
        self.metrics.notifications.labels(notifier, kind, result).inc()

    def _check_changed(self, state: CheckState) -> None:
        self.engine.check_changed(state)

    # ---- pushed results (SPEC 15) ----------------------------------------------------

    async def push_result(self, check_id: str, result: Result) -> float | None:
        """A passive check's pushed result; None when this instance has no such check."""
        if not self.scheduler.submit(check_id, result):
            return None
        received = self.ctx.heartbeats[check_id]
        await self.store.save_heartbeat(check_id, received)  # freshness survives a restart
        return received

    async def apply_alerts(self, alerts: list[AmAlert]) -> Applied:
        """An Alertmanager notification: each alert naming a passive check sets that check."""
        passive = {c.id for c in self.config.checks if c.pushed}
        applied = self.alerts.apply(alerts, passive)
        for check_id, result in applied.results.items():
            await self.push_result(check_id, result)
        self.metrics.alertmanager_alerts.labels("applied").inc(applied.applied)
        if applied.unknown_check:
            self.metrics.alertmanager_alerts.labels("unknown_check").inc(applied.unknown_check)
            log.warning("alertmanager_unknown_check", count=applied.unknown_check,
                        checks=sorted(set(applied.unknown_names))[:20])
        return applied

    def refresh_source(self) -> None:
        """What the metrics render from, brought up to date (each scrape, each second)."""
        self.source.systems = [s.id for s in self.config.systems]
        self.source.open_incidents = list(self.engine.open.values())
        self.source.outbox_pending = self.outbox.pending
        self.source.store_ok = self.store_error is None
        self.source.leader = self.leading
        self.source.leader_term = self.leadership.term
        self.source.checks_owned = len(self.scheduler.probing)
        self.source.probes_in_flight = self.scheduler.slots.in_flight
        self.source.probes_in_flight_limit = self.scheduler.slots.limit
        self.source.cluster_members = len(self.membership.members) if self.membership else 1
        self.source.exhaustion = self.ctx.exhaustion.counts

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self.serve_http:
            # First, before anything logs: a busy port is one clear line, not uvicorn's errno,
            # a JSON error and leadership changes of a daemon that never ran.
            self._listen_socket = listen_socket(*self.config.server.host_port,
                                                self.config.server.listen)
            # The web app's import (~0.5 s of CPU) before the first probe is due, not in
            # the middle of the first wave, which it held up as one long loop stall.
            import monitor.runtime.webside
            import monitor.web.app
            import monitor.web.server  # noqa: F401
        await self.store.open()
        if self.store.created:  # a first start, or the old database is gone: say which store
            log.warning("store_created", store=self.store.store_id, tag=self.store.tag,
                        hint="a new, empty state store; if hismon ran here before, the "
                             "incidents, acknowledgements and outbox of its store are lost")
        self._restore_states(await self.store.load_check_states())
        self.ctx.heartbeats.update(await self.store.load_heartbeats())
        self.scheduler.forecasts.load(await self.store.load_samples())  # a restart keeps trends
        await self.engine.load()  # a read-only view until this instance leads
        await self.engine.restore_notes()
        self.link_key = await self.store.link_key()  # SPEC 13.2: one key for all instances
        self.engine.link_key = self.link_key
        if self.membership is not None:
            await self.membership.beat()
            # No answer from the store: probe everything rather than nothing.
            self.scheduler.owned = (self.membership.owned | self._everywhere()
                                    if self.membership.members
                                    else {c.id for c in self.config.checks})
            self._tasks.append(asyncio.create_task(self.membership.run(self.stop_event),
                                                   name="membership"))
        self.scheduler.prepare()
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        self._lead_task = asyncio.create_task(
            self.leadership.run(self.stop_event, self._on_leadership, self.clock),
            name="leadership")
        if self.serve_http:
            await self._start_http()
        # The cap on probes in flight knows the HTTP server's share of the descriptors now.
        self.scheduler.slots.set_limit(self._probe_budget())
        for _ in range(40):  # a single instance (or the lease holder) leads at once
            if self.leading:
                break
            await asyncio.sleep(0.05)
        if self.serve_http:
            # One render before any scrape: every check's label strings and slices are built
            # now, and frozen with the rest by settle(), not on the first scrape (583 ms
            # against ~230 for later ones at 50,000 checks, bench/README.md).
            await self.metrics.exposition_parts()
        # Probing starts last: the first probes no longer compete with the start-up above.
        self.scheduler.start()
        self.ready = True
        memtrim.settle()  # drop what loading the config left behind; freeze long-lived objects
        sdnotify.ready(f"{len(self.config.checks)} checks")
        log.info("daemon_started", checks=len(self.config.checks),
                 systems=len(self.config.systems), listen=self.config.server.listen,
                 probes_in_flight_limit=self.scheduler.slots.limit,
                 loop=event_loop.name())

    async def restart_term(self) -> None:
        """End this leader's term and begin a new one: a fresh engine and outbox loaded from
        the store (storewatch: the store was replaced under a leading daemon)."""
        await self._on_leadership(False)
        await self._on_leadership(True)

    async def _on_leadership(self, lead: bool) -> None:
        """Start the engine and outbox when this instance becomes leader; stop them when not.

        Each term gets fresh objects loaded from the store, so nothing of an earlier term (or
        of the read-only view a follower keeps) is stale.
        """
        if lead:
            outbox = Outbox(self.config, self.store, self.clock, self._count_notification)
            engine = Engine(self.config, self.store, self.states, self.clock, outbox.wake,
                            count_step=self.metrics.count_step,
                            on_incident_error=self.metrics.count_incident_error)
            engine.resave(self.engine.unsaved())
            engine.unconfirmed = set(self.engine.unconfirmed)
            engine.link_key = self.link_key
            try:  # every member state, not the changes since an earlier term's read
                await asyncio.wait_for(self._adopt_member_states(everything=True), 5.0)
            except Exception as exc:  # the rules wait for states they do not know
                self._member_mark = None  # and housekeeping's next read takes them all
                log.warning("cluster_states_unavailable",
                            error=f"{type(exc).__name__}: {exc}"[:300])
            await engine.load()
            await engine.restore_notes()
            await engine.restore_escalations()
            outbox.on_sent = engine.delivered
            engine.apply_config(self.config)
            await self.outbox.stop()
            self.engine, self.outbox = engine, outbox
            if hasattr(self.store.inner, "fence"):  # SPEC 9: every write of this term checks
                self.store.inner.fence = (self.leadership.name, self.leadership.me,
                                          self.leadership.term)
            outbox.start()
            self._term_stop = asyncio.Event()
            self._engine_task = asyncio.create_task(engine.run(self._term_stop), name="engine")
            self.leading = True
            log.info("leadership_gained", instance=self.leadership.me)
            return
        self.leading = False
        if self._term_stop is not None:
            self._term_stop.set()
        await self.outbox.stop()
        if self._engine_task is not None:
            self._engine_task.cancel()
            await asyncio.gather(self._engine_task, return_exceptions=True)
        if self.stop_event.is_set():  # our own clean stop: nothing an operator must look at
            log.info("leadership_stopped", instance=self.leadership.me)
        else:
            log.warning("leadership_lost", instance=self.leadership.me,
                        holder=self.leadership.holder)

    def _quorum_checks(self) -> dict[str, Any]:
        """Checks with `vantage_quorum` > 1, by id: once per config, not once a second (a
        walk of 50,000 checks' models is ~17 ms of the loop)."""
        if self._quorum[0] is not self.config:
            self._quorum = (self.config,
                            {c.id: c for c in self.config.checks if c.vantage_quorum > 1})
        return self._quorum[1]

    async def _vantage(self) -> None:
        """Share this instance's view of quorum checks; the leader counts the votes."""
        quorum = self._quorum_checks()
        if not quorum:
            self.engine.unconfirmed = set()
            return
        now = self.clock()
        mine = {c: self.states[c].hard_state.name for c in quorum if c in self.states}
        await self.store.save_vantage(self.leadership.me, mine, now)
        if not self.leading:
            return
        freshest = min((c.interval or 30.0) for c in quorum.values())
        votes = await self.store.load_vantage(since=now - max(3 * freshest, 10.0))
        unconfirmed = set()
        for check_id, check in quorum.items():
            failing = sum(1 for state in votes.get(check_id, {}).values() if state != "OK")
            if failing < check.vantage_quorum:
                unconfirmed.add(check_id)
        changed = unconfirmed ^ self.engine.unconfirmed
        self.engine.unconfirmed = unconfirmed
        for check_id in changed:
            self.engine.system_changed(quorum[check_id].system)

    async def _count_undelivered(self) -> None:
        """Messages given up on stay visible: a gauge, the API and `hismon status`."""
        summary = await self.store.delivery_summary(self.clock() - 86400)
        given_up = [row for row in summary if row[2] != "sent"]
        self.source.outbox_undelivered = sum(row[3] for row in given_up)
        # A channel is failing while its newest given-up message is newer than its newest
        # delivered one (self_alerts: "a message became undeliverable" until it delivers).
        last_sent: dict[str, float] = {}
        for notifier, _kind, status, _count, newest in summary:
            if status == "sent":
                last_sent[notifier] = max(last_sent.get(notifier, 0.0), newest)
        self._failing_channels = sorted(
            {(notifier, kind) for notifier, kind, _status, _count, newest in given_up
             if kind not in SELF_KINDS and newest > last_sent.get(notifier, 0.0)})

    def _stale_checks(self, now: float) -> list[tuple[str, float | None]]:
        """Probed checks whose last result is too old (SPEC 9), when this instance runs them
        or leads (the leader judges every check by the states the members saved)."""
        stale: list[tuple[str, float | None]] = []
        for _ in self._stale_steps(now, stale):
            pass
        return stale

    def _stale_steps(self, now: float, stale: list[tuple[str, float | None]]) -> Iterator[None]:
        """`_stale_checks` a group of checks with the same bound at a time, yielding between
        them (`monitor.runtime.staleness`): a group whose oldest result is within its bound
        is passed over without a Python step per check."""
        states = self.states
        groups = self._self_stale.groups(
            (self.config, self.scheduler.owned, self.leading), self.config,
            lambda c: c.type != "heartbeat" and (self.leading or self.scheduler.owns(c.id)),
            self._share_lag)
        for check in self._self_stale.pushed:  # judged by its own expect_every + grace
            if check.type == "heartbeat" or check.id not in states:
                continue
            verdict = check.overdue(self.ctx, now, self.config.site.tz)
            if verdict is not None and verdict.state is State.UNKNOWN:
                stale.append((check.id, self.ctx.heartbeats.get(check.id)))
        for interval, timeout, lag, ids in groups:
            yield
            group = staleness.present(states, ids)
            bound = stale_after(interval, timeout)
            oldest, never_ran = staleness.oldest_run(group)
            if never_ran:
                oldest = self.started_at if oldest is None else min(oldest, self.started_at)
            if oldest is None or now - oldest - lag <= bound:
                continue  # the same test as below, for the oldest: none of the group is stale
            for state in group:
                since = state.last_run if state.last_run is not None else self.started_at
                if now - since - lag > bound:
                    stale.append((state.check_id, state.last_run))

    async def _watch_self(self) -> None:
        """SPEC 9 self_alerts: tell IT when hismon itself cannot watch, record or deliver."""
        if not self.config.self_alerts or not self.ready:
            return
        now = self.clock()
        lost = self.membership.lost if self.membership is not None else set()
        live = len(self.membership.members) if self.membership is not None else None
        quorum_short = [] if live is None else [
            (c.id, c.vantage_quorum, live)
            for c in (self._quorum_checks().values() if live >= 1 else self.config.checks)
            if c.vantage_quorum > live]
        stale: list[tuple[str, float | None]] = []
        for _ in self._stale_steps(now, stale):
            await asyncio.sleep(0)  # a few ms of the loop per step at most
        problems = assess(now=now, stale=stale, lost_members=lost,
                          store_down_since=self._store_down_since,
                          unrecorded=self.store.unrecorded(),
                          undeliverable=self._failing_channels, quorum_short=quorum_short,
                          exhausted=self._exhausted(now),
                          store_replaced=self.store_identity_error)
        alerts = self.selfwatch.unsent + self.selfwatch.decide(problems, now, self.leading)
        self.selfwatch.unsent = []
        targets = self_alert_notifiers(self.config)
        for alert in alerts:
            if alert.direct:
                await self._alert_directly(alert, targets, now)
                continue
            messages = self.selfwatch.messages(alert, targets, self.config.site,
                                               self.config.site.language, now)
            log.warning("self_alert", kind=alert.kind, direct=alert.direct,
                        problems=[p.key for p in alert.problems])
            try:
                await self.store.enqueue(messages)
                self.outbox.wake()
            except Exception as exc:
                log.error("self_alert_enqueue_failed", error=f"{type(exc).__name__}: {exc}"[:200])
                self.selfwatch.unsent.append(alert)

    async def _alert_directly(self, alert: Any, targets: list[Any], now: float) -> None:
        """Past the store and outbox. Out of descriptors, on the reserve kept for it (even
        rendering opens a template file); a degraded alert that reached nobody then is tried
        again next second, a bounded number of times."""
        exhausted = any(p.key.startswith("exhausted:") for p in alert.problems)
        if exhausted:
            self.fd_reserve.release()
        sent = 0
        try:
            messages = self.selfwatch.messages(alert, targets, self.config.site,
                                               self.config.site.language, now)
            log.warning("self_alert", kind=alert.kind, direct=True,
                        problems=[p.key for p in alert.problems])
            sent = await self.selfwatch.send_direct(
                messages, {n.id: n for n in targets}, self.outbox.notify_context)
        except Exception as exc:
            log.error("self_alert_failed", kind=alert.kind,
                      error=f"{type(exc).__name__}: {exc}"[:200])
        finally:
            self.fd_reserve.take()
        if exhausted and not sent and alert.kind == "monitor_degraded" \
                and self._direct_retries < 60 and self.selfwatch.store_episode.started_at:
            self._direct_retries += 1
            self.selfwatch.unsent.append(alert)
        elif sent:
            self._direct_retries = 0

    def _exhausted(self, now: float) -> tuple[str, str] | None:
        """(resource, usage) while probes fail for want of hismon's own descriptors."""
        log_ = self.ctx.exhaustion
        if not log_.active(now):
            return None
        usage = fd_usage() if log_.what == "fd" else None
        if usage is not None and not usage.exhausted and log_.usage is not None:
            usage = log_.usage  # say what it was when probes failed, not the calm after
        return log_.what, usage.describe() if usage is not None else ""

    def _share_fresh_states(self) -> None:
        """With shards or a cluster, the leader judges the others' checks by the states they
        save. Saved only on a hard change, a check that stays OK (or keeps failing) would
        look unknown or stale to the leader, and an incident could never recover: so each
        owned check's state is saved again once it has new results at least every
        `max(interval, 5 s)`, well inside the staleness bound (SPEC 9)."""
        if self.shard is None and self.membership is None:
            return
        dirty: set[str] = set()
        for check_id, check in self.scheduler.probing.items():
            state = self.states.get(check_id)
            if state is None or state.last_run is None or check.interval is None:
                continue
            if state.last_run - self._shared_runs.get(check_id, float("-inf")) \
                    >= max(check.interval, 5.0):
                dirty.add(check_id)
                self._shared_runs[check_id] = state.last_run
        self.engine.resave(dirty)

    def _share_lag(self, check_id: str, interval: float) -> float:
        """How old another member's saved `last_run` may be while it probes on time (it saves
        again every max(interval, 5 s), `_share_fresh_states`): the leader judges staleness
        of those checks with that much slack, so a takeover within TTL + interval is not
        mistaken for a check nobody probes."""
        if (self.shard is None and self.membership is None) or self.scheduler.owns(check_id):
            return 0.0
        return max(interval, 5.0) + 1.0  # + the owner's and our housekeeping second

    async def _follow(self) -> None:
        """What a follower (or a sharded leader) learns from the shared store each second."""
        self._share_fresh_states()
        if self.leading:
            await self.engine.save_states()
        self.ctx.heartbeats.update(await self.store.load_heartbeats())
        await self._count_undelivered()
        await self._vantage()
        if not self.leading:
            view = self.engine
            await view.save_states()
            found = {i.system: i for i in await self.store.list_incidents(status="open")
                     if not i.drill}
            # Leadership may have been gained during the awaits: the new leader's engine
            # (whose applier holds its `open` dict) must never get the follower's view.
            if not self.leading and view is self.engine:
                view.open.clear()
                view.open.update(found)
            await self._adopt_pushed()
            return
        await self._adopt_member_states()

    async def _adopt_member_states(self, everything: bool = False) -> None:
        """The leader judges checks probed by other members (shards, cluster) by the states
        they saved (SPEC 9). A new leader reads all of them before its engine's first tick
        (`everything`); then, each second, only those saved since its last read: members
        save every owned check again every max(interval, 5 s), so reading all of them each
        second cost the leader O(checks) decoded rows a second for nothing."""
        if self.shard is None and self.membership is None:
            return
        async with self._adopting:
            saved, mark = await self.store.load_check_states_since(
                None if everything else self._member_mark)
            self._member_mark = mark
            checks = self.config._index("checks", self.config.checks)
            for check_id, record in saved.items():
                check = checks.get(check_id)
                if check is None or self.scheduler.owns(check_id):
                    continue
                mine = self.states.get(check_id)
                theirs = self._adopted(check, record, mine)
                if mine is None or (mine.hard_state, mine.hard) != (theirs.hard_state,
                                                                    theirs.hard):
                    self.engine.system_changed(check.system)

    def _adopted(self, check: Any, record: dict[str, Any], mine: CheckState | None
                 ) -> CheckState:
        """Another instance's saved state in place of ours; `stale` stays ours until
        `_mark_stale` judges the new `last_run`, so going fresh again is a change it sees."""
        theirs = from_record(check.id, check.system, check.type, record)
        theirs.probed = True
        theirs.stale = mine.stale if mine is not None else False
        self.states[check.id] = theirs
        return theirs

    async def _adopt_pushed(self) -> None:
        """A follower takes passive checks' states from the store: only the leader receives
        pushes, and the follower that takes over must not find them all OK (SPEC 9, 15).
        Those saved since the last read: the first read (and one after a replaced store)
        takes them all."""
        if self._any_pushed[0] is not self.config:  # once per config, not every second
            self._any_pushed = (self.config, any(c.pushed for c in self.config.checks))
        if not self._any_pushed[1]:
            return
        async with self._adopting:
            saved, self._pushed_mark = await self.store.load_check_states_since(
                self._pushed_mark)
            checks = self.config._index("checks", self.config.checks)
            for check_id, record in saved.items():
                check = checks.get(check_id)
                if check is not None and check.pushed:
                    self._adopted(check, record, self.states.get(check_id))

    def _restore_states(self, saved: dict[str, dict[str, Any]]) -> None:
        """A restarted daemon keeps confirmed failures, so no incident is lost or reopened."""
        for check in self.config.checks:
            record = saved.get(check.id)
            if record is not None:
                self.states[check.id] = from_record(check.id, check.system, check.type, record)

    def _mark_stale(self) -> None:
        """Checks without a fresh result (a dead --shard instance, an overloaded scheduler) are
        stale (SPEC 9); pushed checks judge freshness by their own `expect_every`."""
        for _ in self._mark_stale_steps():
            pass

    def _mark_stale_steps(self) -> Iterator[None]:
        """`_mark_stale` a group of checks with the same bound at a time, yielding between
        them: a group is walked only when its oldest result is past the bound or one of it is
        stale now (`monitor.runtime.staleness`)."""
        now = self.clock()
        states = self.states
        for interval, timeout, lag, ids in self._probed_stale.groups(
                (self.config, self.scheduler.owned), self.config, lambda c: True,
                self._share_lag):
            yield
            group = staleness.present(states, ids)
            seen_at = now - lag
            oldest, _ = staleness.oldest_run(group)
            if (oldest is None or seen_at - oldest <= stale_after(interval, timeout)) \
                    and not staleness.any_stale(group):
                continue  # mark_stale would change none of them
            for state in group:
                if mark_stale(state, interval, timeout, seen_at):
                    log.warning("check_stale" if state.stale else "check_fresh",
                                check=state.check_id, system=state.system)
                    self.engine.system_changed(state.system)

    async def _housekeeping(self) -> None:
        """Once a second: persist changed states, refresh metrics, watch the store and config."""
        while not self.stop_event.is_set():
            try:
                # Bounded: a locked or unreachable store must show up here, not hang it.
                await asyncio.wait_for(self.store.ping(), 2.0)
                problem = await asyncio.wait_for(self.store.identity_problem(), 5.0)
                if problem is not None:
                    await adopt_replaced_store(self, problem)
                await asyncio.wait_for(self._follow(), 5.0)
                for _ in self._mark_stale_steps():
                    await asyncio.sleep(0)  # a few ms of the loop per step at most
                await asyncio.wait_for(self._save_samples(), 5.0)
                self.store_error = self.engine.last_error if self.leading else None
                self._store_down_since = None
                unrecorded = self.store.unrecorded()
                if unrecorded is not None:
                    self.store_error = f"cannot record: {unrecorded.error}"
            except Exception as exc:
                self.store_error = f"{type(exc).__name__}: {exc}"[:300]
                log.error("store_unavailable", error=self.store_error)
                if self._store_down_since is None:
                    self._store_down_since = self.clock()
            if self._history_task is None or self._history_task.done():
                # Its own task: a slow or locked store delays the history, never housekeeping.
                self._history_task = asyncio.create_task(self._history_tick(),
                                                         name="history")
            self.refresh_source()
            try:
                await asyncio.wait_for(self._watch_self(), 10.0)
            except Exception as exc:  # never let the self-watch stop housekeeping
                log.error("self_watch_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            if self._reloader is not None and self._watch.changed():
                self._reloader.request("file changed")  # loads in a thread; never awaited here
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), 1.0)

    async def _save_samples(self) -> None:
        """Forecast samples of the last second to the store; kept for the next try on error."""
        rows, keep = self.scheduler.forecasts.take_pending()
        if not rows:
            return
        try:
            await self.store.add_samples(rows, keep)
        except BaseException:
            self.scheduler.forecasts.put_back(rows)
            raise

    async def reload(self, reason: str = "SIGHUP") -> bool:
        """Load the config off the loop (requests during a load coalesce into one more)."""
        if self._reloader is None:
            return False
        sdnotify.reloading()
        return await self._reloader.request(reason)

    def _reject_reload(self, exc: ConfigError) -> None:
        self.metrics.config_reload_ok.set(0)
        for problem in exc.problems:
            log.error("config_reload_rejected", problem=str(problem))
        sdnotify.ready("config reload rejected, running the previous config")

    def _apply_reloaded(self, config: Config, reason: str) -> None:
        """The swap: synchronous on the loop, so nothing runs between its steps."""
        self.config = config
        self.store_identity_error = None  # an operator looked (storewatch)
        self.leadership.ttl = config_lease_ttl(config)
        if self.membership is not None:
            self.membership.ttl = self.leadership.ttl
            self.scheduler.owned = self.membership.reassign() | self._everywhere() \
                if self.membership.members \
                else {c.id for c in config.checks}
        self.scheduler.apply_config(config)
        self.alerts.forget({c.id for c in config.checks if c.pushed})
        self.engine.apply_config(config)
        self.outbox.apply_config(config)
        self.metrics.config_reload_ok.set(1)
        self.metrics.config_reload_time.set(time.time())
        self.metrics.init_notifier_series(n.id for n in config.notifiers)
        self.metrics.check_lines.forget(self.states)
        self._watch.follow(config.watch_paths)
        log.info("config_reloaded", reason=reason, checks=len(config.checks),
                 files=len(config.files))
        sdnotify.ready(f"{len(config.checks)} checks")

    def _probe_budget(self) -> int:
        """Probes allowed in flight: the descriptor limit less the store's, the notifiers' and
        the HTTP server's share (`monitor.core.exhaustion.probe_budget`); set once at start,
        like the HTTP connection cap."""
        server = self._server
        if server is not None:
            fd_limit, connections, accept = server.fd_limit, server.max_connections, \
                server.backlog
        else:
            fd_limit, connections, accept = fd_usage().limit or 65536, 0, 0
        store = getattr(self.store.inner, "pool_size", STORE_FDS)
        return probe_budget(fd_limit, store, len(self.config.notifiers), connections, accept)

    async def _start_http(self) -> None:
        from monitor.runtime.webside import DaemonWeb
        from monitor.web.app import build_app
        from monitor.web.server import EmbeddedServer

        host, port = self.config.server.host_port
        server = EmbeddedServer(build_app(DaemonWeb(self)), host, port,
                                checks=len(self.config.checks),
                                header_timeout=self.config.server.header_timeout,
                                max_connections=self.config.server.max_connections)
        self._server = server
        sockets = [self._listen_socket] if self._listen_socket is not None else None
        self._tasks.append(asyncio.create_task(server.serve(sockets), name="http"))
        for _ in range(200):
            if server.started or server.failed:
                break
            await asyncio.sleep(0.025)
        if not server.started:
            raise OSError(f"cannot listen on {self.config.server.listen}")

    async def stop(self) -> None:
        sdnotify.stopping()
        self.stop_event.set()
        self.scheduler.shutdown()
        if self._server is not None:
            self._server.should_exit = True
        lead_task = getattr(self, "_lead_task", None)
        if lead_task is not None:
            # Stops the engine and outbox, then releases the lease: a standby takes over now.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(lead_task, 10)
        await self.outbox.stop()
        for task in self._tasks:
            if task.get_name() != "http":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.engine.save_states()
        with contextlib.suppress(Exception):
            if self._history_task is not None:
                await asyncio.wait_for(asyncio.shield(self._history_task), 5.0)
            await asyncio.wait_for(self.history.flush_all(), 5.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._save_samples(), 5.0)
        await self.ctx.close()
        self.fd_reserve.release()
        await self.store.close()
        if self.ready:
            log.info("daemon_stopped")

    async def run_forever(self) -> None:
        """Foreground run: until SIGTERM/SIGINT; SIGHUP reloads."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        try:
            await self.start()
            await self.stop_event.wait()
        finally:
            await self.stop()


_BIND_REASONS = {
    errno.EADDRINUSE: "address already in use (is another hismon or program on that port?)",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
    errno.EADDRNOTAVAIL: "no such address on this machine",
}


def listen_socket(host: str, port: int, listen: str) -> socket.socket:
    """The HTTP server's socket, bound now: `cannot listen on 127.0.0.1:9464: address
    already in use (...)` is the one line a busy port gives."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = _BIND_REASONS.get(exc.errno or 0) or exc.strerror or str(exc)
        raise OSError(f"cannot listen on {listen}: {reason}") from None
    sock.setblocking(False)
    return sock


def config_file_path(path: str) -> str:
    return str(Path(path).resolve())
