"""One object for equal parts of many checks: what a 10,000-check config keeps per check.

Checks come from templates (SPEC §14), so most of their parts are equal: the default
`tls:` and `expect:` blocks of every HTTP check, the same `system`, `type` and `host`
strings, the same set of keys given. Validation makes a new object for each of them in
every check (~1.1 KiB per check at 10,000 checks: an empty `HttpTls()` alone is ~570
bytes with its dict and its fields-set). `share_equal_parts` replaces equal ones by one
instance, after validation, so what stays is the same values with fewer objects (SPEC §12:
≤ 6 KiB per configured check).

Sharing is safe because nothing changes these after loading: a check's sub-models
(thresholds, `tls`, `expect`, `trend`, `forecast`) have no private attributes and are only
read, strings and numbers are immutable, and a model's fields-set changes only when a field
is assigned through the model, which nothing does to a loaded check (private attributes,
the per-check caches, live in each check's own `__pydantic_private__`, never shared).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel


class _Unshareable(Exception):
    pass


def _number_key(kind: type, value: Any) -> tuple[Any, ...]:
    """Equal only for the same type and value: 1, 1.0 and True stay apart, and so do 0.0
    and -0.0 (equal as numbers, written differently)."""
    return (kind, value) if value else (kind, value, str(value))


class _Sharer:
    def __init__(self) -> None:
        self.strings: dict[str, str] = {}
        self.numbers: dict[tuple[Any, ...], Any] = {}
        self.models: dict[tuple[Any, ...], BaseModel] = {}
        self.fields_sets: dict[frozenset[str], set[str]] = {}

    def fields_set(self, model: BaseModel) -> None:
        fields = model.__pydantic_fields_set__
        shared = self.fields_sets.setdefault(frozenset(fields), fields)
        if shared is not fields:
            object.__setattr__(model, "__pydantic_fields_set__", shared)

    def fields(self, model: BaseModel) -> None:
        """Share the model's scalar and sub-model field values, in its own dict."""
        strings, numbers = self.strings, self.numbers
        values = model.__dict__
        for name, value in values.items():
            if value is None:
                continue
            kind = type(value)
            shared: Any
            if kind is str:
                shared = strings.setdefault(value, value)
            elif kind is float or (kind is int and not -5 <= value <= 256):  # small ints:
                shared = numbers.setdefault(_number_key(kind, value), value)  # one already
            elif isinstance(value, BaseModel):
                shared = self.model(value)
            else:
                continue
            if shared is not value:
                values[name] = shared

    def model(self, model: BaseModel) -> BaseModel:
        """The shared instance equal to the sub-model `model` (itself if the first)."""
        if model.__pydantic_private__ or model.__pydantic_extra__:
            return model  # something of its own: never shared
        given = model.__pydantic_fields_set__
        if not given:  # all defaults (the common case): equal to the first of its type
            default = self.models.setdefault((type(model),), model)
            if default is model or default == model:
                return default
        self.fields(model)  # so the key below can name its parts by identity
        try:
            key = (type(model), frozenset(given),
                   *(_frozen(v) for v in model.__dict__.values()))
        except _Unshareable:
            return model
        shared = self.models.setdefault(key, model)
        if shared is model:
            self.fields_set(model)
        return shared


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a field value: equal only for equal values of equal types
    (sub-models, already shared, by identity)."""
    kind = type(value)
    if value is None or kind is bool:
        return value
    if kind is str:
        return value
    if kind is int or kind is float:
        return _number_key(kind, value)
    if isinstance(value, BaseModel):
        return (kind, id(value))
    if kind is list or kind is tuple:
        return (kind, *map(_frozen, value))
    if kind is dict:
        return (dict, *((k, _frozen(v)) for k, v in value.items()))
    raise _Unshareable


def share_equal_parts(models: Iterable[BaseModel]) -> None:
    """Make equal field values of `models` (top-level scalars, sub-models, fields-sets)
    one object each, in place. The models' own objects and private attributes stay theirs."""
    sharer = _Sharer()
    for model in models:
        sharer.fields_set(model)
        sharer.fields(model)
