"""The main config file and every file it includes (SPEC §14), merged, each item knowing its file.

A hospital's estate is owned by several teams (network, PACS, servers), each in its own file.
Lists are concatenated and mappings merged one level deep, but every item remembers its file
and its index within that file's list, so a problem reads `conf.d/pacs.yaml:12: checks[3].port`
and a duplicate id names both places.

Which sections an included file may hold is derived from the model (every list or mapping
section of `Config`), so a new section added to the model is includable without edits here.
"""

from __future__ import annotations

import glob
import os
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.config.document import MAX_BYTES, Document, KeyPath, Problem, decode, format_path
from monitor.config.document import read_text as read_yaml

MAX_FILES = 2000
MAX_INCLUDE_DEPTH = 16
_GLOB = re.compile(r"[*?\[]")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _sections() -> tuple[frozenset[str], frozenset[str]]:
    from monitor.config.model import Config

    lists, maps = set(), set()
    for name, info in Config.model_fields.items():
        origin = typing.get_origin(info.annotation)
        if origin is list:
            lists.add(name)
        elif origin is dict:
            maps.add(name)
    return frozenset(lists), frozenset(maps)


class Origin:
    """Where a merged list item was written; generated items answer for their template."""

    def locate(self, section: str, rest: KeyPath) -> tuple[Document, KeyPath, str | None]:
        raise NotImplementedError  # pragma: no cover - abstract


@dataclass(frozen=True, slots=True)
class Written(Origin):
    doc: Document
    index: int

    def locate(self, section: str, rest: KeyPath) -> tuple[Document, KeyPath, str | None]:
        return self.doc, (section, self.index, *rest), None


@dataclass
class Sources:
    """Every file read, the merged data, and the origin of each list item and mapping key."""

    main: Document
    docs: list[Document] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    items: dict[str, list[Origin]] = field(default_factory=dict)
    keys: dict[str, dict[str, Document]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """Things `validate` says without failing (a glob that matched nothing)."""
    watch: list[str] = field(default_factory=list)
    """Files and glob directories whose change means a reload."""
    problems: list[Problem] = field(default_factory=list)

    # ---- where things are ----------------------------------------------------------

    def locate(self, path: KeyPath) -> tuple[str, int, str]:
        """(file, line, path as written in that file) for a path in the merged data."""
        if len(path) >= 2 and isinstance(path[1], int) and isinstance(path[0], str):
            origins = self.items.get(path[0])
            if origins is not None and 0 <= path[1] < len(origins):
                doc, local, label = origins[path[1]].locate(path[0], path[2:])
                return doc.file, doc.line_of(local), label or format_path(local)
        if len(path) >= 2 and isinstance(path[0], str) and isinstance(path[1], str):
            owner = self.keys.get(path[0], {}).get(path[1])
            if owner is not None:
                return owner.file, owner.line_of(path), format_path(path)
        return self.main.file, self.main.line_of(path), format_path(path)

    def where(self, path: KeyPath) -> str:
        file, line, text = self.locate(path)
        return f"{file}:{line} {text}"

    def report(self, path: KeyPath, message: str) -> None:
        file, line, text = self.locate(path)
        self.problems.append(Problem(file, line, text, message))

    @property
    def files(self) -> list[str]:
        return [doc.file for doc in self.docs]

    # ---- merging -------------------------------------------------------------------

    def add(self, doc: Document) -> None:
        lists, maps = _sections()
        main = doc is self.main
        for key, value in (doc.data or {}).items():
            if key in lists and isinstance(value, list):
                target = self.data.setdefault(key, [])
                if not isinstance(target, list):
                    continue  # the main file's own bad value is reported by the model
                origins = self.items.setdefault(key, [])
                for index, item in enumerate(value):
                    target.append(item)
                    origins.append(Written(doc, index))
            elif key in maps and isinstance(value, dict):
                target = self.data.setdefault(key, {})
                if not isinstance(target, dict):
                    continue
                owners = self.keys.setdefault(key, {})
                for name, item in value.items():
                    if name in owners:
                        first = owners[name]
                        doc.report((key, name), f"defined twice (first at {first.file}:"
                                                f"{first.line_of((key, name))})")
                        continue
                    target[name] = item
                    owners[name] = doc
            elif main:
                self.data[key] = value
            elif key in lists or key in maps:
                kind = "list" if key in lists else "mapping"
                if value is not None:
                    doc.report((key,), f"must be a {kind}")
            else:
                doc.report((key,), "allowed only in the main file (an included file holds "
                                   f"{', '.join(sorted(lists | maps))})")


def substitute_env(doc: Document, env: dict[str, str]) -> None:
    """Replace `${NAME}` and `${NAME:-default}` in every string, in place; an unset NAME is a
    problem. Shared (aliased) objects are visited once, so aliases cannot multiply the work.

    A file whose text has no `${` (and no backslash, which a double-quoted escape such as
    `\u0024{` would need) holds no such string: its ~50,000 strings per 10,000 checks are
    not walked."""
    if doc.text is not None and "${" not in doc.text and "\\" not in doc.text:
        return
    seen: set[int] = set()

    def replace(value: str, path: KeyPath) -> str:
        def one(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            doc.report(path, f"environment variable {name} is not set")
            return ""

        return _ENV.sub(one, value)

    stack: list[tuple[Any, KeyPath]] = [(doc.data, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        entries: Any = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in list(entries):
            if isinstance(value, str):
                if "${" in value:
                    node[key] = replace(value, (*path, key))
            elif isinstance(value, dict | list):
                stack.append((value, (*path, key)))


def read_file(path: Path, display: str) -> Document:
    """One file from disk as a Document; unreadable or badly encoded files are problems."""
    doc = Document(display)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            doc.problems.append(Problem(display, 1, "(file)",
                                        f"larger than {MAX_BYTES // 2**20} MiB: refused"))
            return doc
        raw = path.read_bytes()
    except OSError as exc:
        doc.problems.append(Problem(display, 1, "(file)", exc.strerror or str(exc)))
        return doc
    text, line, message = decode(raw)
    if text is None:
        doc.problems.append(Problem(display, line, "(file)", message))
        return doc
    return read_yaml(text, display)


def gather(main: Document, real: Path | None, env: dict[str, str] | None,
           reader: Callable[[Path, str], Document] = read_file) -> Sources:
    """Merge `main` and, depth first, every file it includes; problems collected, not raised.

    `env` None leaves `${NAME}` as written (for tools that re-dump the merged data).
    """
    sources = Sources(main)
    if real is not None:
        sources.watch.append(str(real))
    done: set[Path] = set()

    def visit(doc: Document, here: Path | None, trail: list[Path]) -> None:
        sources.docs.append(doc)
        if doc.problems:
            return
        if env is not None:
            substitute_env(doc, env)
        data = doc.data if isinstance(doc.data, dict) else {}
        includes = data.pop("include", None)
        sources.add(doc)
        if includes is None:
            return
        if isinstance(includes, str):
            includes = [includes]
        if not isinstance(includes, list):
            doc.report(("include",), "must be a list of file names or globs")
            return
        base = here.parent if here is not None else Path.cwd()
        shown = Path(doc.file).parent
        for index, pattern in enumerate(includes):
            where: KeyPath = ("include", index)
            if not isinstance(pattern, str) or not pattern.strip():
                doc.report(where, "must be a file name or a glob")
                continue
            matches = _matches(base, pattern)
            if matches is None:
                doc.report(where, f'no such file "{pattern}"')
                continue
            if _GLOB.search(pattern):
                sources.watch.append(str(_glob_root(base, pattern)))
                if not matches:
                    sources.notes.append(f"{doc.file}:{doc.line_of(where)}: include[{index}]: "
                                         f'"{pattern}" matched no file')
            for match in matches:
                real_match = match.resolve()
                if real_match in trail:
                    names = [_show(shown, base, p) for p in trail[trail.index(real_match):]]
                    doc.report(where, "include cycle: " + " -> ".join(
                        [*names, _show(shown, base, real_match)]))
                    continue
                if real_match in done:
                    continue  # named by two patterns: read once
                if len(trail) >= MAX_INCLUDE_DEPTH or len(done) >= MAX_FILES:
                    doc.report(where, f"includes nested deeper than {MAX_INCLUDE_DEPTH} "
                                      f"or more than {MAX_FILES} files")
                    return
                done.add(real_match)
                sources.watch.append(str(real_match))
                child = reader(match, _show(shown, base, match))
                visit(child, real_match, [*trail, real_match])

    if real is not None:
        done.add(real)
    visit(main, real, [real] if real is not None else [])
    for doc in sources.docs:
        sources.problems.extend(doc.problems)
        doc.problems = []
    return sources


def _matches(base: Path, pattern: str) -> list[Path] | None:
    """Sorted matches of a glob (possibly none), the file itself, or None when it is missing."""
    full = pattern if os.path.isabs(pattern) else str(base / pattern)
    if _GLOB.search(pattern):
        return [Path(p) for p in sorted(glob.glob(full, recursive=True)) if os.path.isfile(p)]
    return [Path(full)] if os.path.isfile(full) else None


def _glob_root(base: Path, pattern: str) -> Path:
    full = pattern if os.path.isabs(pattern) else str(base / pattern)
    head = _GLOB.split(full, maxsplit=1)[0]
    return Path(head if head.endswith(os.sep) else os.path.dirname(head))


def _show(shown: Path, base: Path, path: Path) -> str:
    """A path as the operator would type it: relative to the including file as it was named."""
    try:
        rel = os.path.relpath(path, base)
    except ValueError:
        return str(path)
    if rel.startswith(".."):
        return os.path.normpath(str(shown / rel)) if not os.path.isabs(rel) else str(path)
    return os.path.normpath(str(shown / rel))
