"""Hosts, check templates, `apply` rules and `use:` (SPEC §14), expanded into ordinary checks.

After Icinga's `apply`: a rule makes, for every host that has all of `to.tags` (and is named in
`to.hosts`, when given), one check `{host.id}-{template.id}` with the host's system, from the
template's keys with `{host.id}`, `{host.address}` and `{host.name}` replaced literally, then
the rule's own keys. Generated checks join `checks` and are validated like written ones; a
problem in one is reported at the template's or rule's line and names the generated id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from monitor.config.document import Document, KeyPath, format_path
from monitor.config.sources import Origin, Sources, Written

_RULE_KEYS = ("template", "to")


@dataclass(frozen=True, slots=True)
class Generated(Origin):
    """A check made by a rule: its keys are located in the rule, the template or the host."""

    check_id: str
    rule: Written
    template: Written
    host: Written
    rule_keys: frozenset[str]
    template_keys: frozenset[str]

    def locate(self, section: str, rest: KeyPath) -> tuple[Document, KeyPath, str | None]:
        label = f"checks[{self.check_id}]" + (
            format_path(("x", *rest))[1:] if rest else "")
        key = rest[0] if rest else None
        if key in self.rule_keys or key is None or key == "id":
            return self.rule.doc, ("apply", self.rule.index, *rest[:1]), label
        if key in self.template_keys:
            return self.template.doc, ("check_templates", self.template.index, *rest), label
        return self.host.doc, ("hosts", self.host.index), label


def _fill(value: Any, host: dict[str, Any]) -> Any:
    """Copy `value`, replacing the host placeholders in every string (nothing else)."""
    if isinstance(value, str):
        if "{host." in value:
            for name in ("id", "address", "name"):
                value = value.replace(f"{{host.{name}}}", str(host.get(name) or host.get("id")))
        return value
    if isinstance(value, dict):
        return {k: _fill(v, host) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, host) for v in value]
    return value


def _has_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return "{host." in value
    if isinstance(value, dict):
        return any(_has_placeholder(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_placeholder(v) for v in value)
    return False


def _str_list(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def expand(sources: Sources) -> None:
    """Replace `use:` checks by their merged form and append every generated check."""
    data = sources.data
    templates = _templates(sources)
    checks = data.get("checks")
    if checks is not None and not isinstance(checks, list):
        return  # reported by the model
    checks = data.setdefault("checks", [])
    for index, check in enumerate(checks):
        if isinstance(check, dict) and "use" in check:
            checks[index] = _use(sources, index, check, templates)
    rules = data.get("apply")
    hosts = data.get("hosts")
    if not isinstance(rules, list) or not rules:
        return
    host_list = [(i, h) for i, h in enumerate(hosts if isinstance(hosts, list) else [])
                 if isinstance(h, dict) and isinstance(h.get("id"), str)]
    host_ids = {h["id"] for _, h in host_list}
    written = {c.get("id"): i for i, c in enumerate(checks)
               if isinstance(c, dict) and isinstance(c.get("id"), str)}
    made: dict[str, KeyPath] = {}
    origins = sources.items.setdefault("checks", [])
    for r_index, rule in enumerate(rules):
        where: KeyPath = ("apply", r_index)
        if not isinstance(rule, dict):
            sources.report(where, "must be a mapping with `template` and `to`")
            continue
        name = rule.get("template")
        if not isinstance(name, str) or name not in templates:
            known = ", ".join(sorted(templates)) or "none defined"
            sources.report((*where, "template"),
                           f'unknown check template "{name}" (known: {known})'
                           if name is not None else "missing required key")
            continue
        wanted = _target(sources, where, rule.get("to"), host_ids)
        if wanted is None:
            continue
        tags, named = wanted
        t_index, template = templates[name]
        own = {k: v for k, v in rule.items() if k not in _RULE_KEYS}
        for h_index, host in host_list:
            found_tags = host.get("tags")
            host_tags = {t for t in found_tags if isinstance(t, str)} \
                if isinstance(found_tags, list) else set()
            if not set(tags) <= host_tags or (named and host["id"] not in named):
                continue
            check_id = f"{host['id']}-{name}"
            if check_id in made:
                sources.report(where, f'makes check "{check_id}", also made by '
                                      f"{sources.where(made[check_id])}")
                continue
            if check_id in written:
                sources.report(where, f'makes check "{check_id}", also written at '
                                      f"{sources.where(('checks', written[check_id]))}")
                continue
            made[check_id] = where
            made_check: dict[str, Any] = {"id": check_id}
            if host.get("system") is not None:
                made_check["system"] = host["system"]
            made_check.update(_fill({k: v for k, v in template.items() if k != "id"}, host))
            made_check.update(_fill(own, host))
            made_check["id"] = check_id
            checks.append(made_check)
            origin_rule = sources.items["apply"][r_index]
            origin_template = sources.items["check_templates"][t_index]
            origin_host = sources.items["hosts"][h_index]
            assert isinstance(origin_rule, Written) and isinstance(origin_template, Written)
            assert isinstance(origin_host, Written)
            origins.append(Generated(check_id, origin_rule, origin_template, origin_host,
                                     frozenset(own), frozenset(template) - {"id"}))


def _templates(sources: Sources) -> dict[str, tuple[int, dict[str, Any]]]:
    block = sources.data.get("check_templates")
    templates: dict[str, tuple[int, dict[str, Any]]] = {}
    if not isinstance(block, list):
        return templates
    for index, template in enumerate(block):
        where: KeyPath = ("check_templates", index)
        if not isinstance(template, dict):
            sources.report(where, "must be a mapping of check keys with an `id`")
            continue
        ident = template.get("id")
        if not isinstance(ident, str) or not ident:
            sources.report((*where, "id"), "missing required key")
            continue
        if "use" in template:
            sources.report((*where, "use"), "a template cannot use another template")
        if ident in templates:
            first = sources.where(("check_templates", templates[ident][0], "id"))
            sources.report((*where, "id"), f'duplicate id "{ident}" (first at {first})')
            continue
        templates[ident] = (index, template)
    return templates


def _use(sources: Sources, index: int, check: dict[str, Any],
         templates: dict[str, tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    name = check.get("use")
    where: KeyPath = ("checks", index, "use")
    if not isinstance(name, str) or name not in templates:
        known = ", ".join(sorted(templates)) or "none defined"
        sources.report(where, f'unknown check template "{name}" (known: {known})')
        return {k: v for k, v in check.items() if k != "use"}
    merged = {k: v for k, v in templates[name][1].items() if k != "id"}
    merged.update({k: v for k, v in check.items() if k != "use"})
    for key, value in merged.items():
        if _has_placeholder(value):
            sources.report(("checks", index, key), "{host.…} placeholders are filled only by "
                                                   "`apply` rules: give this key yourself")
    return merged


def _target(sources: Sources, where: KeyPath, to: Any,
            host_ids: set[str]) -> tuple[list[str], set[str]] | None:
    if not isinstance(to, dict) or not (set(to) & {"tags", "hosts"}):
        sources.report((*where, "to"), "needs `tags` (all required), `hosts` (ids), or both")
        return None
    bad = set(to) - {"tags", "hosts"}
    for key in sorted(bad):
        sources.report((*where, "to", key), "unknown key")
    tags = _str_list(to.get("tags", []))
    named = _str_list(to.get("hosts", []))
    if tags is None:
        sources.report((*where, "to", "tags"), "must be a list of tags")
    if named is None:
        sources.report((*where, "to", "hosts"), "must be a list of host ids")
    if tags is None or named is None or bad:
        return None
    for i, host in enumerate(named):
        if host not in host_ids:
            sources.report((*where, "to", "hosts", i), f'unknown host "{host}"')
    return tags, set(named)


_USERINFO = re.compile(r"(://[^/:@\s]*:)[^@/\s]+@")


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return _USERINFO.sub(r"\1***@", value)
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def dump_checks(config: Any) -> str:
    """Every check of a loaded config as YAML (`hismon validate --expand`): the keys it was
    given (by itself, its template or its rule), secret keys and URL passwords masked."""
    import yaml

    out = []
    for check in config.checks:
        public = check.public_config()
        keep = set(check.model_fields_set) | {"id", "system", "type"}
        out.append(_mask({k: v for k, v in public.items() if k in keep}))
    return yaml.safe_dump({"checks": out}, allow_unicode=True, sort_keys=False, width=100)
