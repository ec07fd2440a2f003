"""Real faults for a SQLite state file, for the tests of hismon's store-down behaviour.

The tests run as root, so `chmod a-w` would not stop a single write; `chattr +i` (the ext4
"immutable" attribute) does, for root too: SQLite answers "disk I/O error", as for a
read-only file system. A full disk is a tiny tmpfs, mounted by the test and filled up:
SQLite answers "database or disk is full". Both are the real kernel refusing the write,
nothing is mocked. Where neither is possible (not root, no ext4, no mount rights) the
tests that need them skip, saying why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SIDE_FILES = ("", "-wal")
"""The database and its WAL. The `-shm` index stays writable: it is mapped in memory, and
readers need it (the daemon keeps reading while it cannot write)."""


def _chattr(flag: str, path: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    done = subprocess.run(["chattr", flag, str(path)], capture_output=True, check=False)
    return done.returncode == 0


def set_read_only(db: Path, on: bool) -> None:
    """Make the SQLite file (and its WAL) refuse writes, or take them again."""
    for suffix in SIDE_FILES:
        path = Path(f"{db}{suffix}")
        if path.exists() and not _chattr("+i" if on else "-i", path):
            if on:
                pytest.skip(f"cannot make {path.name} immutable (chattr +i needs root on ext4)")
            raise AssertionError(f"cannot make {path} writable again")


@contextlib.contextmanager
def read_only(db: Path) -> Iterator[None]:
    set_read_only(db, True)
    try:
        yield
    finally:
        set_read_only(db, False)


def can_make_immutable(directory: Path) -> bool:
    probe = directory / ".immutable-probe"
    probe.write_text("x")
    try:
        if not _chattr("+i", probe):
            return False
        _chattr("-i", probe)
        return True
    finally:
        probe.unlink()


@contextlib.contextmanager
def tiny_disk(directory: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `directory` (created), unmounted afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                           str(directory)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for a full disk: {done.stderr.decode()[:200]}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)


def fill(directory: Path) -> Path:
    """Fill the file system `directory` is on; returns the filler (remove it to free)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 65536)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 512)
    finally:
        os.close(fd)
    return filler
