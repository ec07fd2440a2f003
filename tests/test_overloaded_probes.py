"""A probe whose time limit expires while hismon's own loop is held up judges nothing.

SPEC 12: overload shows as lag and missed runs, never as false failures. When the loop is
busy (CPU starved, a stall) past a probe's limit, the target's answer may be sitting unread
in the socket: such a probe is UNKNOWN with `own_fault="loop"` (kept out of the state
machine like running out of descriptors), while a failure the target really gave (refused,
silent with the loop free) is judged as before.

The targets run in threads, so they answer while the test holds the loop with `time.sleep`
(which releases the GIL); the loop is held from a callback, as a stall in the daemon would.
"""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from checks.base import ProbeContext
from monitor.core.exhaustion import late_limit
from monitor.core.result import Result, State
from monitor.probing.state import CheckState, advance, hold
from tests.probe_helpers import closed_port, make_check, probe

pytestmark = pytest.mark.both_loops


@contextmanager
def threaded_target(answer: bytes, after: float, read_first: bool) -> Iterator[int]:
    """A listener in a thread: (reads the request,) waits `after` s, writes `answer`."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            sock.settimeout(5)
            try:
                if read_first:
                    sock.recv(65536)
                time.sleep(after)
                if answer:
                    sock.sendall(answer)
                    time.sleep(0.5)  # keep it open: the probe closes first
                else:
                    time.sleep(3)
            except OSError:
                pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def hold_loop_soon(seconds: float, after: float = 0.02) -> None:
    """Block the running loop for `seconds`, `after` s from now (a stall in the daemon)."""
    asyncio.get_running_loop().call_later(after, time.sleep, seconds)


HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nUP"


async def test_a_banner_that_came_while_the_loop_was_held_is_not_a_failure() -> None:
    with threaded_target(b"220 ready\r\n", after=0.1, read_first=False) as port:
        hold_loop_soon(1.6)
        result = await probe({"type": "tcp", "host": "127.0.0.1", "port": port,
                              "expect": "220", "timeout": "1s"})
    assert result.state is State.UNKNOWN, result.message
    assert result.own_fault == "loop"
    assert result.message.startswith("not judged: hismon's event loop was ")
    assert result.message.endswith("this says nothing about the target")


async def test_an_http_answer_that_came_while_the_loop_was_held_is_not_a_failure() -> None:
    with threaded_target(HTTP_OK, after=0.1, read_first=True) as port:
        hold_loop_soon(1.6)
        result = await probe({"type": "http", "url": f"http://127.0.0.1:{port}/health",
                              "timeout": "1s"})
    assert result.state is State.UNKNOWN, result.message
    assert result.own_fault == "loop"


async def test_the_same_answers_with_the_loop_free_are_judged() -> None:
    with threaded_target(b"220 ready\r\n", after=0.1, read_first=False) as port:
        tcp = await probe({"type": "tcp", "host": "127.0.0.1", "port": port,
                           "expect": "220", "timeout": "1s"})
    with threaded_target(HTTP_OK, after=0.1, read_first=True) as port:
        http = await probe({"type": "http", "url": f"http://127.0.0.1:{port}/health",
                            "timeout": "1s"})
    assert tcp.state is State.OK and http.state is State.OK, (tcp.message, http.message)


async def test_a_silent_target_with_the_loop_free_is_still_a_timeout() -> None:
    with threaded_target(b"", after=0.0, read_first=False) as port:
        result = await probe({"type": "tcp", "host": "127.0.0.1", "port": port,
                              "expect": "220", "timeout": "1s"})
    assert result.state is State.CRIT and result.own_fault is None, result.message


async def test_a_refusal_before_the_loop_was_held_is_still_judged() -> None:
    """The target's own answer came before the stall: the stall changes nothing."""
    ctx = ProbeContext()
    try:
        hold_loop_soon(1.6, after=0.0)
        result = await probe({"type": "tcp", "host": "127.0.0.1", "port": closed_port(),
                              "timeout": "1s"}, ctx)
    finally:
        await ctx.close()
    assert result.state is State.CRIT and result.own_fault is None, result.message
    assert result.message.startswith("connection refused")


async def test_an_overloaded_result_opens_nothing_and_is_counted_for_the_self_alert() -> None:
    ctx = ProbeContext()
    state = CheckState("t", "s", "tcp")
    advance(state, Result(State.OK, "ok"), 0.0, 2, 1)
    try:
        with threaded_target(b"220 ready\r\n", after=0.1, read_first=False) as port:
            check = make_check({"type": "tcp", "host": "127.0.0.1", "port": port,
                                "expect": "220", "timeout": "1s"})
            for _ in range(3):  # more than confirm: were they judged, the check would be CRIT
                hold_loop_soon(1.6)
                result = await probe(check, ctx)
                assert result.own_fault == "loop", result.message
                hold(state, result)
    finally:
        await ctx.close()
    assert state.hard_state is State.OK and state.state is State.UNKNOWN
    assert ctx.exhaustion.counts == {"loop": 3}
    assert ctx.exhaustion.active(time.time())


def test_how_late_a_limit_may_expire() -> None:
    assert late_limit(1.0) == 0.25
    assert late_limit(10.0) == 1.0
