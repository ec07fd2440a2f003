"""Every notifier type, in one literal map: adding a channel is a module plus one line here."""

from __future__ import annotations

from typing import Annotated, Union, get_args

from pydantic import Field

from notifiers.alertmanager import AlertmanagerNotifier
from notifiers.base import NotifierBase
from notifiers.console import ConsoleNotifier
from notifiers.dingtalk import DingTalkNotifier
from notifiers.email import EmailNotifier
from notifiers.feishu import FeishuNotifier
from notifiers.sms import SmsNotifier
from notifiers.webhook import WebhookNotifier
from notifiers.wecom import WeComNotifier

AnyNotifier = Annotated[
    Union[  # noqa: UP007 - one member a line reads as the registry
        ConsoleNotifier,
        WebhookNotifier,
        WeComNotifier,
        DingTalkNotifier,
        FeishuNotifier,
        EmailNotifier,
        SmsNotifier,
        AlertmanagerNotifier,
    ],
    Field(discriminator="type"),
]
"""Any notifier configuration, told apart by its `type` key (what `Config.notifiers` holds)."""

NOTIFIER_TYPES: dict[str, type[NotifierBase]] = {
    get_args(cls.model_fields["type"].annotation)[0]: cls  # Literal["http"] -> "http"
    for cls in get_args(get_args(AnyNotifier)[0])
}
"""Type name -> model, derived from the union above, in its order."""
