"""A state database deleted or replaced under a running daemon (issue 11 item 6).

SQLite goes on writing into a deleted file's inode as if nothing happened; everything
written after that is gone at the next restart, and a new, empty store would hand out
`inc-1` again, with the same idempotency keys. So housekeeping asks the store every second
whether it is still the one it opened (`Store.identity_problem`: the file's device and inode,
the identity row written when the store was created, the tables). When it is not:

- the log says so (`store_replaced`, error), `/readyz` answers 503 naming the cause, and IT
  gets `monitor_degraded` through `self_alerts`, until the config is reloaded (SIGHUP) or
  hismon restarted: an operator has to look;
- the daemon does not carry on into the void: it re-opens the store at its URL (a new,
  empty one, or whatever is there now, e.g. a restored backup) and adopts it. Its identity
  differs, so incident ids (`inc-N-TAG`, TAG from the identity) and with them the
  messages' idempotency keys are never those of the lost store; check states are written
  again, and the incident engine starts afresh from the new store: a system still failing
  gets a new incident whose `started_at` is still its first failed probe (the check states
  in memory survive), and its plan runs again under the new id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from monitor.core.timefmt import iso

if TYPE_CHECKING:
    from monitor.runtime.daemon import Daemon

log = structlog.get_logger("hismon.storewatch")


async def adopt_replaced_store(daemon: Daemon, problem: str) -> None:
    """Say what happened, then continue in the store now at the URL (see the module)."""
    old_id, old_tag = daemon.store.store_id, daemon.store.tag
    lost = sorted(i.id for i in daemon.engine.open.values())
    log.error("store_replaced", problem=problem, store=old_id, open_incidents=lost)
    noticed = iso(daemon.clock(), daemon.config.site.tz)
    # Said before the store closes: a /readyz while it re-opens names the cause, not only
    # "store unreachable".
    daemon.store_identity_error = f"{problem} (noticed {noticed}); hismon is re-opening it"
    await daemon.store.close()
    await daemon.store.open()
    store = daemon.store
    gone = f"; incidents open before ({', '.join(lost[:10])}) are not in it" if lost else ""
    daemon.store_identity_error = (
        f"{problem} (noticed {noticed}); hismon now writes to store {store.tag or '?'} "
        f"(was {old_tag or '?'}){gone}. Reload or restart hismon to clear this")
    log.error("store_adopted", store=store.store_id, created=store.created,
              previous=old_id)
    daemon.link_key = await store.link_key()
    daemon.engine.link_key = daemon.link_key
    daemon.engine.resave(daemon.states)  # write every check state again
    if daemon.leading:  # a fresh engine and outbox on the new store
        await daemon.restart_term()
        for state in daemon.states.values():
            if state.troubled:
                daemon.engine.system_changed(state.system)
