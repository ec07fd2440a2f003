"""DICOM check: C-ECHO (the Verification service) to a PACS, modality or worklist server.

C-ECHO is DICOM's own "ping": it proves the peer accepts an association from our AE title
and answers on the DICOM protocol, not just that its port is open. A wrong AE title or
an unlisted calling AE (the usual cause after a PACS change) is reported with the PACS's
own rejection reason. pynetdicom is synchronous, so it runs in `ctx.run_blocking`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

from checks.base import (
    CheckBase,
    LatencyThresholds,
    ProbeContext,
    network_reason,
    require_driver,
    time_budget,
)
from monitor.core.durations import format_duration
from monitor.core.result import Result, State
from monitor.core.text import host_port
from monitor.core.types import Cause

# Our result carries the reason; pynetdicom's ERROR lines for every failed probe are noise.
logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


@dataclass(slots=True)
class _Outcome:
    kind: str  # echo, rejected, aborted, closed, no_answer, not_connected
    detail: str = ""
    status: int | None = None


class DicomCheck(CheckBase):
    type: Literal["dicom"]
    host: str
    port: int = Field(default=104, ge=1, le=65535)
    calling_ae: str = "HISMON"
    """Our AE title: most PACS accept only AE titles they know."""
    called_ae: str = "ANY-SCP"
    """The PACS's AE title."""
    latency: LatencyThresholds | None = None

    @field_validator("type")
    @classmethod
    def _driver_installed(cls, value: str) -> str:
        require_driver("pynetdicom", "dicom", value)
        return value

    @field_validator("calling_ae", "called_ae")
    @classmethod
    def _valid_ae_title(cls, value: str) -> str:
        if not 0 < len(value) <= 16 or not value.strip() or "\\" in value or \
                any(not " " <= ch <= "~" for ch in value):
            raise ValueError(f'invalid AE title "{value}" (1-16 printable ASCII characters, '
                             "no backslash)")
        return value

    async def probe(self, ctx: ProbeContext) -> Result:
        target = host_port(self.host, self.port)
        budget = time_budget(self)
        started = time.perf_counter()
        outcome: _Outcome = await ctx.run_blocking(self._echo, budget * 0.8)
        elapsed = time.perf_counter() - started
        numbers = {"latency_seconds": elapsed}
        if outcome.kind == "not_connected":
            reason = await _why_not_connected(self.host, self.port, budget * 0.1)
            return Result(State.CRIT, f"{reason} {target}", numbers=numbers, cause=Cause.NETWORK)
        if outcome.kind == "rejected":
            return Result(State.CRIT, f"{target} rejected the association from "
                                      f"{self.calling_ae} to {self.called_ae}: {outcome.detail}",
                          numbers=numbers, cause=Cause.APPLICATION)
        if outcome.kind == "aborted":
            return Result(State.CRIT, f"{target} aborted the association: {outcome.detail}",
                          numbers=numbers, cause=Cause.APPLICATION)
        if outcome.kind == "closed":
            return Result(State.CRIT, f"{target} closed the connection without a DICOM answer "
                                      f"{outcome.detail} (after {format_duration(elapsed)})",
                          numbers=numbers, cause=Cause.APPLICATION)
        if outcome.kind == "no_answer":
            return Result(State.CRIT, f"connected to {target}, but no DICOM answer within "
                                      f"{format_duration(budget * 0.8)}{outcome.detail}",
                          numbers=numbers, cause=Cause.APPLICATION)
        if outcome.status != 0x0000:
            return Result(State.CRIT, f"C-ECHO to {self.called_ae} at {target} failed with "
                                      f"status 0x{outcome.status or 0:04X}",
                          numbers=numbers, cause=Cause.APPLICATION)
        result = Result(State.OK, f"C-ECHO to {self.called_ae} at {target} in "
                                  f"{format_duration(elapsed)}", numbers=numbers)
        if self.latency is not None:
            self.latency.apply(result, elapsed)
        return result

    def _echo(self, budget: float) -> _Outcome:
        """Associate, C-ECHO, release; runs in a worker thread."""
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        ae = AE(ae_title=self.calling_ae)
        ae.add_requested_context(Verification)
        ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = budget
        ae.network_timeout = budget
        opened: list[bool] = []
        answered: list[bool] = []
        asked = time.perf_counter()
        assoc = ae.associate(self.host, self.port, ae_title=self.called_ae, evt_handlers=[
            (evt.EVT_CONN_OPEN, lambda event: opened.append(True)),
            (evt.EVT_PDU_RECV, lambda event: answered.append(True)),
        ])
        # Well before the timeout and still no answer: the peer hung up, it did not wait.
        hung_up = time.perf_counter() - asked < budget / 2
        try:
            if assoc.is_established:
                status = assoc.send_c_echo()
                if not status or "Status" not in status:
                    return _Outcome("no_answer", " to the C-ECHO")
                return _Outcome("echo", status=int(status.Status))
            if assoc.is_rejected:
                reply = assoc.acceptor.primitive
                if reply is None:
                    return _Outcome("rejected", "no reason given")
                return _Outcome("rejected", f"{reply.reason_str} "
                                            f"({reply.result_str.lower()}, {reply.source_str})")
            if not opened:
                return _Outcome("not_connected")
            if not answered:
                return _Outcome("closed" if hung_up else "no_answer",
                                "to the association request" if hung_up
                                else " to the association request")
            accepted = assoc.acceptor.primitive is not None and not assoc.accepted_contexts
            return _Outcome("aborted", "the Verification service (C-ECHO) is not offered"
                            if accepted else "the peer aborted during negotiation")
        finally:
            if assoc.is_established:
                assoc.release()
            ae.shutdown()


async def _why_not_connected(host: str, port: int, budget: float) -> str:
    """pynetdicom only logs why a connection failed; one plain connect finds out."""
    try:
        async with asyncio.timeout(max(budget, 0.2)):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return "no TCP answer from"
    except OSError as exc:
        reason = network_reason(exc)
        return reason if reason != "DNS lookup failed" else "DNS lookup failed for"
    writer.close()
    return "could not connect to"
