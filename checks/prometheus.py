"""Prometheus check: judge a PromQL instant query on a Prometheus the hospital already runs.

Many servers are already scraped by node_exporter, windows_exporter or a database
exporter; asking Prometheus `predict_linear(node_filesystem_avail_bytes[6h], 4*3600)` warns
hours before a disk fills, without a second agent. Every series of the answer is judged;
the worst one, with its labels, goes into the message.

"Prometheus could not be asked" (down, bad PromQL, no data) is UNKNOWN: the monitored
system may be fine. `empty` decides what an answer without any series means.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field

from checks.base import (
    CheckBase,
    LatencyThresholds,
    ProbeContext,
    ValueThresholds,
    network_reason,
    time_budget,
)
from monitor.core.durations import format_duration
from monitor.core.result import Result, State
from monitor.core.strict import Strict
from monitor.core.types import Cause, CauseName

_MAX_ANSWER = 4 * 1024 * 1024


class PrometheusTls(Strict):
    verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class PrometheusCheck(CheckBase):
    type: Literal["prometheus"]
    url: str = Field(pattern=r"^https?://")
    """Base URL of Prometheus (or Thanos/VictoriaMetrics), e.g. http://prometheus:9090."""
    query: str = Field(min_length=1)
    value: ValueThresholds | None = None
    empty: Literal["ok", "warn", "crit", "unknown"] = "unknown"
    """State when the query returns no series (`ok` for alert-style `expr > limit` queries)."""
    headers: dict[str, str] = Field(default_factory=dict)
    tls: PrometheusTls = Field(default_factory=PrometheusTls)
    latency: LatencyThresholds | None = None
    cause: CauseName = "capacity"
    """What a breached threshold means for the incident (disk, memory... is capacity)."""

    secret_fields = ("headers",)

    async def probe(self, ctx: ProbeContext) -> Result:
        import aiohttp

        tls = self.tls
        tls_key = (tls.verify, tls.ca_file, tls.cert_file, tls.key_file)
        session = ctx.http_session(tls_key, ctx.ssl_context(*tls_key))
        where = urlsplit(self.url).netloc.rpartition("@")[2]  # never user:password@
        budget = time_budget(self)
        started = time.perf_counter()
        try:
            async with session.get(
                f"{self.url.rstrip('/')}/api/v1/query",
                params={"query": self.query, "timeout": f"{budget:.3f}"},
                headers=self.headers or None,
            ) as resp:
                raw = await resp.content.read(_MAX_ANSWER)
                status = resp.status
        except aiohttp.ClientConnectorError as exc:
            return Result.unknown(f"Prometheus at {where} unreachable: "
                                  f"{network_reason(exc.os_error)}")
        except aiohttp.ClientError as exc:
            return Result.unknown(f"Prometheus at {where} failed: {type(exc).__name__} {exc}")
        elapsed = time.perf_counter() - started
        try:
            answer = json.loads(raw)
        except ValueError:
            return Result.unknown(f"Prometheus at {where} answered HTTP {status} without JSON")
        if not isinstance(answer, dict) or answer.get("status") != "success":
            error = answer.get("error", "no error text") if isinstance(answer, dict) else ""
            kind = answer.get("errorType", "error") if isinstance(answer, dict) else "error"
            return Result.unknown(f"PromQL {kind} (HTTP {status}): {str(error)[:200]}")
        result = self._judge(answer.get("data") or {}, elapsed)
        if self.latency is not None and result.state is not State.UNKNOWN:
            self.latency.apply(result, elapsed)
        return result

    def _judge(self, data: dict[str, Any], elapsed: float) -> Result:
        numbers: dict[str, float] = {"latency_seconds": elapsed}
        kind = data.get("resultType")
        samples: list[tuple[dict[str, str], float]]
        if kind == "scalar":
            samples = [({}, _float(data["result"][1]))]
        elif kind == "vector":
            samples = [(item.get("metric", {}), _float(item["value"][1]))
                       for item in data.get("result", [])]
        else:
            return Result(State.UNKNOWN, f"the query returns a {kind}, not an instant vector "
                                         "or scalar", numbers=numbers)
        numbers["series"] = float(len(samples))
        if not samples:
            state = State[self.empty.upper()]
            cause = Cause(self.cause) if state is not State.OK else None
            return Result(state, f"query returned no data in {format_duration(elapsed)}",
                          numbers=numbers, cause=cause)
        measurable = [(labels, value) for labels, value in samples if not math.isnan(value)]
        if not measurable:
            return Result(State.UNKNOWN, "query returned NaN", numbers=numbers)
        if self.value is None:
            labels, value = measurable[0]
            numbers["value"] = value
            return Result(State.OK, f"query returned {value:g}{_labels(labels)} in "
                                    f"{format_duration(elapsed)}", numbers=numbers)
        thresholds = self.value
        worst_labels, worst = max(
            measurable,
            key=lambda item: (thresholds.judge(item[1]),
                              -item[1] if thresholds.below else item[1]),
        )
        numbers["value"] = worst
        state = thresholds.judge(worst)
        message = thresholds.describe(worst, "query returned") + _labels(worst_labels)
        breached = sum(1 for _, value in measurable if thresholds.judge(value) is not State.OK)
        if breached > 1:
            message += f" ({breached} of {len(measurable)} series over limits)"
        if state is State.OK:
            message += f" in {format_duration(elapsed)}"
        return Result(state, message, numbers=numbers,
                      cause=Cause(self.cause) if state is not State.OK else None)


def _float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _labels(labels: dict[str, str]) -> str:
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    if not shown:
        return ""
    return " for {" + ", ".join(f'{k}="{v}"' for k, v in sorted(shown.items())) + "}"
