"""Every notifier type, in one literal map: adding a channel is a module plus one line here."""

from __future__ import annotations

from notifiers.alertmanager import AlertmanagerNotifier
from notifiers.base import NotifierBase
from notifiers.console import ConsoleNotifier
from notifiers.dingtalk import DingTalkNotifier
from notifiers.email import EmailNotifier
from notifiers.feishu import FeishuNotifier
from notifiers.sms import SmsNotifier
from notifiers.webhook import WebhookNotifier
from notifiers.wecom import WeComNotifier

NOTIFIER_TYPES: dict[str, type[NotifierBase]] = {
    "console": ConsoleNotifier,
    "webhook": WebhookNotifier,
    "wecom": WeComNotifier,
    "dingtalk": DingTalkNotifier,
    "feishu": FeishuNotifier,
    "email": EmailNotifier,
    "sms": SmsNotifier,
    "alertmanager": AlertmanagerNotifier,
}
