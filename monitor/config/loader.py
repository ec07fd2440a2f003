"""Turn a YAML file into a validated `Config`, or into every problem at once with FILE:LINE.

Operators fix configs at 3 a.m. from the error text alone, so each problem names the file,
the line of the offending key (or of its block, for a missing key) and the key path.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from monitor.config import bounds
from monitor.config.document import KeyPath, Problem, format_path
from monitor.config.document import read_text as read_yaml
from monitor.config.expand import expand
from monitor.config.model import Config
from monitor.config.sources import Sources, gather, read_file
from monitor.core.collector import collector_paused
from monitor.core.types import MESSAGE_KINDS
from monitor.people.validate import (
    check_addresses,
    check_people,
    is_people_target,
    target_problem,
)

__all__ = ["ConfigError", "Problem", "format_path", "load_config", "load_config_text",
           "merged_data"]



INTERNAL = "hismon could not check this config (a bug: please report it)"


class ConfigError(Exception):
    """Raised with every problem found, sorted by file and line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.path))
        super().__init__("\n".join(map(str, self.problems)))


def _items(data: Any, section: str) -> Iterator[tuple[int, dict[str, Any]]]:
    block = data.get(section) if isinstance(data, dict) else None
    if isinstance(block, list):
        for index, item in enumerate(block):
            if isinstance(item, dict):
                yield index, item


def _ids(source: Sources, section: str) -> set[str]:
    """Ids of one section; an id given twice, in one file or two, names both places."""
    seen: dict[str, int] = {}
    for index, item in _items(source.data, section):
        ident = item.get("id")
        if not isinstance(ident, str):
            continue
        if ident in seen:
            file, line, text = source.locate((section, seen[ident], "id"))
            source.report((section, index, "id"),
                          f'duplicate id "{ident}" (also {text.removesuffix(".id")}), '
                          f"first at {file}:{line}")
        else:
            seen[ident] = index
    return set(seen)


def _str_list(value: Any) -> list[tuple[int, str]]:
    if not isinstance(value, list):
        return []
    return [(i, v) for i, v in enumerate(value) if isinstance(v, str)]


def _check_references(source: Sources) -> None:
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
    campuses = {c for _, c in _str_list(site.get("campuses"))} if isinstance(site, dict) \
        else set()
    if isinstance(site, dict) and isinstance(site.get("campuses"), list):  # {id, name} items
        campuses |= {c["id"] for c in site["campuses"]
                     if isinstance(c, dict) and isinstance(c.get("id"), str)}
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
        steps = plan.get("steps")
        for s_index, step in enumerate(steps if isinstance(steps, list) else []):
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
    check_addresses(data, source.report)
    _check_cycles(source, data)
    _check_templates(source, data)
    _check_cluster(source, data)
    for i, target in _str_list(data.get("self_alerts")):
        if target in ("departments", "vendor") or target.startswith("department"):
            source.report(("self_alerts", i), f'"{target}": messages about hismon itself go '
                                              "to IT (a notifier id or role:NAME), never to "
                                              "departments or vendors")
        else:
            _check_target(source, ("self_alerts", i), target, notifiers, set(roles),
                          departments)


def _check_cluster(source: Sources, data: dict[str, Any]) -> None:
    """Members find each other through the shared store: a cluster on SQLite is one instance."""
    state = data.get("state")
    url = state.get("url") if isinstance(state, dict) else None
    if isinstance(data.get("cluster"), dict) and not (
            isinstance(url, str) and url.startswith("postgresql://")):
        source.report(("cluster",), "needs a shared store (state.url: postgresql://...); "
                                    "SQLite serves a single instance")


def _check_target(source: Sources, path: KeyPath, target: str, notifiers: set[str],
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


def _check_cycles(source: Sources, data: dict[str, Any]) -> None:
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


def _check_templates(source: Sources, data: dict[str, Any]) -> None:
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


def _validate(source: Sources) -> Config | None:
    try:
        return Config.model_validate(source.data if source.data is not None else {})
    except ValidationError as exc:
        for error in exc.errors():
            path = _loc_to_path(error["loc"], source.data)
            if error["type"] in ("union_tag_not_found", "union_tag_invalid"):
                path = (*path, "type")
            source.report(path, _pydantic_message(error))
        return None


def _finish(source: Sources) -> Config:
    """Expand, cross-check and validate merged sources; raise ConfigError listing everything."""
    if source.problems:
        raise ConfigError(source.problems)
    config: Config | None = None
    try:
        expand(source)
        _check_references(source)
        config = _validate(source)
        if config is not None:
            bounds.check(source, config)
    except Exception as exc:  # a loader bug must read as a problem, never a traceback
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        source.problems.append(Problem(source.main.file, 1, "(internal)",
                                       f"{INTERNAL}: {type(exc).__name__} at {where}: "
                                       f"{exc}"[:300]))
    if source.problems or config is None:
        raise ConfigError(source.problems)
    config._files = source.files
    config._watch = list(dict.fromkeys(source.watch))
    config._notes = list(source.notes)
    return config


def load_config_text(text: str, file: str, env: dict[str, str] | None = None,
                     base_dir: str | Path | None = None) -> Config:
    """Validate YAML text; includes are relative to `base_dir` (default: the file's folder)."""
    env = dict(os.environ) if env is None else env
    with collector_paused():
        doc = read_yaml(text, file)
        here = Path(base_dir or Path(file).parent).resolve() / Path(file).name
        return _finish(gather(doc, here, env))


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    """Read the main file and everything it includes (SPEC §14); raise ConfigError."""
    env = dict(os.environ) if env is None else env
    file = str(path)
    real = Path(path).resolve()
    with collector_paused():
        return _finish(gather(read_file(Path(path), file), real, env))


def merged_data(path: str | Path) -> dict[str, Any]:
    """The main file and its includes merged as written (no `${NAME}` replaced, nothing
    expanded, `include` dropped): what tools and tests re-dump as a single document."""
    source = gather(read_file(Path(path), str(path)), Path(path).resolve(), None)
    if source.problems:
        raise ConfigError(source.problems)
    return source.data
