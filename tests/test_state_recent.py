"""`RecentResults` keeps no leading OK results, and `unstable` judges exactly as before."""

from __future__ import annotations

import dataclasses
import random
from collections import deque
from collections.abc import Iterator

from monitor.core.result import Result, State
from monitor.probing.state import FLAP_WINDOW, CheckState, RecentResults, advance

OK = int(State.OK)


class FullWindow:
    """The window as it was before: every one of the last 21 results, OK ones too."""

    def __init__(self) -> None:
        self._items: deque[tuple[float, int]] = deque(maxlen=FLAP_WINDOW)

    def append(self, item: tuple[float, int]) -> None:
        self._items.append(item)

    def clear(self) -> None:
        self._items.clear()

    def __iter__(self) -> Iterator[tuple[float, int]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def count_state(self, state: int) -> int:
        return sum(1 for _, s in self._items if s == state)


def _without_leading_ok(items: list[tuple[float, int]]) -> list[tuple[float, int]]:
    for index, (_, state) in enumerate(items):
        if state != OK:
            return items[index:]
    return []


def test_the_window_is_the_full_one_without_its_leading_ok_results() -> None:
    rng = random.Random(7)
    recent, full = RecentResults(), FullWindow()
    for step in range(20_000):
        if rng.random() < 0.01:
            recent.clear()
            full.clear()
        else:
            state = rng.choices([0, 1, 2, 3], weights=[85, 5, 7, 3])[0]
            recent.append((float(step), state))
            full.append((float(step), state))
        assert list(recent) == _without_leading_ok(list(full))
        assert (recent._states is None) is (len(recent) == 0)  # no empty arrays kept
        assert len(recent) - recent.count_state(OK) == len(full) - full.count_state(OK)


def test_a_healthy_check_keeps_an_empty_window() -> None:
    cs = CheckState("c", "s", "tcp")
    for k in range(3 * FLAP_WINDOW):
        advance(cs, Result(State.OK, "ok"), float(k), 3, 2)
    assert len(cs.recent) == 0 and list(cs.recent) == []
    assert cs.recent._times is None and cs.recent._states is None  # no arrays at all


def test_unstable_judges_every_sequence_as_with_the_full_window() -> None:
    rng = random.Random(11)
    for run in range(300):
        kept = CheckState("c", "s", "http")
        full = CheckState("c", "s", "http", recent=FullWindow())  # type: ignore[arg-type]
        bad = rng.choice([0.05, 0.2, 0.35, 0.5])
        confirm, recover = rng.choice([(3, 2), (5, 1), (10, 3)])
        for k in range(200):
            state = (rng.choice([State.WARN, State.CRIT, State.UNKNOWN])
                     if rng.random() < bad else State.OK)
            now = run * 1000.0 + k
            a = advance(kept, Result(state, f"r{k}"), now, confirm, recover)
            b = advance(full, Result(state, f"r{k}"), now, confirm, recover)
            assert a == b
            for f in dataclasses.fields(CheckState):
                if f.name != "recent":
                    assert getattr(kept, f.name) == getattr(full, f.name), (run, k, f.name)
            assert list(kept.recent) == _without_leading_ok(list(full.recent))
