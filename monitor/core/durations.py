"""Durations as operators write them (`500ms`, `30s`, `5m`, `2h`, `7d`), held as float seconds."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
MAX_SECONDS = 3650 * 86400.0
"""Ten years: longer than anything a monitor means, short enough for every timer and date."""
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: object) -> float:
    """Accept `1h30m`-style strings; bare numbers are refused so that `30` never means 30 ms."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f'invalid duration "{value}"')
    text = value.strip()
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f'invalid duration "{value}"')
    if total > MAX_SECONDS:
        raise ValueError(f'duration "{text[:40]}" is too long (at most 3650d)')
    return total


def format_duration(seconds: float, language: str = "en") -> str:
    """Human text: `1h 05m`, `12m 30s`, `800ms`; in Chinese `1小时05分`, `12分30秒`.

    Minutes matter to staff; seconds only for short outages.
    """
    if seconds <= 0:
        return "0秒" if language == "zh" else "0s"
    if seconds < 1 and language != "zh":
        return f"{seconds * 1000:.0f}ms"
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if language == "zh":
        if days:
            return f"{days}天{hours}小时{minutes:02d}分"
        if hours:
            return f"{hours}小时{minutes:02d}分"
        if minutes:
            return f"{minutes}分{secs:02d}秒"
        return f"{secs}秒"
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def format_against(measured: float, limit: float) -> tuple[str, str]:
    """A measured time and its limit at the first precision where they differ: `1.6s` and
    `1.5s`, `1.2ms` and `1ms`; never `2s > 2s` for a 1.6 s answer against a 1.5 s limit."""
    unit, scale = ("ms", 1000.0) if max(measured, limit) < 1 else ("s", 1.0)

    def shown(value: float, digits: int) -> str:
        text = f"{value * scale:.{digits}f}"
        return (text.rstrip("0").rstrip(".") if "." in text else text) + unit

    for digits in range(7):
        a, b = shown(measured, digits), shown(limit, digits)
        if a != b:
            return a, b
    return a, b


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda s: f"{s}s", return_type=str),
]
"""A duration in seconds, parsed from the config's `30s` notation."""
