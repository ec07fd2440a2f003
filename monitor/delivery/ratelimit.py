"""Pacing a channel: its API's own limits (SPEC 6) and the configured `rate_limit`.

Messages wait in the outbox for their turn instead of being dropped or bounced by the API
(WeCom errcode 45009, Feishu 11232), and waiting never counts as failing (fallback_after).
"""

from __future__ import annotations

from collections import deque

from notifiers.base import NotifierBase, parse_rate


class RateLimiter:
    """At most `count` sends in any `per` seconds (a sliding window); callers wait."""

    def __init__(self, count: int, per: float) -> None:
        self.count, self.per = count, per
        self.sent: deque[float] = deque()

    def wait_time(self, now: float) -> float:
        while self.sent and now - self.sent[0] >= self.per:
            self.sent.popleft()
        if len(self.sent) < self.count:
            return 0.0
        return self.per - (now - self.sent[0])

    def record(self, now: float) -> None:
        self.sent.append(now)


class Pacer:
    """Every limit that applies to one notifier: the channel's own ones always, the
    configured `rate_limit` on top (it may only lower them: validated in notifiers.base)."""

    def __init__(self, limits: list[tuple[int, float]]) -> None:
        self.limiters = [RateLimiter(count, per) for count, per in limits]

    @classmethod
    def for_notifier(cls, notifier: NotifierBase) -> Pacer | None:
        limits = list(notifier.channel_limits)
        if notifier.rate_limit is not None:
            limits.append(parse_rate(notifier.rate_limit))
        return cls(limits) if limits else None

    def wait_time(self, now: float) -> float:
        return max(limiter.wait_time(now) for limiter in self.limiters)

    def record(self, now: float) -> None:
        for limiter in self.limiters:
            limiter.record(now)
