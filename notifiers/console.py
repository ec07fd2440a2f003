"""Console notifier: prints messages to stdout, for the demo, drills and first trials."""

from __future__ import annotations

import sys
from typing import Literal

from notifiers.base import NotifierBase, NotifyContext, OutgoingMessage


class ConsoleNotifier(NotifierBase):
    type: Literal["console"]

    async def send(self, message: OutgoingMessage, ctx: NotifyContext) -> str:
        rule = "─" * 60
        drill = "[DRILL] " if message.drill else ""
        sys.stdout.write(
            f"\n{rule}\n📣 {drill}[{message.kind}] → {message.recipient}\n"
            f"{message.title}\n\n{message.text}\n{rule}\n"
        )
        sys.stdout.flush()
        return "printed"
