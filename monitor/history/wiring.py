"""What reading and writing history both need: the store, the recorder, the site's time
zone and the maintenance windows (callables: a reload changes them under a running daemon)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from monitor.history.model import BUCKET_SECONDS
from monitor.history.recorder import HistoryRecorder
from monitor.history.rollup import WindowLike
from monitor.store.base import Store


class HistoryWiring:
    def __init__(
        self,
        store: Store,
        recorder: HistoryRecorder,
        tz: Callable[[], dt.tzinfo],
        windows: Callable[[float], Sequence[WindowLike]],
        bucket: float = BUCKET_SECONDS,
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.tz = tz
        self.windows = windows
        self.bucket = bucket
