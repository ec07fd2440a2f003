"""systemd readiness notification (sd_notify), so `Type=notify` units know when hismon is up.

With `Type=notify`, `systemctl start hismon` returns only once the daemon has loaded its
config, opened its store and is listening; a broken start fails the unit instead of
looking healthy for a second. The protocol is one datagram of `KEY=VALUE` lines to the
unix socket named in `$NOTIFY_SOCKET` (a leading `@` means the abstract namespace). Without
that variable (not under systemd, or `Type=simple`) every call is a no-op returning False.

The owner wires it into `Daemon`: `ready()` after `start()`, `reloading()` / `ready()`
around a reload, `stopping()` when shutdown begins.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger("hismon.sdnotify")


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one notification; True if it was handed to systemd's socket."""
    path = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if path.startswith("@"):
        address = "\0" + path[1:]
    elif path.startswith("/"):
        address = path
    else:  # unset, or a vsock address this daemon never runs under
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(1.0)  # a datagram to a local socket; never hold up the loop
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        # Not fatal: systemd will time the start out and say so in its own log.
        log.warning("sd_notify_failed", error=str(exc))
        return False
    return True


def ready(status: str = "probing", env: Mapping[str, str] | None = None) -> bool:
    """Startup (or a reload) finished: config loaded, store open, HTTP listening."""
    return notify(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}", env)


def reloading(env: Mapping[str, str] | None = None) -> bool:
    """A reload began; `MONOTONIC_USEC` is what `Type=notify-reload` (systemd 253+) wants."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}", env)


def stopping(env: Mapping[str, str] | None = None) -> bool:
    """Shutdown began: systemd shows `deactivating` instead of a hung service."""
    return notify("STOPPING=1", env)


def status(text: str, env: Mapping[str, str] | None = None) -> bool:
    """Free text shown by `systemctl status`, e.g. "412 checks, 1 open incident"."""
    return notify(f"STATUS={text}", env)
