"""monitor/runtime/memtrim.py: glibc's thresholds pinned, so freed big blocks leave RSS."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys
import textwrap

import pytest

from monitor.runtime import memtrim

CHILD = textwrap.dedent("""
    import sys
    from monitor.runtime import memtrim

    def heap() -> tuple[int, int]:
        with open("/proc/self/maps") as maps:
            for line in maps:
                if line.rstrip().endswith("[heap]"):
                    low, high = line.split()[0].split("-")
                    return int(low, 16), int(high, 16)
        return 0, 0

    if sys.argv[1] == "fix":
        assert memtrim.fix_thresholds()
    big = bytes(8 << 20)  # mmapped (above 128 KiB); freeing it raises glibc's threshold
    del big
    block = bytes(1 << 20)
    low, high = heap()
    print("heap" if low <= id(block) < high else "mapped")
""")


def _where(mode: str) -> str:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                         check=True, timeout=60)
    return out.stdout.strip()


@pytest.mark.skipif(not (sys.platform.startswith("linux") and ctypes.util.find_library("c")
                         and memtrim._load() is not None), reason="glibc only")
def test_a_freed_big_block_no_longer_moves_later_ones_onto_the_heap() -> None:
    # glibc's own behaviour, the reason for the fix: after an 8 MiB block is freed, a 1 MiB
    # block comes from the heap, whose freed pages stay in RSS until a trim
    if _where("default") != "heap":
        pytest.skip("this malloc does not adapt its mmap threshold")
    # pinned: the 1 MiB block is a mapping of its own, returned to the OS when freed
    assert _where("fix") == "mapped"


def test_trim_runs_when_forced_and_not_again_within_the_gap(
        monkeypatch: pytest.MonkeyPatch) -> None:
    if memtrim._load() is None:
        pytest.skip("no malloc_trim here")
    monkeypatch.setattr(memtrim, "MIN_GAP", 1e9)
    assert memtrim.trim(force=True) is True
    assert memtrim.trim() is False  # within MIN_GAP of the forced one


def test_settle_freezes_start_up_and_makes_full_collections_rare() -> None:
    """In a child (settle changes the process's collector): the start-up objects are frozen,
    and a full pass waits FULL_PASS_EVERY middle ones (CPython's default: 10)."""
    child = textwrap.dedent("""
        import gc
        from monitor.runtime import memtrim
        kept = [[i] for i in range(10000)]
        assert gc.get_threshold()[2] == 10
        memtrim.settle()
        print(gc.get_freeze_count() >= 10000, gc.get_threshold()[2])
    """)
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.split() == ["True", str(memtrim.FULL_PASS_EVERY)]
    assert memtrim.FULL_PASS_EVERY >= 100
