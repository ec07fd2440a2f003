"""Turn a YAML file into a validated `Config`, or into every problem at once with FILE:LINE.

Operators fix configs at 3 a.m. from the error text alone, so each problem names the file,
the line of the offending key (or of its block, for a missing key) and the key path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from monitor.config.model import MESSAGE_KINDS, Config
from monitor.people.validate import check_people, is_people_target, target_problem

KeyPath = tuple[str | int, ...]
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"


class ConfigError(Exception):
    """Raised with every problem found, sorted by line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.path))
        super().__init__("\n".join(map(str, self.problems)))


def format_path(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _line_map(node: yaml.Node | None) -> dict[KeyPath, int]:
    """Line of every key and list item, keyed by its path in the loaded data."""
    lines: dict[KeyPath, int] = {}

    def walk(current: yaml.Node, path: KeyPath) -> None:
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                key_path = (*path, str(key_node.value))
                lines[key_path] = key_node.start_mark.line + 1
                walk(value_node, key_path)
        elif isinstance(current, yaml.SequenceNode):
            for index, item in enumerate(current.value):
                lines[(*path, index)] = item.start_mark.line + 1
                walk(item, (*path, index))

    if node is not None:
        lines[()] = node.start_mark.line + 1
        walk(node, ())
    return lines


class _Source:
    """The loaded document with its line map, so any later check can say where it looked."""

    def __init__(self, file: str, data: Any, lines: dict[KeyPath, int]) -> None:
        self.file, self.data, self.lines = file, data, lines
        self.problems: list[Problem] = []

    def line_of(self, path: KeyPath) -> int:
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1

    def report(self, path: KeyPath, message: str) -> None:
        self.problems.append(Problem(self.file, self.line_of(path), format_path(path), message))


def _substitute_env(source: _Source, env: dict[str, str]) -> None:
    """Replace `${NAME}` and `${NAME:-default}` in every string; an unset NAME is a problem."""

    def replace(value: str, path: KeyPath) -> str:
        def one(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            source.report(path, f"environment variable {name} is not set")
            return ""

        return _ENV.sub(one, value)

    def walk(node: Any, path: KeyPath) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, (*path, str(k))) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*path, i)) for i, v in enumerate(node)]
        if isinstance(node, str) and "${" in node:
            return replace(node, path)
        return node

    source.data = walk(source.data, ())


def _items(data: Any, section: str) -> Iterator[tuple[int, dict[str, Any]]]:
    block = data.get(section) if isinstance(data, dict) else None
    if isinstance(block, list):
        for index, item in enumerate(block):
            if isinstance(item, dict):
                yield index, item


def _ids(source: _Source, section: str) -> set[str]:
    seen: dict[str, int] = {}
    for index, item in _items(source.data, section):
        ident = item.get("id")
        if not isinstance(ident, str):
            continue
        if ident in seen:
            source.report((section, index, "id"),
                          f'duplicate id "{ident}" (also {section}[{seen[ident]}])')
        else:
            seen[ident] = index
    return set(seen)


def _str_list(value: Any) -> list[tuple[int, str]]:
    if not isinstance(value, list):
        return []
    return [(i, v) for i, v in enumerate(value) if isinstance(v, str)]


def _check_references(source: _Source) -> None:
    """Every id that names another thing must exist: a dangling pager target is an outage."""
    data = source.data
    if not isinstance(data, dict):
        return
    checks, systems = _ids(source, "checks"), _ids(source, "systems")
    departments, notifiers = _ids(source, "departments"), _ids(source, "notifiers")
    plans = _ids(source, "plans")
    roles = data.get("roles") if isinstance(data.get("roles"), dict) else {}
    assert isinstance(roles, dict)
    site = data.get("site") if isinstance(data.get("site"), dict) else {}
    campuses = set(site.get("campuses") or []) if isinstance(site, dict) else set()
    del checks

    def need(path: KeyPath, value: str, known: set[str], what: str) -> None:
        if value not in known:
            hint = f" (known: {', '.join(sorted(known))})" if 0 < len(known) <= 12 else ""
            source.report(path, f'unknown {what} "{value}"{hint}')

    for role, members in roles.items():
        for i, member in _str_list(members):
            need(("roles", str(role), i), member, notifiers, "notifier")
    for index, department in _items(data, "departments"):
        for i, target in _str_list(department.get("notify")):
            need(("departments", index, "notify", i), target, notifiers, "notifier")
        campus = department.get("campus")
        if campuses and isinstance(campus, str):
            need(("departments", index, "campus"), campus, campuses, "campus")
    for index, system in _items(data, "systems"):
        for i, dept in _str_list(system.get("departments")):
            need(("systems", index, "departments", i), dept, departments, "department")
        for i, dep in _str_list(system.get("depends_on")):
            need(("systems", index, "depends_on", i), dep, systems, "system")
        plan = system.get("plan")
        if isinstance(plan, str):
            need(("systems", index, "plan"), plan, plans, "plan")
        vendor = system.get("vendor")
        if isinstance(vendor, dict):
            for i, target in _str_list(vendor.get("notify")):
                need(("systems", index, "vendor", "notify", i), target, notifiers, "notifier")
    state_section = data.get("state")
    state = state_section if isinstance(state_section, dict) else {}
    shared = str(state.get("url", "")).startswith("postgresql://")
    for index, check in _items(data, "checks"):
        check_system = check.get("system")
        if isinstance(check_system, str):
            need(("checks", index, "system"), check_system, systems, "system")
        quorum = check.get("vantage_quorum")
        if isinstance(quorum, int) and quorum > 1 and not shared:
            source.report(("checks", index, "vantage_quorum"),
                          "needs several instances sharing a postgresql:// state store")
    for index, notifier in _items(data, "notifiers"):
        fallback = notifier.get("fallback")
        if isinstance(fallback, str):
            if fallback == notifier.get("id"):
                source.report(("notifiers", index, "fallback"),
                              "a notifier cannot fall back to itself")
            else:
                need(("notifiers", index, "fallback"), fallback, notifiers, "notifier")
    for index, window in _items(data, "maintenance"):
        for i, window_system in _str_list(window.get("systems")):
            need(("maintenance", index, "systems", i), window_system, systems, "system")
    for index, plan in _items(data, "plans"):
        targets: list[tuple[KeyPath, Any]] = [
            (("plans", index, "early_warning"), plan.get("early_warning")),
            (("plans", index, "on_recovery"), plan.get("on_recovery")),
        ]
        for s_index, step in enumerate(plan.get("steps") or []):
            if isinstance(step, dict):
                targets.append((("plans", index, "steps", s_index, "notify"), step.get("notify")))
        for path, value in targets:
            for i, target in _str_list(value):
                if is_people_target(target):
                    problem = target_problem(target, data)
                    if problem:
                        source.report((*path, i), problem)
                    continue
                _check_target(source, (*path, i), target, notifiers, set(roles), departments)
    check_people(data, source.report)
    _check_cycles(source, data)
    _check_templates(source, data)
    _check_cluster(source, data)


def _check_cluster(source: _Source, data: dict[str, Any]) -> None:
    """Members find each other through the shared store: a cluster on SQLite is one instance."""
    state = data.get("state")
    url = state.get("url") if isinstance(state, dict) else None
    if isinstance(data.get("cluster"), dict) and not (
            isinstance(url, str) and url.startswith("postgresql://")):
        source.report(("cluster",), "needs a shared store (state.url: postgresql://...); "
                                    "SQLite serves a single instance")


def _check_target(source: _Source, path: KeyPath, target: str, notifiers: set[str],
                  roles: set[str], departments: set[str]) -> None:
    if target in ("departments", "vendor"):
        return
    if target.startswith("role:"):
        if target[5:] not in roles:
            source.report(path, f'unknown role "{target[5:]}"')
    elif target.startswith("department:"):
        if target[11:] not in departments:
            source.report(path, f'unknown department "{target[11:]}"')
    elif target not in notifiers:
        source.report(path, f'unknown notify target "{target}" (a notifier id, role:NAME, '
                            "departments, department:ID, vendor, person:ID or schedule:ID)")


def _check_cycles(source: _Source, data: dict[str, Any]) -> None:
    graph: dict[str, list[str]] = {}
    where: dict[str, int] = {}
    for index, system in _items(data, "systems"):
        if isinstance(system.get("id"), str):
            graph[system["id"]] = [d for _, d in _str_list(system.get("depends_on"))]
            where[system["id"]] = index
    reported: set[frozenset[str]] = set()
    for start in graph:
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, []):
                if nxt == start:
                    cycle = frozenset(trail)
                    if cycle not in reported:
                        reported.add(cycle)
                        source.report(("systems", where[start], "depends_on"),
                                      "dependency cycle: " + " -> ".join([*trail, start]))
                elif nxt not in trail and nxt in graph:
                    stack.append((nxt, [*trail, nxt]))


def _check_templates(source: _Source, data: dict[str, Any]) -> None:
    """Template overrides must compile now, not fail in the middle of an outage."""
    from jinja2 import TemplateSyntaxError

    from monitor.delivery.messages import template_environment

    templates = data.get("templates")
    if not isinstance(templates, dict):
        return
    env = template_environment()
    for language, kinds in templates.items():
        if not isinstance(kinds, dict):
            continue
        for kind, text in kinds.items():
            if kind in MESSAGE_KINDS and isinstance(text, str):
                try:
                    env.from_string(text)
                except TemplateSyntaxError as exc:
                    source.report(("templates", language, kind),
                                  f"template error: {exc.message} (template line {exc.lineno})")


_FRIENDLY = {
    "extra_forbidden": "unknown key",
    "missing": "missing required key",
}


def _loc_to_path(loc: tuple[Any, ...], data: Any) -> KeyPath:
    """Map pydantic's location to the data path, dropping union tags and validator names."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, list) and isinstance(part, int):
            path.append(part)
            node = node[part] if part < len(node) else None
        elif isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and node.get("type") == part:
            continue
        elif isinstance(part, str) and ("[" in part or part.startswith("function")):
            continue
        else:
            path.append(part)
            node = None
    return tuple(path)


def _pydantic_message(error: Any) -> str:
    kind = error["type"]
    if kind in _FRIENDLY:
        return _FRIENDLY[kind]
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return f"unknown type {ctx.get('tag')!r} (known: {ctx.get('expected_tags')})"
    if kind == "union_tag_not_found":
        return "missing required key: type"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if kind in ("literal_error", "enum"):
        return f"{message}, got {error.get('input')!r}"
    return message


def _validate(source: _Source) -> Config | None:
    try:
        return Config.model_validate(source.data if source.data is not None else {})
    except ValidationError as exc:
        for error in exc.errors():
            path = _loc_to_path(error["loc"], source.data)
            if error["type"] in ("union_tag_not_found", "union_tag_invalid"):
                path = (*path, "type")
            source.report(path, _pydantic_message(error))
        return None


def load_config_text(text: str, file: str, env: dict[str, str] | None = None) -> Config:
    """Validate YAML text; raise ConfigError listing every problem."""
    env = dict(os.environ) if env is None else env
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = str(getattr(exc, "problem", exc))
        raise ConfigError([Problem(file, line, "(yaml)", problem)]) from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError([Problem(file, 1, "(top level)", "the config must be a YAML mapping")])
    source = _Source(file, data or {}, _line_map(node))
    _substitute_env(source, env)
    _check_references(source)
    config = _validate(source)
    if source.problems or config is None:
        raise ConfigError(source.problems)
    return config


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(file, 0, "(file)", exc.strerror or str(exc))]) from None
    return load_config_text(text, file, env)
