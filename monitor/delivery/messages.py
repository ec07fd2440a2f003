"""Render messages from Jinja2 templates: one per kind and language, overridable in the config.

A template's first line is the title, the rest is the text. Rendering must never lose a
message in the middle of an outage: a broken override falls back to the built-in template,
and a broken built-in falls back to a plain summary.

The context every template receives is documented in `docs/messages.md`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import structlog

log = structlog.get_logger("hismon.messages")
TEMPLATE_DIR = Path(__file__).parent / "templates"


def template_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.ChainableUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


class MessageRenderer:
    """Renders (title, text) for a kind in a language, preferring the config's overrides."""

    def __init__(self, overrides: dict[str, dict[str, str]] | None = None) -> None:
        self._env = template_environment()
        self._overrides: dict[tuple[str, str], jinja2.Template] = {}
        for language, kinds in (overrides or {}).items():
            for kind, text in kinds.items():
                self._overrides[(language, kind)] = self._env.from_string(text)

    def render(self, kind: str, language: str, context: dict[str, Any]) -> tuple[str, str]:
        for template in self._candidates(kind, language):
            try:
                rendered = template.render(**context).strip()
            except Exception as exc:  # a template bug must not swallow an outage message
                log.error("template_failed", kind=kind, language=language, error=str(exc)[:200])
                continue
            title, _, text = rendered.partition("\n")
            return _drill(title.strip(), context), text.strip()
        return _drill(_plain_title(kind, context), context), _plain_text(context)

    def _candidates(self, kind: str, language: str) -> list[jinja2.Template]:
        found: list[jinja2.Template] = []
        if (language, kind) in self._overrides:
            found.append(self._overrides[(language, kind)])
        for lang in (language, "en"):
            try:
                found.append(self._env.get_template(f"{lang}/{kind}.j2"))
            except jinja2.TemplateNotFound:
                continue
        return found


def _drill(title: str, context: dict[str, Any]) -> str:
    return f"[DRILL] {title}" if context.get("drill") and "DRILL" not in title else title


def _plain_title(kind: str, context: dict[str, Any]) -> str:
    system = (context.get("system") or {}).get("name", "")
    return f"{system} {kind}".strip()


def _plain_text(context: dict[str, Any]) -> str:
    incident = context.get("incident") or {}
    checks = "; ".join(f"{c.get('id')}: {c.get('message')}"
                       for c in incident.get("failing_checks") or [])
    return f"since {incident.get('started_at', '?')}. {checks}".strip()
