"""hismon tells IT about itself (SPEC 9 `self_alerts`): `monitor_degraded` / `monitor_ok`.

A monitor that cannot probe, record or deliver is worse than none if nobody knows: the
status page would say "OK" for systems nobody watches. The conditions are the monitor's,
never the hospital's: checks gone stale, a cluster member lost, the store unreachable for
more than a minute, a message that became undeliverable, probes failing because hismon itself
is out of file descriptors (or memory). They open an *episode*; its first
problem sends `monitor_degraded` to the `self_alerts` targets, and when every problem has
cleared `monitor_ok` follows: one pair per episode, however many problems came and went in
between. Messages about the monitor itself never count as undeliverable (no loop).

The store-unreachable alert cannot go through the store-backed outbox, so it is sent by
every instance directly (each says which instance it is); so is "out of file descriptors"
(each instance has its own, and the store may need some to write). The others go through the
outbox, enqueued by the leader only, so three instances do not send three copies.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from monitor.core.models import OutboxMessage
from monitor.core.timefmt import local_time
from monitor.core.types import MessageKind
from monitor.delivery.messages import MessageRenderer
from monitor.store.buffered import Unrecorded
from notifiers.base import NotifierBase, NotifyContext, OutgoingMessage

log = structlog.get_logger("hismon.selfwatch")

STORE_GRACE = 60.0
"""The store may be unreachable this long (a restart, a failover) before IT is told."""
UNRECORDED_GRACE = 30.0
"""The store may refuse writes this long before IT is told that hismon cannot record.
Shorter than STORE_GRACE: a refused write has already waited out SQLite's busy timeout, and
until the store is back the record exists only in memory (lost on a restart)."""

SELF_KINDS: frozenset[MessageKind] = frozenset({MessageKind.MONITOR_DEGRADED,
                                               MessageKind.MONITOR_OK})


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason the monitor is degraded; `key` identifies it across ticks."""

    key: str
    en: str
    zh: str

    @property
    def direct(self) -> bool:
        """Sent by this instance past the store and outbox: the store is down, or hismon is
        out of descriptors (the store and the outbox may need some it does not have)."""
        return self.key == "store" or self.key.startswith("exhausted:")


def assess(
    *,
    now: float,
    stale: Iterable[tuple[str, float | None]] = (),
    lost_members: Iterable[str] = (),
    store_down_since: float | None = None,
    undeliverable: Iterable[tuple[str, str]] = (),
    quorum_short: Iterable[tuple[str, int, int]] = (),
    exhausted: tuple[str, str] | None = None,
    unrecorded: Unrecorded | None = None,
    store_replaced: str | None = None,
) -> list[Problem]:
    """The monitor's problems now (pure).

    `stale`: (check id, last result time); `undeliverable`: (notifier, kind) of messages
    given up on; `quorum_short`: (check id, quorum, live members) where fewer members are
    alive than a check's `vantage_quorum` asks for; `exhausted`: (resource, usage) while
    probes fail because hismon itself is out of descriptors or memory (issue 11 item 2);
    `unrecorded`: the store's `monitor.store.buffered.Unrecorded` while it refuses writes
    (incidents and messages go on from memory), else None.
    `store_replaced`: what happened to a state database deleted or replaced (item 6).
    """
    problems: list[Problem] = []
    stale = sorted(stale)
    if stale:
        names = ", ".join(c for c, _ in stale[:10]) + (" …" if len(stale) > 10 else "")
        problems.append(Problem("stale", f"{len(stale)} checks not probed on time: {names}",
                                f"{len(stale)} 项检查未按时探测：{names}"))
    for member in sorted(lost_members):
        problems.append(Problem(f"member:{member}", f"cluster member {member} lost",
                                f"集群成员 {member} 失联"))
    if store_down_since is not None and now - store_down_since >= STORE_GRACE:
        minutes = int((now - store_down_since) // 60)
        problems.append(Problem("store", f"state store unreachable for {minutes} min: "
                                         "incidents may not be recorded",
                                f"状态库已 {minutes} 分钟无法访问：事件可能无法记录"))
    elif unrecorded is not None and now - unrecorded.since >= UNRECORDED_GRACE:
        minutes = int((now - unrecorded.since) // 60)
        full = (f"; journal full, {unrecorded.refused} writes refused"
                if unrecorded.refused else "")
        full_zh = f"；内存日志已满，{unrecorded.refused} 次写入被拒绝" if unrecorded.refused else ""
        problems.append(Problem(
            "store",
            f"hismon cannot record: the state store refuses writes for {minutes} min "
            f"({unrecorded.error[:120]}); incidents and messages go on from memory, "
            f"{unrecorded.waiting} changes wait to be written (lost if hismon restarts)"
            + full,
            f"hismon 无法记录：状态库已 {minutes} 分钟拒绝写入（{unrecorded.error[:120]}）；"
            f"事件与消息暂存内存继续处理，{unrecorded.waiting} 项变更待写入（重启将丢失）"
            + full_zh))
    if store_replaced is not None:
        problems.append(Problem("store_replaced", f"state store deleted or replaced: "
                                                  f"{store_replaced}",
                                f"状态库被删除或替换：{store_replaced}"))
    failed = sorted({n for n, kind in undeliverable if kind not in SELF_KINDS})
    if failed:
        problems.append(Problem("undeliverable",
                                "messages could not be delivered through " + ", ".join(failed),
                                "消息无法通过以下渠道送达：" + "、".join(failed)))
    if exhausted is not None:
        what, usage = exhausted
        if what == "fd":
            problems.append(Problem(
                "exhausted:fd", f"hismon is out of file descriptors ({usage}): probes cannot "
                "run and their checks show UNKNOWN; raise LimitNOFILE or find what holds them",
                f"hismon 文件描述符耗尽（{usage}）：探测无法进行，相关检查显示 UNKNOWN；"
                "请提高 LimitNOFILE 或查明占用者"))
        elif what == "loop":
            problems.append(Problem(
                "exhausted:loop", "hismon is overloaded: its event loop was held up past "
                "probes' time limits, and those probes show UNKNOWN instead of judging their "
                "targets; give hismon more CPU or probe less often",
                "hismon 过载：事件循环被阻塞超过探测时限，相关检查显示 UNKNOWN 而不作判断；"
                "请为 hismon 增加 CPU 或降低探测频率"))
        else:
            problems.append(Problem(
                f"exhausted:{what}", "hismon is out of socket buffers or memory: probes "
                "cannot run and their checks show UNKNOWN",
                "hismon 套接字缓冲区或内存耗尽：探测无法进行，相关检查显示 UNKNOWN"))
    for check, quorum, live in sorted(quorum_short):
        problems.append(Problem(f"quorum:{check}",
                                f"{check} needs {quorum} vantage points, {live} alive",
                                f"{check} 需要 {quorum} 个探测点，仅 {live} 个在线"))
    return problems


@dataclass
class Episode:
    """What the watch has said: the open episode's start and every problem seen in it."""

    number: int = 0
    started_at: float | None = None
    seen: dict[str, Problem] = field(default_factory=dict)


def transition(episode: Episode, problems: list[Problem], now: float) -> MessageKind | None:
    """Advance the episode (pure but for `episode`): 'monitor_degraded', 'monitor_ok' or None."""
    if problems and episode.started_at is None:
        episode.number += 1
        episode.started_at = now
        episode.seen = {p.key: p for p in problems}
        return MessageKind.MONITOR_DEGRADED
    if problems:
        for p in problems:
            episode.seen.setdefault(p.key, p)
        return None
    if episode.started_at is not None:
        return MessageKind.MONITOR_OK
    return None


@dataclass(frozen=True, slots=True)
class Alert:
    """One decided self-alert: its kind, whether it bypasses the store, what it names."""

    kind: MessageKind
    direct: bool
    problems: tuple[Problem, ...]
    episode: int
    started_at: float


class SelfWatch:
    """Runs `transition` for the outbox-borne and the direct (store) episodes."""

    def __init__(self, instance: str, renderer: MessageRenderer | None = None) -> None:
        self.instance = instance
        self.renderer = renderer or MessageRenderer()
        self.episode = Episode()
        self.store_episode = Episode()
        self.problems: list[Problem] = []
        self.unsent: list[Alert] = []
        """Outbox-borne alerts whose enqueue failed: tried again next tick, never dropped."""

    def decide(self, problems: list[Problem], now: float, leading: bool) -> list[Alert]:
        """The alerts to send now. Only the leader keeps the outbox-borne episode (one copy
        per cluster); every instance keeps its own store episode."""
        self.problems = problems
        alerts: list[Alert] = []
        lanes = [(self.store_episode, True, [p for p in problems if p.direct])]
        if leading:
            lanes.append((self.episode, False, [p for p in problems if not p.direct]))
        for episode, direct, mine in lanes:
            kind = transition(episode, mine, now)
            if kind is None:
                continue
            named = mine if kind == "monitor_degraded" else list(episode.seen.values())
            alerts.append(Alert(kind, direct, tuple(named), episode.number,
                                episode.started_at or now))
            if kind == "monitor_ok":
                episode.started_at = None
        return alerts

    def messages(self, alert: Alert, targets: list[NotifierBase], site: Any, language: str,
                 now: float) -> list[OutboxMessage]:
        """One message per target notifier, keyed by episode so a restart repeats nothing."""
        from monitor.core.durations import format_duration

        lang = language if language in ("en", "zh") else "en"
        context = {
            "site": {"name": site.name},
            "instance": self.instance,
            "problems": [getattr(p, lang) for p in alert.problems],
            "since_local": local_time(alert.started_at, site.tz, seconds=True),
            "duration": format_duration(max(now - alert.started_at, 0.0), lang),
            "recovered": alert.kind == "monitor_ok",
        }
        title, text = self.renderer.render(alert.kind, lang, context)
        scope = "store" if alert.direct else "monitor"
        out = []
        for notifier in targets:
            key = f"{scope}:{int(alert.started_at)}:{alert.episode}:{alert.kind}:{notifier.id}"
            if alert.direct:  # every instance sends its own
                key += ":" + hashlib.blake2b(self.instance.encode(), digest_size=4).hexdigest()
            out.append(OutboxMessage(
                idempotency_key=key, notifier=notifier.id, kind=MessageKind(alert.kind),
                created_at=now, next_attempt_at=now,
                payload={"recipient": notifier.id, "title": title, "text": text}))
        return out

    async def send_direct(self, messages: list[OutboxMessage],
                          notifiers: dict[str, NotifierBase], ctx: NotifyContext) -> int:
        """Deliver without the store (it is the thing that is down); one try per target."""
        sent = 0
        for message in messages:
            notifier = notifiers[message.notifier]
            outgoing = OutgoingMessage(kind=message.kind,
                                       idempotency_key=message.idempotency_key,
                                       recipient=notifier.id, title=message.payload["title"],
                                       text=message.payload["text"])
            try:
                async with asyncio.timeout(notifier.timeout + 1):
                    await notifier.send(outgoing, ctx)
                sent += 1
            except Exception as exc:
                log.error("self_alert_failed", notifier=notifier.id, kind=message.kind,
                          error=f"{type(exc).__name__}: {exc}"[:200])
        return sent


def self_alert_notifiers(config: Any) -> list[NotifierBase]:
    """`self_alerts` targets as notifiers, each once (notifier ids and role:NAME)."""
    ids: list[str] = []
    for target in config.self_alerts:
        names = config.roles.get(target[5:], []) if target.startswith("role:") else [target]
        ids.extend(n for n in names if n not in ids)
    return [config.notifier(n) for n in ids]
