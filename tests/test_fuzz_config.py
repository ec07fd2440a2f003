"""Config fuzzer (issue 11): mutate config.example.yaml and require exit 0 or 2, nothing else.

The attack that filed issue 11 ran 2,500 config variants and got 223 tracebacks and 7 hangs.
This keeps that class of bug out: property-based (hypothesis) tree mutations of the example
(types, nulls, huge numbers, deep nesting, unicode and lone surrogates, aliases, duplicates)
and text mutations of its YAML (byte flips, insertions, cut lines, duplicated lines, other
encodings), each run through the real `hismon validate` code path (`monitor.commands.cli.main`
in-process, for speed, plus a few real subprocesses). Every variant must exit 0 or 2, never
raise, never report a loader bug, finish within a few seconds and stay within a memory bound.

CI runs a bounded number of examples (about a minute); set HISMON_FUZZ_EXAMPLES for more,
e.g. `HISMON_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz_config.py`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.commands.cli import main
from monitor.config.loader import INTERNAL, merged_data

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.yaml"
EXAMPLES = int(os.environ.get("HISMON_FUZZ_EXAMPLES", "120"))
SECONDS_PER_VARIANT = 8.0
"""Generous for a loaded 2-core CI machine; a normal variant takes ~0.2 s."""
MEMORY_GROWTH_KIB = 600_000
BASE: dict[str, Any] = merged_data(EXAMPLE)
BASE_TEXT = yaml.safe_dump(BASE, allow_unicode=True, sort_keys=False)
RAN: dict[str, int] = {"tree": 0, "text": 0, "subprocess": 0}
DEEP = "__hismon_fuzz_deep__"


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so no `except Exception` in the loader hides it."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expired(_signum: int, _frame: Any) -> None:
        raise Hang(f"validate took longer than {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def validate_bytes(content: bytes, tmp: Path) -> tuple[int, str]:
    """`hismon validate -c FILE` in this process: (exit code, stderr)."""
    path = tmp / "fuzzed.yaml"
    path.write_bytes(content)
    out, err = io.StringIO(), io.StringIO()
    code: Any = None
    with time_limit(SECONDS_PER_VARIANT), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        try:
            main(["validate", "-c", str(path)])
        except SystemExit as exc:
            code = exc.code
    return (code if isinstance(code, int) else 1), err.getvalue()


_START_RSS = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def judge(content: bytes, tmp: Path) -> None:
    code, err = validate_bytes(content, tmp)
    assert code in (0, 2), f"exit {code}: {err[-2000:]}"
    assert INTERNAL not in err, err[-2000:]
    if code == 2:
        first = err.splitlines()[0] if err else ""
        assert first.startswith(str(tmp / "fuzzed.yaml") + ":"), first
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - _START_RSS
    assert grown < MEMORY_GROWTH_KIB, f"memory grew {grown} KiB"


# ---- tree mutations ---------------------------------------------------------------------

def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*path, index))
    return found


PATHS = _paths(BASE)[1:]
SURROGATE = "\ud83d"
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=10**20, max_value=10**40),
    st.just("__hismon_fuzz_huge__"), st.just(-(10**300)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), max_size=20).map(lambda s: s + SURROGATE),
    st.sampled_from(["99999999999999999999d", "1ms", "0s", "-5s", "30x", "1e309", "${UNSET}",
                     "${", "127.0.0.1:99999", "0/min", "sqlite://", "9999-12-31T23:59:59+08:00",
                     "postgresql://u@127.0.0.1/db?pool_size=abc", "{host.address}", "", " ",
                     "医院", "🏥", "\x00", "\t", "<<", "role:", "department:", "departments"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


@st.composite
def tree_variants(draw: st.DrawFn) -> bytes:
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(PATHS))
        parent, key = _parent(data, path)
        if parent is None:
            continue
        action = draw(st.sampled_from(["replace", "replace", "delete", "unknown-key", "share",
                                       "deep", "duplicate-item", "wrap"]))
        if action == "replace":
            parent[key] = draw(values)
        elif action == "delete":
            del parent[key]
        elif action == "unknown-key" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(values)
        elif action == "share":  # the dumper writes a shared object as an anchor and aliases
            other = draw(st.sampled_from(PATHS))
            source, source_key = _parent(data, other)
            if source is not None:
                parent[key] = source[source_key]
        elif action == "deep":
            parent[key] = DEEP
        elif action == "duplicate-item" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif action == "wrap":
            parent[key] = [parent[key]] if draw(st.booleans()) else {"x": parent[key]}
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    depth = draw(st.sampled_from([10, 70, 2000, 100_000]))
    text = text.replace(DEEP, "[" * depth + "]" * depth)
    text = text.replace("__hismon_fuzz_huge__", "9" * draw(st.sampled_from([4301, 50_000])))
    return text.encode("utf-8", "surrogatepass")


def _parent(data: Any, path: tuple[Any, ...]) -> tuple[Any, Any]:
    node = data
    for part in path[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None, None
    if isinstance(node, dict) and path[-1] in node:
        return node, path[-1]
    if isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        return node, path[-1]
    return None, None


fuzz_settings = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                         suppress_health_check=list(HealthCheck), database=None)


@fuzz_settings
@given(content=tree_variants())
def test_tree_mutations_exit_0_or_2(content: bytes, tmp_path_factory: Any) -> None:
    RAN["tree"] += 1
    judge(content, _scratch(tmp_path_factory))


# ---- text mutations ---------------------------------------------------------------------

BOMB = ("x0: &x0 [a, a, a, a, a, a, a, a, a]\n" + "".join(
    f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 9) + "]\n" for i in range(1, 10)))


@st.composite
def text_variants(draw: st.DrawFn) -> bytes:
    raw = bytearray(BASE_TEXT.encode("utf-8"))
    lines = BASE_TEXT.splitlines(keepends=True)
    action = draw(st.sampled_from(["flip", "insert", "cut", "duplicate-line", "drop-line",
                                   "encoding", "bom", "bomb", "indent", "truncate"]))
    if action == "flip":
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(raw) - 1))
            raw[at] = draw(st.integers(0, 255))
        return bytes(raw)
    if action == "insert":
        at = draw(st.integers(0, len(raw)))
        return bytes(raw[:at]) + draw(st.binary(min_size=1, max_size=20)) + bytes(raw[at:])
    if action == "cut":
        start = draw(st.integers(0, len(raw) - 1))
        return bytes(raw[:start]) + bytes(raw[start + draw(st.integers(1, 400)):])
    if action in ("duplicate-line", "drop-line", "indent"):
        index = draw(st.integers(0, len(lines) - 1))
        if action == "duplicate-line":
            lines.insert(index, lines[index])
        elif action == "drop-line":
            del lines[index]
        else:
            lines[index] = draw(st.sampled_from(["\t", " ", "   "])) + lines[index]
        return "".join(lines).encode("utf-8")
    if action == "encoding":
        codec = draw(st.sampled_from(["gbk", "utf-16", "utf-16-le", "latin-1", "utf-32"]))
        return BASE_TEXT.encode(codec, errors="replace")
    if action == "bom":
        return b"\xef\xbb\xbf" + bytes(raw)
    if action == "bomb":
        return BOMB.encode() + bytes(raw)
    return bytes(raw[:draw(st.integers(0, len(raw)))])


@fuzz_settings
@given(content=text_variants())
def test_text_mutations_exit_0_or_2(content: bytes, tmp_path_factory: Any) -> None:
    RAN["text"] += 1
    judge(content, _scratch(tmp_path_factory))


_SCRATCH: list[Path] = []


def _scratch(factory: Any) -> Path:
    if not _SCRATCH:
        _SCRATCH.append(factory.mktemp("fuzz"))
    return _SCRATCH[0]


# ---- a few real subprocesses ------------------------------------------------------------

@settings(max_examples=3, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(content=st.one_of(tree_variants(), text_variants()))
def test_a_few_variants_through_the_real_command(content: bytes, tmp_path_factory: Any) -> None:
    RAN["subprocess"] += 1
    path = _scratch(tmp_path_factory) / "sub.yaml"
    path.write_bytes(content)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "monitor", "validate", "-c", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode in (0, 2), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < 60


@pytest.fixture(scope="module", autouse=True)
def report_count(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    line = (f"config fuzzer: {RAN['tree']} tree + {RAN['text']} text variants in process, "
            f"{RAN['subprocess']} through `hismon validate` (HISMON_FUZZ_EXAMPLES={EXAMPLES})")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\n{line}", file=sys.stderr)
