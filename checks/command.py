"""Command check: run any Nagios-compatible plugin (monitoring-plugins, vendor scripts).

Hospitals already own years of Nagios plugins for their minicomputers, UPSes and vendor
boxes; this check reuses them unchanged. Plugin API: exit code 0/1/2/3 is OK/WARN/CRIT/
UNKNOWN, the first output line is the message, and `'label'=value[UOM];warn;crit;min;max`
after a `|` is performance data, which becomes `numbers`.

The plugin runs without a shell (the argv list is passed as is, so no quoting or injection
surprises) in its own session: on timeout the whole process group is killed, so a plugin's
children cannot pile up on the monitoring server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from typing import Literal

from pydantic import Field, PositiveInt

from checks.base import CheckBase, ProbeContext, time_budget
from monitor.core.durations import format_duration
from monitor.core.result import Result, State
from monitor.core.text import first_line
from monitor.core.types import Cause, CauseName

_EXIT_STATES = {0: State.OK, 1: State.WARN, 2: State.CRIT, 3: State.UNKNOWN}
_UNITS = {
    "us": 1e-6, "ms": 1e-3, "s": 1.0,
    "B": 1.0, "KB": 1024.0, "MB": 1024.0**2, "GB": 1024.0**3, "TB": 1024.0**4,
}
_PERF_ITEM = re.compile(r"""\s*(?:'((?:[^']|'')+)'|([^\s=']+))=(\S*)""")
_PERF_VALUE = re.compile(r"^(-?\d+(?:[.,]\d+)?(?:[eE][-+]?\d+)?)([a-zA-Z%]*)")


class CommandCheck(CheckBase):
    type: Literal["command"]
    command: list[str] = Field(min_length=1)
    """The plugin and its arguments, e.g. [/usr/lib/nagios/plugins/check_disk, -w, 20%]."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables (e.g. a password for the plugin; masked in the API)."""
    cause: CauseName | None = "application"
    """What a failure of this plugin means, for the incident's suspected cause."""
    max_output: PositiveInt = 65536

    secret_fields = ("env",)

    async def probe(self, ctx: ProbeContext) -> Result:
        budget = time_budget(self)
        started = time.perf_counter()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group, killed as a whole
                env={**os.environ, **self.env} if self.env else None,
            )
        except FileNotFoundError:
            return Result.unknown(f"plugin not found: {self.command[0]}")
        except PermissionError:
            return Result.unknown(f"plugin not executable: {self.command[0]}")
        try:
            async with asyncio.timeout(budget):
                stdout, stderr, code = await asyncio.gather(
                    _read_capped(proc.stdout, self.max_output),
                    _read_capped(proc.stderr, self.max_output),
                    proc.wait(),
                )
        except TimeoutError:
            await _kill_group(proc)
            return Result(State.CRIT,
                          f"plugin did not finish within {format_duration(budget)} (killed)",
                          numbers={"latency_seconds": time.perf_counter() - started},
                          cause=Cause(self.cause) if self.cause else None)
        except BaseException:  # cancelled by the runner: never leave the plugin running
            await _kill_group(proc)
            raise
        elapsed = time.perf_counter() - started
        return self._judge(code, stdout, stderr, elapsed)

    def _judge(self, code: int, stdout: bytes, stderr: bytes, elapsed: float) -> Result:
        message, perfdata = parse_output(stdout.decode("utf-8", errors="replace"))
        if not message:
            message = first_line(stderr.decode("utf-8", errors="replace"))
        numbers = dict(perfdata)
        numbers["latency_seconds"] = elapsed
        state = _EXIT_STATES.get(code)
        if state is None:
            state = State.UNKNOWN
            if code < 0:
                message = f"plugin killed by {_signal_name(-code)}" + (
                    f": {message}" if message else "")
            else:
                message = f"plugin exited with code {code}" + (f": {message}" if message else "")
        elif not message:
            message = f"plugin printed nothing (exit {code})"
        return Result(state, message[:300], numbers=numbers,
                      cause=Cause(self.cause) if self.cause and state is not State.OK else None)


async def _read_capped(stream: asyncio.StreamReader | None, limit: int) -> bytes:
    """Keep the first `limit` bytes and drain the rest, so the plugin never blocks on a pipe."""
    if stream is None:
        return b""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return bytes(kept)


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            await asyncio.shield(proc.wait())


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def parse_output(text: str) -> tuple[str, dict[str, float]]:
    """Split plugin output into (first-line message, perfdata numbers).

    Perfdata may follow `|` on the first line and, in long output, everything after the
    first `|` of the following lines.
    """
    lines = text.splitlines()
    if not lines:
        return "", {}
    message, _, perf = lines[0].partition("|")
    long_output = "\n".join(lines[1:])
    if "|" in long_output:
        perf += " " + long_output.split("|", 1)[1].replace("\n", " ")
    return message.strip(), parse_perfdata(perf)


def parse_perfdata(text: str) -> dict[str, float]:
    """`'label'=value[UOM];warn;crit;min;max` items → {label: value in base units}.

    Time becomes seconds (ms, us) and sizes bytes (KB, MB... as powers of 1024, as the
    monitoring-plugins use them); `%` and counters (`c`) are kept as they are. Values that
    are `U` (undetermined) or not numbers are skipped.
    """
    numbers: dict[str, float] = {}
    for match in _PERF_ITEM.finditer(text):
        label = (match.group(1) or match.group(2) or "").replace("''", "'")
        value = _PERF_VALUE.match(match.group(3).split(";", 1)[0])
        if not label or value is None:
            continue
        number = float(value.group(1).replace(",", "."))
        numbers[label] = number * _UNITS.get(value.group(2), 1.0)
    return numbers
