"""Grouping (SPEC 6, `alerting.group_window`): the pure rule on a moved clock, then the outbox
carrying it out against a real webhook receiver and the real SQLite store (a fake clock is
handed to the outbox; nothing else is mocked). The daemon end to end is in
tests/test_grouping_e2e.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from monitor.config.loader import load_config_text
from monitor.core.models import OutboxMessage
from monitor.core.types import MessageKind
from monitor.delivery import grouping
from monitor.delivery.grouping import Batch, group_key, plan
from monitor.delivery.outbox import Outbox, Sender
from monitor.store.sqlite import SqliteStore
from tests.conftest import Clock, Receiver

T0 = 1_800_000_000.0


def msg(key: str, due: float, kind: str = "outage_it", notifier: str = "it",
        department: str | None = None, person: str | None = None, drill: bool = False,
        number: int = 0, **payload: Any) -> OutboxMessage:
    incident = {"id": f"inc-{number}", "system": f"sys-{number}",
                "system_name": f"System {number}", "severity": "critical",
                "started_at_local": "2026-12-01 08:00", "failing_checks": [],
                "affected_departments": [department] if department else []}
    body: dict[str, Any] = {"title": f"System {number} down", "text": f"text {number}",
                            "incident": incident, "recipient": notifier, "drill": drill}
    if department:
        body["department"] = department
    if person:
        body["person"] = {"id": person, "name": person.title()}
        body["recipient"] = f"person:{person}"
    body.update(payload)
    return OutboxMessage(idempotency_key=key, notifier=notifier, kind=MessageKind(kind),
                         incident_id=f"inc-{number}", payload=body, created_at=due,
                         next_attempt_at=due, id=number)


def keys(batches: list[Batch]) -> list[list[str]]:
    return [[m.idempotency_key for m in b.members] for b in batches]


# ---- the pure rule ---------------------------------------------------------------------


def test_window_zero_sends_every_due_message_alone_at_once() -> None:
    messages = [msg(f"inc-{i}:step-0:it:0", T0, number=i) for i in range(3)]
    batches, _ = plan(messages, T0, 0.0)
    assert keys(batches) == [["inc-0:step-0:it:0"], ["inc-1:step-0:it:0"], ["inc-2:step-0:it:0"]]
    assert [b.key for b in batches] == [m.idempotency_key for m in messages]
    assert not any(b.grouped for b in batches)


def test_messages_due_within_the_window_wait_for_its_end_and_go_as_one() -> None:
    messages = [msg(f"inc-{i}:step-0:it:0", T0 + i, number=i) for i in range(3)]
    batches, wait = plan(messages, T0 + 4.9, 5.0)
    assert batches == [] and wait == pytest.approx(0.1)
    batches, _ = plan(messages, T0 + 5.0, 5.0)
    assert keys(batches) == [[m.idempotency_key for m in messages]]
    assert batches[0].grouped
    assert batches[0].key == group_key(m.idempotency_key for m in messages)


def test_the_window_is_fixed_from_the_first_message_due() -> None:
    """A message due after the first window closed opens the next one: nothing waits for
    longer than the window, however many keep coming."""
    messages = [msg("a", T0, number=1), msg("b", T0 + 4, number=2),
                msg("c", T0 + 5, number=3), msg("d", T0 + 8, number=4)]
    batches, wait = plan(messages, T0 + 5, 5.0)
    assert keys(batches) == [["a", "b"]] and wait == pytest.approx(5.0)
    batches, _ = plan(messages[2:], T0 + 10, 5.0)
    assert keys(batches) == [["c", "d"]]


def test_a_message_alone_in_its_window_keeps_its_own_key() -> None:
    batches, _ = plan([msg("inc-1:step-0:it:0", T0, number=1)], T0 + 5, 5.0)
    assert [b.key for b in batches] == ["inc-1:step-0:it:0"] and not batches[0].grouped


def test_only_the_same_kind_recipient_and_world_group() -> None:
    messages = [
        msg("k1", T0, number=1), msg("k2", T0, number=2),
        msg("k3", T0, kind="leadership_report", number=3),
        msg("k4", T0, department="er", number=4), msg("k5", T0, department="er", number=5),
        msg("k6", T0, department="lab", number=6),
        msg("k7", T0, person="wang", number=7), msg("k8", T0, person="wang", number=8),
        msg("k9", T0, person="li", number=9),
        msg("k10", T0, drill=True, number=10), msg("k11", T0, drill=True, number=11),
    ]
    batches, _ = plan(messages, T0 + 5, 5.0)
    assert sorted(keys(batches)) == sorted([["k1", "k2"], ["k3"], ["k4", "k5"], ["k6"],
                                            ["k7", "k8"], ["k9"], ["k10", "k11"]])


def test_what_never_groups_goes_at_once() -> None:
    """Self-alerts, maintenance notices, fallback copies and a message once tried alone
    are not held for the window."""
    tried = msg("tried", T0, number=1)
    tried.attempts = 2
    messages = [
        msg("self", T0, kind="monitor_degraded", number=2),
        msg("maint:w:it", T0, kind="maintenance_notice", number=3),
        msg("copy", T0, number=4, failed_channels=["wecom-it"]),
        tried,
    ]
    batches, _ = plan(messages, T0, 5.0)
    assert keys(batches) == [["tried"], ["self"], ["maint:w:it"], ["copy"]]


def test_fallback_copies_due_together_go_as_one_without_waiting() -> None:
    copies = [msg(f"c{i}", T0, number=i, failed_channels=["it"]) for i in range(1, 4)]
    later = msg("c9", T0 + 1, number=9, failed_channels=["it"])
    original = msg("o1", T0, number=10)
    batches, wait = plan([*copies, later, original], T0, 5.0)
    assert keys(batches) == [["c1", "c2", "c3"]] and batches[0].grouped
    assert wait == pytest.approx(1.0), "the next copy is due in a second, not a window"


def test_a_bound_group_stays_together_with_its_key_even_if_its_binding_was_cut_short() -> None:
    members = [msg(f"k{i}", T0 + i, number=i) for i in range(1, 4)]
    batch = Batch(tuple(members), group_key(m.idempotency_key for m in members))
    changed = grouping.bind(Batch(tuple(members[:2]), batch.key))
    for member in changed:  # a crash after two of three were written
        member.payload[grouping.GROUP]["members"] = ["k1", "k2", "k3"]
    retry_at = T0 + 30
    for member in members:
        member.next_attempt_at = retry_at
        member.attempts = 1
    late = msg("k9", T0 + 29, number=9)
    assert plan([*members, late], retry_at - 1, 5.0)[0] == []
    batches, _ = plan([*members, late], retry_at, 5.0)
    assert [b.key for b in batches] == [batch.key]
    assert keys(batches) == [["k1", "k2", "k3"]], "the late message never joins a sent group"


def test_the_group_key_depends_only_on_the_members() -> None:
    assert group_key(["b", "a"]) == group_key(["a", "b"])
    assert group_key(["a", "b"]) != group_key(["a", "c"])
    assert group_key(["a"]).startswith("group:")


def test_alertmanager_and_window_zero_are_not_groupable() -> None:
    from notifiers.alertmanager import AlertmanagerNotifier
    from notifiers.webhook import WebhookNotifier

    assert grouping.groupable(WebhookNotifier.groups_messages, 10.0)
    assert not grouping.groupable(AlertmanagerNotifier.groups_messages, 10.0)
    assert not grouping.groupable(WebhookNotifier.groups_messages, 0.0)


def test_group_window_is_validated() -> None:
    from monitor.config.loader import ConfigError

    assert load_config_text("alerting: {group_window: 10s}\n", "t.yaml", {}) \
        .alerting.group_window == 10.0
    assert load_config_text("{}\n", "t.yaml", {}).alerting.group_window == 0.0
    with pytest.raises(ConfigError, match=r"alerting\.group_window"):
        load_config_text("alerting: {group_window: 2h}\n", "t.yaml", {})


# ---- the outbox carrying it out --------------------------------------------------------




def outbox_for(receiver: Receiver, store: SqliteStore, clock: Clock,
               window: str = "5s") -> tuple[Outbox, Sender, Sender]:
    config = load_config_text(f"""
site: {{name: Test Hospital, language: en}}
alerting: {{group_window: {window}}}
notifiers:
  - {{id: it, type: webhook, url: "{receiver.url('it')}", fallback: backup,
     retry: {{initial: 1s, max_delay: 1s, max_age: 1h}}}}
  - {{id: backup, type: webhook, url: "{receiver.url('backup')}"}}
  - {{id: er-hook, type: webhook, url: "{receiver.url('er')}"}}
""", "t.yaml", {})
    outbox = Outbox(config, store, clock)
    return outbox, Sender(outbox, config.notifier("it")), Sender(outbox, config.notifier("er-hook"))


def department_notice(key: str, due: float, number: int) -> OutboxMessage:
    system = {"id": f"sys-{number}", "name": f"System {number}",
              "downtime_procedure": f"Paper form {number}.", "still_works": None}
    return msg(key, due, kind="department_outage", notifier="er-hook", department="er",
               number=number, links={"department": f"https://h/d/{number}"},
               links_text=f"\n\nConfirm: https://h/d/{number}",
               group_item={"language": "en", "system": system,
                           "department": {"id": "er", "name": "Emergency"},
                           "department_systems": [system], "incident_url": None,
                           "department_url": "https://h/departments/er"})


async def test_the_outbox_sends_one_group_and_marks_every_member(
        store: SqliteStore, receiver: Receiver) -> None:
    clock = Clock(T0)
    outbox, it, er = outbox_for(receiver, store, clock)
    await store.enqueue([msg(f"inc-{i}:step-0:it:0", T0 + i * 0.5, number=i) for i in range(4)]
                        + [department_notice(f"inc-{i}:step-1:er-hook:0", T0 + i, i)
                           for i in range(3)])
    clock.now = T0 + 4.9
    assert await it.pass_once() == pytest.approx(0.1)
    assert await er.pass_once() == pytest.approx(0.1)
    assert receiver.messages == []
    clock.now = T0 + 5.0
    await it.pass_once()
    await er.pass_once()
    await outbox.http.aclose()
    (to_it,) = [m for m in receiver.messages if m["_path"] == "/it"]
    (to_er,) = [m for m in receiver.messages if m["_path"] == "/er"]
    member_keys = [f"inc-{i}:step-0:it:0" for i in range(4)]
    assert to_it["idempotency_key"] == group_key(member_keys)
    assert to_it["kind"] == "outage_it" and to_it["incident"]["id"] == "inc-0"
    assert [i["id"] for i in to_it["incidents"]] == ["inc-0", "inc-1", "inc-2", "inc-3"]
    assert "4 systems down at once" in to_it["title"]
    for number in range(4):
        assert f"System {number} (sys-{number})" in to_it["text"]
    assert [i["links"] for i in to_er["incidents"]] == [
        {"department": f"https://h/d/{i}"} for i in range(3)]
    assert to_er["links"] == {"department": "https://h/d/0"}
    assert "To all staff of Emergency" in to_er["text"]
    for number in range(3):
        assert f"* System {number}" in to_er["text"]
        assert f"Paper form {number}." in to_er["text"]
        assert f"Confirm: https://h/d/{number}" in to_er["text"]
    stored = await store.list_messages()
    assert len(stored) == 7 and {m.status for m in stored} == {"sent"}
    assert all(to_it["idempotency_key"] in (m.answer or "") for m in stored
               if m.notifier == "it")


async def test_a_failed_group_is_retried_whole_under_its_key_after_a_restart(
        store: SqliteStore, receiver: Receiver) -> None:
    clock = Clock(T0)
    outbox, it, _ = outbox_for(receiver, store, clock)
    member_keys = [f"inc-{i}:step-0:it:0" for i in range(3)]
    await store.enqueue([msg(k, T0, number=i) for i, k in enumerate(member_keys)])
    receiver.fail_with = 503
    clock.now = T0 + 5
    await it.pass_once()
    await outbox.http.aclose()
    stored = await store.pending_messages("it")
    assert len(stored) == 3 and all(m.attempts == 1 for m in stored)
    assert {m.payload[grouping.GROUP]["key"] for m in stored} == {group_key(member_keys)}

    # A restart (a new outbox on the same store) while a late message arrives.
    await store.enqueue([msg("inc-9:step-0:it:0", T0 + 5.5, number=9)])
    receiver.fail_with = None
    clock.now = T0 + 7
    outbox, it, _ = outbox_for(receiver, store, clock)
    await it.pass_once()
    clock.now = T0 + 10.5
    await it.pass_once()
    await outbox.http.aclose()
    assert [m["idempotency_key"] for m in receiver.messages] == [
        group_key(member_keys), "inc-9:step-0:it:0"]
    assert len(receiver.messages[0]["incidents"]) == 3
    assert {m.status for m in await store.list_messages()} == {"sent"}


async def test_with_window_zero_the_outbox_sends_each_message_at_once(
        store: SqliteStore, receiver: Receiver) -> None:
    clock = Clock(T0)
    outbox, it, _ = outbox_for(receiver, store, clock, window="0s")
    await store.enqueue([msg(f"inc-{i}:step-0:it:0", T0, number=i) for i in range(3)])
    await it.pass_once()
    await outbox.http.aclose()
    assert [m["idempotency_key"] for m in receiver.messages] == [
        f"inc-{i}:step-0:it:0" for i in range(3)]
    assert all("incidents" not in m for m in receiver.messages)


async def test_a_group_refused_for_good_falls_back_as_one_group_naming_the_channel(
        store: SqliteStore, receiver: Receiver) -> None:
    clock = Clock(T0)
    outbox, it, _ = outbox_for(receiver, store, clock)
    backup = Sender(outbox, outbox.config.notifier("backup"))
    await store.enqueue([msg(f"inc-{i}:step-0:it:0", T0, number=i) for i in range(3)])
    receiver.fail_with, receiver.fail_paths = 400, {"/it"}
    clock.now = T0 + 5
    await it.pass_once()
    await backup.pass_once()
    await outbox.http.aclose()
    (copy,) = receiver.messages
    assert copy["_path"] == "/backup" and copy["idempotency_key"].startswith("group:")
    assert [i["id"] for i in copy["incidents"]] == ["inc-0", "inc-1", "inc-2"]
    assert copy["text"].endswith("(Sent to backup because it could not deliver it.)")
    stored = {m.idempotency_key: m.status for m in await store.list_messages()}
    assert [stored[f"inc-{i}:step-0:it:0"] for i in range(3)] == ["failed"] * 3
    assert sorted(s for k, s in stored.items() if ":fallback:" in k) == ["sent"] * 3


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("kind", sorted(grouping.GROUPABLE_KINDS))
def test_every_groupable_kind_renders_a_group_listing_each_incident(
        kind: str, language: str) -> None:
    """The built-in group templates render in both languages (a broken one would fall back
    to a one-line summary naming no incident)."""
    from monitor.delivery.grouped import grouped_outgoing
    from monitor.delivery.messages import MessageRenderer

    config = load_config_text("""
site: {name: Test Hospital, language: en}
notifiers: [{id: it, type: webhook, url: "http://127.0.0.1:1/"}]
""", "t.yaml", {})
    members = []
    for number in range(3):
        member = department_notice(f"k{number}", T0, number)
        member.kind = MessageKind(kind)
        member.payload["group_item"]["language"] = language
        member.payload["incident"]["failing_checks"] = [
            {"id": f"check-{number}", "type": "http", "state": "CRIT", "message": "HTTP 503"}]
        members.append(member)
    batch = Batch(tuple(members), group_key(m.idempotency_key for m in members))
    sent = grouped_outgoing(batch, config, MessageRenderer(), config.notifier("it"))
    assert sent.title and sent.title != kind
    for number in range(3):
        assert f"System {number}" in sent.text
        assert f"https://h/d/{number}" in sent.text
    if kind == "department_outage":
        assert all(f"Paper form {n}." in sent.text for n in range(3))


async def test_messages_to_a_person_group_per_person_and_name_them(
        store: SqliteStore, receiver: Receiver) -> None:
    clock = Clock(T0)
    outbox, it, _ = outbox_for(receiver, store, clock)
    await store.enqueue([msg(f"inc-{i}:step-0:person:{who}/it:0", T0, person=who, number=i)
                         for i, who in enumerate(["wang", "wang", "li", "li", "li"])])
    clock.now = T0 + 5
    await it.pass_once()
    await outbox.http.aclose()
    by_person = {m["person"]["id"]: m for m in receiver.messages}
    assert len(receiver.messages) == 2 and set(by_person) == {"wang", "li"}
    assert [i["id"] for i in by_person["wang"]["incidents"]] == ["inc-0", "inc-1"]
    assert [i["id"] for i in by_person["li"]["incidents"]] == ["inc-2", "inc-3", "inc-4"]
    assert by_person["li"]["recipient"] == "person:li"
    assert by_person["li"]["text"].startswith("@Li\n"), "a webhook names the person in the text"
