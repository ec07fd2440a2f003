"""How a reload loads (monitor/config/reload.py): what it does to the interpreter and the watch.

A SIGHUP after an edit is one load (the file watch does not load the same edit again), a
change made while a load runs is still noticed, the loaded config is frozen out of the
cyclic collector's walks, the thread switch interval is short only while the load runs, and
a config that fails validation is never applied.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from pathlib import Path
from typing import Any

from monitor.config.loader import ConfigError, load_config
from monitor.config.reload import LOAD_SWITCH_INTERVAL, Reloader, WatchedFiles

GOOD = """\
systems: [{id: his, name: HIS}]
checks:
  - {id: web, system: his, type: tcp, host: 127.0.0.1, port: 9}
"""


def touch_later(path: Path, text: str) -> None:
    """Write with an mtime surely different from the last (coarse file system clocks)."""
    before = path.stat().st_mtime if path.exists() else 0.0
    path.write_text(text)
    os.utime(path, (before + 2.0, before + 2.0))


async def test_a_sighup_after_an_edit_is_one_load_and_later_edits_are_still_seen(
        tmp_path: Path) -> None:
    main = tmp_path / "hismon.yaml"
    main.write_text(GOOD)
    watch = WatchedFiles([str(main)])
    applied: list[str] = []
    edit_during_load = [False]

    def load(path: str) -> Any:
        if edit_during_load[0]:
            touch_later(main, GOOD + "# edited while the load ran\n")
        return load_config(path, env={})

    reloader = Reloader(str(main), lambda config, reason: applied.append(reason),
                        lambda exc: None, load=load, watch=watch)
    touch_later(main, GOOD + "# an edit\n")
    assert await reloader.request("SIGHUP")
    assert applied == ["SIGHUP"]
    assert not watch.changed(), "the watch would load the edit the SIGHUP already loaded"

    edit_during_load[0] = True
    touch_later(main, GOOD + "# another edit\n")
    assert await reloader.request("SIGHUP")
    assert watch.changed(), "an edit made while a load ran must still cause a reload"


async def test_a_config_that_fails_validation_is_not_applied(tmp_path: Path) -> None:
    main = tmp_path / "hismon.yaml"
    main.write_text(GOOD.replace("port: 9", "port: 99999"))
    applied: list[Any] = []
    rejected: list[ConfigError] = []
    reloader = Reloader(str(main), lambda config, reason: applied.append(config),
                        rejected.append, load=lambda path: load_config(path, env={}))
    assert not await reloader.request("SIGHUP")
    assert applied == []
    assert [p.path for p in rejected[0].problems] == ["checks[0].port"]
    assert str(rejected[0].problems[0]).startswith(f"{main}:3: checks[0].port: ")


async def test_the_load_runs_with_a_short_switch_interval_and_its_objects_frozen(
        tmp_path: Path) -> None:
    main = tmp_path / "hismon.yaml"
    main.write_text(GOOD)
    seen: list[float] = []

    def load(path: str) -> Any:
        seen.append(sys.getswitchinterval())
        return load_config(path, env={})

    before_interval, before_frozen = sys.getswitchinterval(), gc.get_freeze_count()
    enabled = gc.isenabled()
    reloader = Reloader(str(main), lambda config, reason: None, lambda exc: None, load=load)
    assert await reloader.request("SIGHUP")
    assert seen == [min(before_interval, LOAD_SWITCH_INTERVAL)]
    assert sys.getswitchinterval() == before_interval
    assert gc.get_freeze_count() > before_frozen, "the loaded config was not frozen"
    assert gc.isenabled() == enabled


def test_reading_marks_the_files_as_seen(tmp_path: Path) -> None:
    main = tmp_path / "a.yaml"
    main.write_text("x: 1\n")
    watch = WatchedFiles([str(main)])
    touch_later(main, "x: 2\n")
    watch.reading()
    assert not watch.changed()
    touch_later(main, "x: 3\n")
    assert watch.changed()


async def test_requests_soon_after_a_load_join_one_load_after_the_gap(tmp_path: Path) -> None:
    now = [100.0]
    applied: list[str] = []
    reloader = Reloader("x.yaml", lambda config, reason: applied.append(reason),
                        lambda exc: None, load=lambda path: object(),  # type: ignore[arg-type,return-value]
                        min_gap=0.2, clock=lambda: now[0])
    assert await reloader.request("r0")
    now[0] += 0.05  # within the gap: the next load waits 0.15 s, and every request joins it
    futures = [reloader.request(f"r{i}") for i in range(1, 4)]
    assert all(await asyncio.gather(*futures))
    await reloader.wait()
    assert applied == ["r0", "r1, r2, r3"] and reloader.loads == 2
    now[0] += 1.0  # after the gap: at once
    assert await reloader.request("r4")
    assert applied[-1] == "r4" and reloader.loads == 3


def test_the_config_run_starts_with_is_frozen(tmp_path: Path) -> None:
    from monitor.commands.cli import load_for_run

    main = tmp_path / "hismon.yaml"
    main.write_text(GOOD)
    before, enabled = gc.get_freeze_count(), gc.isenabled()
    config = load_for_run(str(main))
    assert [c.id for c in config.checks] == ["web"]
    assert gc.get_freeze_count() > before and gc.isenabled() == enabled
