"""The house rules of the layout (issue 9), checked from the source: no import cycle anywhere,
`checks/` and `notifiers/` know nothing of `monitor/` but `monitor.core`, and every module
imports on its own in a fresh interpreter.

Imports are read with `ast` from every module under `monitor/`, `checks/` and `notifiers/`,
including imports inside functions (a lazy import is still a dependency); imports under
`if TYPE_CHECKING:` are left out, because they never run. An import names the deepest module
it reaches: `from monitor.web import api` depends on `monitor.web.api`, `from monitor.store
import Store` on the package `monitor.store`.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("monitor", "checks", "notifiers")
KNOWN_CYCLES: dict[tuple[str, ...], str] = {}
"""Cycles still being removed elsewhere, each with its reason: xfail(strict) until gone,
so removing one makes its case pass and fail strictly until it is taken off this list."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            for statement in node.orelse:  # `else:` of TYPE_CHECKING runs
                yield from _import_nodes(ast.Module(body=[statement], type_ignores=[]))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _import_nodes(node)


def _resolve(name: str) -> str | None:
    """The deepest module of ours that `name` (a dotted path) reaches, or None."""
    known = modules()
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


@cache
def imports_of(module: str) -> frozenset[str]:
    path = modules()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
        for target in targets:
            resolved = _resolve(target)
            if resolved is not None and resolved != module:
                found.add(resolved)
    return frozenset(found)


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    graph = {m: sorted(imports_of(m)) for m in modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return sorted(found)


def cycle_path(component: list[str]) -> str:
    """One concrete loop through a component, for the failure message."""
    members = set(component)
    start = component[0]
    path = [start]
    seen = {start}
    node = start
    while True:
        nxt = next(n for n in sorted(imports_of(node)) if n in members)
        if nxt in seen:
            path.append(nxt)
            return " -> ".join(path[path.index(nxt):])
        path.append(nxt)
        seen.add(nxt)
        node = nxt


def test_the_walk_sees_the_imports_it_must() -> None:
    """The walker itself: the daemon's lazy import of the web app counts, TYPE_CHECKING not."""
    assert "monitor.web.app" in imports_of("monitor.runtime.daemon")
    assert "monitor.runtime.daemon" not in imports_of("monitor.runtime.webside")
    assert "monitor.core.result" in imports_of("checks.base") | {
        m for dep in imports_of("checks.base") for m in imports_of(dep)}
    assert len(modules()) > 50


def test_no_import_cycle() -> None:
    """Every cycle is a knot a newcomer cannot untie: each module must import on its own."""
    known = {frozenset(c) for c in KNOWN_CYCLES}
    unexpected = [c for c in cycles() if frozenset(c) not in known]
    assert not unexpected, "import cycles:\n" + "\n".join(cycle_path(c) for c in unexpected)


@pytest.mark.parametrize("members", [
    pytest.param(list(members), id="+".join(members),
                 marks=pytest.mark.xfail(strict=True, reason=reason))
    for members, reason in KNOWN_CYCLES.items()] or [pytest.param(None, id="none-known")])
def test_known_cycle_is_gone(members: list[str] | None) -> None:
    """Fails (as expected) while the known cycle exists; passes, hence fails strictly, once
    it is removed: then delete it from KNOWN_CYCLES."""
    if members is not None:
        assert frozenset(members) not in {frozenset(c) for c in cycles()}


@pytest.mark.parametrize("package", ["checks", "notifiers"])
def test_probes_and_channels_import_only_monitor_core(package: str) -> None:
    """`checks/` and `notifiers/` are plug-ins: they may know `monitor.core` and nothing else."""
    wrong = sorted(
        f"{module} imports {target}"
        for module in modules() if module.split(".")[0] == package
        for target in imports_of(module)
        if target.split(".")[0] == "monitor" and not (
            target == "monitor.core" or target.startswith("monitor.core.")))
    assert not wrong, "\n".join(wrong)


def import_alone(module: str) -> str | None:
    """Import `module` in a new interpreter with nothing of ours loaded; the error, or None."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode == 0:
        return None
    return f"{module}:\n{done.stderr.strip()[-1500:]}"


def test_every_module_imports_on_its_own() -> None:
    """A module that works only when something else was imported first breaks the first
    newcomer who imports it from a test or a script. The static walk above cannot see every
    such case (`import monitor` then `monitor.core.text.scrub` at import time, an order that
    only a partial import exposes), so each module is really imported, alone, in its own
    interpreter (~30 s for the whole tree on two cores, one import per core at a time)."""
    names = sorted(modules())
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        failures = [f for f in pool.map(import_alone, names) if f is not None]
    assert not failures, "\n\n".join(failures)


# ---- the README's architecture diagram matches the tree ---------------------------------

README = REPO / "README.md"
PATH_MENTION = re.compile(r"\b(?:monitor|checks|notifiers|tests|bench|deploy|docs)/[\w./-]*\w")
BLOCK_START = re.compile(r"^[\s│]*monitor/(\w+)\s")
WORD = re.compile(r"(?<![\w/.<])[a-z_][a-z0-9_]*(?![\w/>])")
"""A lower-case word of the diagram, not part of a path or a `<placeholder>`."""


def architecture_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Architecture\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def diagram_blocks() -> dict[str, str]:
    """Subpackage -> its text in the diagram: the line naming `monitor/<pkg>` at its start
    and the lines under it, up to the next package, an arrow line or a blank line."""
    diagram = architecture_section().split("```\n")[1]
    blocks: dict[str, str] = {}
    current: str | None = None
    for line in diagram.splitlines():
        started = BLOCK_START.match(line + " ")
        if started:
            current = started.group(1)
            assert current not in blocks, f"monitor/{current} drawn twice"
            blocks[current] = line[started.end():]
        elif current is not None and line.strip(" │▼") != "":
            blocks[current] += " " + line
        else:
            current = None
    return blocks


def subpackages() -> dict[str, set[str]]:
    """`monitor/` subpackage -> the names of its modules."""
    found: dict[str, set[str]] = {}
    for init in sorted((REPO / "monitor").glob("*/__init__.py")):
        found[init.parent.name] = {p.stem for p in init.parent.glob("*.py")} - {"__init__"}
    return found


def test_the_architecture_diagram_draws_every_subpackage_and_module() -> None:
    """Each subpackage has its place in the README's diagram, naming every module it holds,
    and no name of another subpackage's module stands under it (a module moved but not its
    line): a newcomer can trust the drawing. A new module means one more word there."""
    blocks, packages = diagram_blocks(), subpackages()
    assert sorted(blocks) == sorted(packages), "subpackages drawn vs. in monitor/"
    problems = []
    everywhere = set().union(*packages.values())
    for package, text in blocks.items():
        words = set(WORD.findall(PATH_MENTION.sub(" ", text)))
        problems += [f"monitor/{package}/{m}.py is not named in its diagram line"
                     for m in sorted(packages[package] - words)]
        problems += [f"{w} is drawn under monitor/{package}, but is not one of its modules"
                     for w in sorted((words & everywhere) - packages[package])]
    assert not problems, "\n".join(problems)


def test_every_path_the_readme_names_exists() -> None:
    text = README.read_text(encoding="utf-8")
    missing = sorted({p for p in PATH_MENTION.findall(text) if not (REPO / p).exists()})
    assert not missing, missing


# ---- one helper, one home (issue 9 item 6) -----------------------------------------------

HOMES = {
    "first_line": "monitor.core.text", "one_line": "monitor.core.text",
    "scrub": "monitor.core.text", "host_port": "monitor.core.text",
    "iso": "monitor.core.timefmt", "token_valid": "monitor.web.guard",
}
"""Shared helpers and the one module that defines them (anyone else imports it)."""
WALL_CLOCK = re.compile(r"""strftime\(\s*["']%Y-%m-%d %H:%M""")
"""A site-local date and time written out by hand instead of `timefmt.local_time`."""
COMPARE_DIGEST_HOMES = {"monitor.web.guard", "monitor.links.tokens"}
"""The API token check and the signed link's MAC check: the only constant-time compares."""


def test_each_shared_helper_has_one_home() -> None:
    """A second `first_line` or time formatter drifts from the first (issue 9 found four
    `first_line`s and three time formatters): a module-level function of one of these names
    is defined only in its home, a wall-clock time is written only by `timefmt`, and tokens
    are compared in constant time only by the two checks that exist."""
    problems = []
    for module, path in modules().items():
        source = path.read_text(encoding="utf-8")
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and \
                    HOMES.get(node.name, module) != module:
                problems.append(f"{module} defines {node.name}; its home is {HOMES[node.name]}")
        if module != "monitor.core.timefmt" and WALL_CLOCK.search(source):
            problems.append(f"{module} formats a wall-clock time: use timefmt.local_time")
        if module not in COMPARE_DIGEST_HOMES and "compare_digest" in source:
            problems.append(f"{module} compares a secret itself: use guard.token_valid")
    assert not problems, "\n".join(problems)


def test_every_set_of_message_kinds_holds_only_declared_kinds() -> None:
    """A module-level `*_KINDS` set or tuple is made of `MessageKind` members, so a misspelt
    kind is a mypy error and an unknown one fails here (issue 9 item 5). Sets of link or
    confirmation kinds that are not message kinds live under other names."""
    import importlib

    from monitor.core.types import MessageKind

    found: dict[str, int] = {}
    for module in modules():
        if not module.startswith("monitor."):
            continue
        loaded = importlib.import_module(module)
        for name, value in vars(loaded).items():
            if not name.endswith("KINDS") or not isinstance(value, (tuple, frozenset, set)):
                continue
            if not value:
                continue
            strays = [k for k in value if not isinstance(k, MessageKind)]
            assert not strays, f"{module}.{name} holds {strays}, not MessageKind members"
            found[f"{module}.{name}"] = len(value)
    for expected in ("monitor.delivery.outbox.URGENT_KINDS", "monitor.links.make.ACK_KINDS",
                     "monitor.runtime.selfwatch.SELF_KINDS", "monitor.people.review.IT_KINDS"):
        assert expected in found, f"{expected} not seen: {sorted(found)}"
