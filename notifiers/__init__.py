"""Every notifier type, in one literal map: adding a channel is a module plus one line here."""

from __future__ import annotations

from notifiers.base import NotifierBase
from notifiers.console import ConsoleNotifier
from notifiers.webhook import WebhookNotifier

NOTIFIER_TYPES: dict[str, type[NotifierBase]] = {
    "console": ConsoleNotifier,
    "webhook": WebhookNotifier,
}
