"""Names and procedures in the reader's language (SPEC §7): `{zh: ..., en: ...}` or a plain string.

A config item whose text fields may be language maps (system name and downtime procedure,
department and campus names, still_works, vendor name, maintenance reason) keeps its plain
`str` field, so every reader that does not care about languages keeps working and templates
always receive strings: the field holds the site language's text (falling back to any),
and the full map sits beside it. `text(item, field, language)` picks for one reader: their
language, else the site's, else any.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, PrivateAttr, model_validator
from pydantic_core import PydanticCustomError

LANGUAGES = ("zh", "en")


def _language_map(field: str, value: Mapping[Any, Any]) -> dict[str, str]:
    unknown = [str(k) for k in value if k not in LANGUAGES]
    if unknown:
        raise PydanticCustomError(
            "language_map", "{field}: language keys are zh and en, not {keys}",
            {"field": field, "keys": ", ".join(unknown)})
    texts = {str(k): v for k, v in value.items() if v is not None}
    if not texts or not all(isinstance(v, str) and v.strip() for v in texts.values()):
        raise PydanticCustomError(
            "language_map", "{field}: each language needs a non-empty text", {"field": field})
    return texts


def pick(texts: Mapping[str, str], language: str | None, fallback: str | None) -> str:
    """The reader's language, else the site's, else any (the first written)."""
    for wanted in (language, fallback):
        if wanted and wanted in texts:
            return texts[wanted]
    return next(iter(texts.values()))


class Localized(BaseModel):
    """Mixin: fields named in `LOCALIZED` accept `{zh, en}` maps as well as strings."""

    LOCALIZED: ClassVar[tuple[str, ...]] = ()
    _texts: dict[str, dict[str, str]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _split_languages(cls, data: Any, handler: Any) -> Any:
        texts: dict[str, dict[str, str]] = {}
        if isinstance(data, Mapping):
            data = dict(data)
            for field in cls.LOCALIZED:
                value = data.get(field)
                if isinstance(value, Mapping):
                    texts[field] = _language_map(field, value)
                    data[field] = next(iter(texts[field].values()))
        item = handler(data)
        if texts:
            item._texts = texts
        return item

    def use_language(self, site_language: str) -> None:
        """Make the plain fields hold the site language's text (the Config does this once)."""
        for field, texts in self._texts.items():
            object.__setattr__(self, field, pick(texts, site_language, None))

    def texts(self, field: str) -> dict[str, str] | None:
        return self._texts.get(field)


def text(item: Any, field: str, language: str | None, site_language: str | None = None) -> Any:
    """`item.field` in `language` (else the site's, else any); a plain value as it is."""
    texts = item.texts(field) if isinstance(item, Localized) else None
    if texts:
        return pick(texts, language, site_language)
    return getattr(item, field)


def join_names(names: list[str], language: str) -> str:
    """"急诊科、门诊部" / "Emergency and Outpatient": names as one phrase of a sentence."""
    if language == "zh":
        return "、".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)
