"""A message to a person through one notifier (SPEC §13.1).

`sms` texts the person's mobile and `email` mails their address instead of the notifier's
own recipients; WeCom and DingTalk text robots @-mention the person's mobile; every other
channel (webhook, Feishu, console, a markdown robot) names the person in the text.
"""

from __future__ import annotations

from typing import Any

ADDRESSED = frozenset({"sms", "email", "wecom", "dingtalk"})


def addresses_person(notifier: Any) -> bool:
    """True when the channel itself reaches or mentions the person."""
    if notifier.type in ("wecom", "dingtalk"):
        return getattr(notifier, "format", "text") == "text"
    return notifier.type in ADDRESSED


def for_person(payload: dict[str, Any], person: dict[str, Any], notifier: Any) -> None:
    """Turn a rendered outbox payload into the person's: recipient, `person`, a named text."""
    payload["recipient"] = f"person:{person['id']}"
    payload["person"] = dict(person)
    if not addresses_person(notifier):
        payload["text"] = f"@{person['name']}\n{payload.get('text', '')}"
