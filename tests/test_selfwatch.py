"""hismon tells IT about itself (SPEC 9 `self_alerts`): one monitor_degraded/monitor_ok pair
per episode, never about its own messages, the store alert sent past the store."""

from __future__ import annotations

import asyncio

import pytest

from monitor.config.loader import ConfigError, load_config_text
from monitor.delivery.messages import MessageRenderer
from monitor.runtime.selfwatch import STORE_GRACE, SelfWatch, assess, self_alert_notifiers
from notifiers.base import NotifyContext
from tests.conftest import HttpTarget, Receiver, free_port


def test_nothing_wrong_means_no_problem() -> None:
    assert assess(now=100.0) == []


def test_each_condition_is_a_problem_with_words_in_both_languages() -> None:
    problems = assess(now=1000.0, stale=[("his-web", 900.0)], lost_members=["b:9464"],
                      store_down_since=1000.0 - STORE_GRACE, undeliverable=[("sms", "outage_it")],
                      quorum_short=[("lis-web", 2, 1)])
    keys = [p.key for p in problems]
    assert keys == ["stale", "member:b:9464", "store", "undeliverable", "quorum:lis-web"]
    assert "his-web" in problems[0].en and "his-web" in problems[0].zh
    assert "sms" in problems[3].en


def test_each_resource_hismon_runs_out_of_has_its_own_words() -> None:
    """Descriptors, buffers and loop time: IT is told which, and what to do, in both languages."""
    words = {what: assess(now=1.0, exhausted=(what, "20000 of 20000 in use"))
             for what in ("fd", "memory", "loop")}
    assert {what: [p.key for p in found] for what, found in words.items()} == {
        "fd": ["exhausted:fd"], "memory": ["exhausted:memory"], "loop": ["exhausted:loop"]}
    assert "20000 of 20000" in words["fd"][0].en and "LimitNOFILE" in words["fd"][0].zh
    assert "overloaded" in words["loop"][0].en and "more CPU" in words["loop"][0].en
    assert "过载" in words["loop"][0].zh


def test_a_short_store_blip_is_not_worth_a_page() -> None:
    assert assess(now=1000.0, store_down_since=1000.0 - STORE_GRACE + 1) == []


def test_undeliverable_self_alerts_do_not_raise_another_self_alert() -> None:
    assert assess(now=1.0, undeliverable=[("it", "monitor_degraded"), ("it", "monitor_ok")]) == []


def test_one_pair_per_episode_however_problems_come_and_go() -> None:
    watch = SelfWatch("a:9464")
    stale = assess(now=0, stale=[("x", None)])
    lost = assess(now=0, lost_members=["b"])
    kinds = []
    for now, problems in [(0, []), (1, stale), (2, stale + lost), (3, lost), (4, []), (5, []),
                          (6, lost), (7, [])]:
        kinds += [(now, a.kind) for a in watch.decide(problems, now, leading=True)]
    assert kinds == [(1, "monitor_degraded"), (4, "monitor_ok"), (6, "monitor_degraded"),
                     (7, "monitor_ok")]


def test_the_ok_message_names_everything_the_episode_had() -> None:
    watch = SelfWatch("a:9464")
    watch.decide(assess(now=0, stale=[("x", None)]), 0, leading=True)
    watch.decide(assess(now=1, lost_members=["b"]), 1, leading=True)
    (ok,) = watch.decide([], 2, leading=True)
    assert ok.kind == "monitor_ok" and {p.key for p in ok.problems} == {"stale", "member:b"}


def test_only_the_leader_sends_outbox_alerts_but_everyone_sends_the_store_alert() -> None:
    follower = SelfWatch("b:9464")
    problems = assess(now=100, lost_members=["c"], store_down_since=0)
    alerts = follower.decide(problems, 100, leading=False)
    assert [(a.kind, a.direct) for a in alerts] == [("monitor_degraded", True)]


def _config(receiver: Receiver, extra: str = "") -> str:
    return f"""
site: {{name: Test Hospital, timezone: Asia/Shanghai, language: en}}
roles: {{it_oncall: [it, it2]}}
self_alerts: [role:it_oncall, it]
systems: [{{id: his, name: HIS}}]
notifiers:
  - {{id: it, type: webhook, url: "{receiver.url('it')}"}}
  - {{id: it2, type: webhook, url: "{receiver.url('it2')}"}}
{extra}
"""


async def test_keys_differ_per_episode_and_the_store_alert_per_instance(
    receiver: Receiver
) -> None:
    config = load_config_text(_config(receiver), "t.yaml")
    targets = self_alert_notifiers(config)
    assert [n.id for n in targets] == ["it", "it2"], "a notifier named twice is sent once"
    a, b = SelfWatch("a:1"), SelfWatch("b:1")
    first = a.decide(assess(now=0, lost_members=["x"]), 0, leading=True)[0]
    keys1 = {m.idempotency_key for m in a.messages(first, targets, config.site, "en", 0)}
    a.decide([], 1, leading=True)
    second = a.decide(assess(now=2, lost_members=["x"]), 2, leading=True)[0]
    keys2 = {m.idempotency_key for m in a.messages(second, targets, config.site, "en", 2)}
    assert keys1.isdisjoint(keys2)
    store_a = a.decide(assess(now=100, store_down_since=0), 100, leading=True)
    store_b = b.decide(assess(now=100, store_down_since=0), 100, leading=False)
    key_a = a.messages(store_a[0], targets, config.site, "en", 100)[0].idempotency_key
    key_b = b.messages(store_b[0], targets, config.site, "en", 100)[0].idempotency_key
    assert key_a != key_b


async def test_the_store_alert_is_delivered_without_the_store(receiver: Receiver) -> None:
    import httpx

    config = load_config_text(_config(receiver), "t.yaml")
    targets = self_alert_notifiers(config)
    watch = SelfWatch("a:9464", MessageRenderer())
    (alert,) = watch.decide(assess(now=200, store_down_since=0), 200, leading=False)
    messages = watch.messages(alert, targets, config.site, "zh", 200)
    async with httpx.AsyncClient(trust_env=False) as http:
        sent = await watch.send_direct(messages, {n.id: n for n in targets},
                                       NotifyContext(http=http, site_name="t"))
    assert sent == 2
    await receiver.wait_for(lambda: len(receiver.messages) == 2, timeout=5)
    body = receiver.messages[0]
    assert body["kind"] == "monitor_degraded"
    assert "状态库" in body["text"] and "a:9464" in body["text"]


def test_self_alerts_never_go_to_departments_and_name_known_targets() -> None:
    text = """
site: {name: H}
self_alerts: [departments, nobody]
notifiers: [{id: it, type: console}]
"""
    with pytest.raises(ConfigError) as err:
        load_config_text(text, "t.yaml")
    problems = [str(p) for p in err.value.problems]
    assert any("self_alerts[0]" in p and "departments" in p for p in problems), problems
    assert any("self_alerts[1]" in p and "nobody" in p for p in problems), problems


@pytest.mark.slow
async def test_a_channel_that_gives_up_tells_it_and_clears_when_it_delivers(
    http_target: HttpTarget, receiver: Receiver, daemon_factory
) -> None:
    """The ward's channel rejects the outage notice for good: IT hears that hismon could not
    deliver, then that it is fine once the same channel delivers the recovery notice."""
    port = free_port()
    text = f"""
site: {{name: Test Hospital, timezone: Asia/Shanghai, language: en}}
server: {{listen: "127.0.0.1:{port}"}}
state: {{url: "sqlite:///./state.db"}}
defaults: {{interval: 1s, timeout: 500ms, retry_interval: 250ms, confirm: 2, recover: 2}}
self_alerts: [it]
departments: [{{id: er, name: ER, notify: [ward]}}]
systems: [{{id: his, name: HIS, departments: [er], plan: p}}]
checks: [{{id: his-web, system: his, type: http, url: "{http_target.url}"}}]
notifiers:
  - {{id: it, type: webhook, url: "{receiver.url('it')}"}}
  - {{id: ward, type: webhook, url: "{receiver.url('ward')}"}}
plans:
  - id: p
    steps: [{{after: 0s, notify: [departments], message: department_outage}}]
    on_recovery: [departments]
"""
    receiver.fail_with, receiver.fail_paths = 400, {"/ward"}
    await daemon_factory(text, port)
    http_target.status = 503
    await receiver.wait_for(lambda: "monitor_degraded" in receiver.kinds("it"), timeout=30)
    degraded = next(m for m in receiver.messages if m["kind"] == "monitor_degraded")
    assert "ward" in degraded["text"] and "hismon" in degraded["title"]
    receiver.fail_with = None
    http_target.status = 200
    await receiver.wait_for(lambda: "monitor_ok" in receiver.kinds("it"), timeout=30)
    await asyncio.sleep(2)
    assert receiver.kinds("it") == ["monitor_degraded", "monitor_ok"]
