"""HL7 v2 check over MLLP: does the interface (LIS, EMR, insurance, PACS broker) accept messages?

An interface engine can keep its port open while its queue is stuck or its database is
gone; only a real message and its ACK show that it works. The default message is a
read-only query (QRY^A19 for a patient id that does not exist), never an ADT event: a
health check must not create data in a production system. Each probe sends a fresh
control id (MSH-10) and expects it back in MSA-2.

Framing (MLLP): 0x0B, the message with segments ended by CR, then 0x1C 0x0D.
"""

from __future__ import annotations

import asyncio
import codecs
import datetime as dt
import itertools
import os
import time
from typing import Literal

from pydantic import Field, PositiveInt, field_validator

from checks.base import CheckBase, LatencyThresholds, ProbeContext, network_reason, time_budget
from monitor.core.durations import format_duration
from monitor.core.result import Result, State
from monitor.core.text import host_port
from monitor.core.types import Cause

START, END = b"\x0b", b"\x1c\x0d"
_ACK_CODES = {
    "AA": (State.OK, "accepted"), "CA": (State.OK, "accepted"),
    "AE": (State.CRIT, "application error"), "CE": (State.CRIT, "commit error"),
    "AR": (State.CRIT, "rejected"), "CR": (State.CRIT, "commit rejected"),
}
_sequence = itertools.count(1)


class Hl7Check(CheckBase):
    type: Literal["hl7"]
    host: str
    port: int = Field(ge=1, le=65535)
    message: str | None = None
    """A full HL7 message (segments on separate lines); MSH-10 is replaced on every probe."""
    sending_application: str = "HISMON"
    sending_facility: str = "HISMON"
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: Literal["P", "T", "D"] = "P"
    version: str = "2.3"
    encoding: str = "utf-8"
    """Character set of the interface; many Chinese HIS interfaces use gb18030."""
    latency: LatencyThresholds | None = None
    max_answer: PositiveInt = 1_048_576

    @field_validator("message")
    @classmethod
    def _looks_like_hl7(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("MSH") or len(value) < 8):
            raise ValueError("the message must start with an MSH segment (MSH|^~\\&|...)")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f'unknown encoding "{value}"') from None
        return value

    async def probe(self, ctx: ProbeContext) -> Result:
        target = host_port(self.host, self.port)
        control_id = _control_id()
        payload = START + self.build_message(control_id).encode(self.encoding) + END
        budget = time_budget(self)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(budget):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, limit=self.max_answer)
        except TimeoutError:
            return self._crit(f"no TCP answer from {target} within {format_duration(budget)}",
                              Cause.NETWORK, started)
        except OSError as exc:
            reason = network_reason(exc)
            text = f"{reason} for {self.host}" if reason == "DNS lookup failed" \
                else f"{reason} {target}"
            return self._crit(text, Cause.NETWORK, started)
        try:
            remaining = max(budget - (time.perf_counter() - started), 0.01)
            async with asyncio.timeout(remaining):
                writer.write(payload)
                await writer.drain()
                raw = await reader.readuntil(END)
        except TimeoutError:
            return self._crit(f"connected to {target}, but no ACK within "
                              f"{format_duration(budget)}", Cause.APPLICATION, started)
        except asyncio.IncompleteReadError as exc:
            what = "without an ACK" if not exc.partial else "in the middle of the ACK"
            return self._crit(f"{target} closed the connection {what}", Cause.APPLICATION, started)
        except asyncio.LimitOverrunError:
            return self._crit(f"{target} sent more than {self.max_answer} bytes without an "
                              "MLLP end block", Cause.APPLICATION, started)
        except OSError as exc:
            return self._crit(f"{network_reason(exc)} {target} while waiting for the ACK",
                              Cause.NETWORK, started)
        finally:
            writer.close()
        elapsed = time.perf_counter() - started
        text = raw.split(START, 1)[-1].removesuffix(END).decode(self.encoding, errors="replace")
        result = judge_ack(text, control_id, elapsed)
        if self.latency is not None and result.state is State.OK:
            self.latency.apply(result, elapsed)
        return result

    def build_message(self, control_id: str) -> str:
        """The message to send, segments joined by CR, with this probe's control id."""
        now = dt.datetime.now().strftime("%Y%m%d%H%M%S")
        if self.message is None:
            msh = (f"MSH|^~\\&|{self.sending_application}|{self.sending_facility}|"
                   f"{self.receiving_application}|{self.receiving_facility}|{now}||"
                   f"QRY^A19|{control_id}|{self.processing_id}|{self.version}")
            qrd = f"QRD|{now}|R|I|{control_id}|||1^RD|HISMON-HEALTHCHECK|DEM"
            return f"{msh}\r{qrd}\r"
        segments = [s for s in self.message.replace("\r\n", "\n").replace("\r", "\n")
                    .split("\n") if s.strip()]
        separator = segments[0][3]
        fields = segments[0].split(separator)
        while len(fields) < 12:
            fields.append("")
        fields[9] = control_id  # MSH-10 (MSH-1 is the separator itself)
        segments[0] = separator.join(fields)
        return "\r".join(segments) + "\r"

    def _crit(self, message: str, cause: Cause, started: float) -> Result:
        return Result.crit(message, cause, latency_seconds=time.perf_counter() - started)


def _control_id() -> str:
    """Unique per probe and per process, at most 20 characters (HL7 ST limit for MSH-10)."""
    return f"HM{int(time.time()) % 10**8:08d}{os.getpid() % 10**4:04d}{next(_sequence) % 10**6:06d}"


def judge_ack(text: str, control_id: str, elapsed: float) -> Result:
    """OK on AA/CA for our control id; AE/AR with the interface's own error text."""
    numbers = {"latency_seconds": elapsed}
    segments = [s for s in text.replace("\n", "\r").split("\r") if s.strip()]
    separator = segments[0][3] if segments and segments[0].startswith("MSH") else "|"
    msa = next((s.split(separator) for s in segments if s.startswith("MSA")), None)
    if msa is None:
        first = segments[0][:60] if segments else "nothing"
        return Result(State.CRIT, f"answer is not an ACK (no MSA segment): {first}",
                      numbers=numbers, cause=Cause.APPLICATION)
    code = msa[1] if len(msa) > 1 else ""
    acked = msa[2] if len(msa) > 2 else ""
    took = format_duration(elapsed)
    if code not in _ACK_CODES:
        return Result(State.CRIT, f"ACK with unknown MSA-1 code \"{code}\"", numbers=numbers,
                      cause=Cause.APPLICATION)
    state, meaning = _ACK_CODES[code]
    if state is State.OK:
        if acked and acked != control_id:
            return Result(State.CRIT, f"ACK {code} for another message (MSA-2 {acked}, sent "
                                      f"{control_id}): the interface is out of step",
                          numbers=numbers, cause=Cause.APPLICATION)
        return Result(State.OK, f"ACK {code} in {took}", numbers=numbers)
    reason = _error_text(msa, segments, separator)
    return Result(state, f"interface answered {code} ({meaning}){': ' + reason if reason else ''}",
                  numbers=numbers, cause=Cause.APPLICATION)


def _error_text(msa: list[str], segments: list[str], separator: str) -> str:
    """MSA-3 text, else the first readable text of an ERR segment (v2.3 ERR-1, v2.5 ERR-8/3)."""
    if len(msa) > 3 and msa[3].strip():
        return msa[3].strip()[:200]
    for segment in segments:
        if segment.startswith("ERR"):
            fields = segment.split(separator)
            for index in (8, 3, 1):
                if len(fields) > index and fields[index].strip():
                    parts = [p for p in fields[index].split("^") if p.strip()]
                    return " ".join(parts)[:200]
    return ""
