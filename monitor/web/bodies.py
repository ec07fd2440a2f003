"""Request bodies of the write endpoints as pydantic models: validated once, documented once.

The same model validates the JSON API body (or the page form), gives the 422 message and
produces the request schema in the OpenAPI document (`monitor.web.openapi`). Every text field
has a size limit and must be clean Unicode: a lone surrogate (what JavaScript gives when an
emoji is cut mid-character), NUL or other control characters are refused here, at the edge,
because once stored they break every page, every message and the store (SPEC §10).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from monitor.core.durations import parse_duration
from monitor.core.models import Silence

MAX_NAME = 200
"""A person's name, an id: `by`, `created_by`, system ids."""
MAX_TEXT = 4000
"""A note or progress update: a few paragraphs; a 12 MB note once made a page of 12.6 MB."""
MAX_REASON = 500
MAX_TIME_TEXT = 500
MAX_SYSTEMS = 100
MAX_ACTION = 500
MAX_ACTIONS = 20
ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"
"""Ids of checks, systems, incidents (`inc-42`) and silences (`sil-1a2b3c4d`, `config-0`)."""

_CONTROL_IN_LINE = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode (a lone surrogate?)") from None
    return value


def _one_line(value: str) -> str:
    value = _unicode(value).strip()
    if _CONTROL_IN_LINE.search(value):
        raise ValueError("must not contain control characters")
    return value


def clean_text(value: str) -> str:
    value = _unicode(value).strip()
    if _CONTROL_IN_TEXT.search(value):
        raise ValueError("must not contain control characters other than newline and tab")
    return value


def _not_blank(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


# Length limits are checked before the clean-up (on what was sent), then the value is stripped.
Name = Annotated[str, Field(max_length=MAX_NAME), AfterValidator(_one_line)]
RequiredName = Annotated[Name, Field(min_length=1), AfterValidator(_not_blank)]
Note = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(clean_text)]
RequiredNote = Annotated[Note, Field(min_length=1), AfterValidator(_not_blank)]
Reason = Annotated[str, Field(min_length=1, max_length=MAX_REASON), AfterValidator(clean_text),
                   AfterValidator(_not_blank)]
SystemId = Annotated[str, Field(min_length=1, max_length=MAX_NAME, pattern=ID_PATTERN)]
TimeText = Annotated[str, Field(min_length=1, max_length=MAX_TIME_TEXT),
                     AfterValidator(_one_line)]


class Body(BaseModel):
    """Strict types (5 is not a name), unknown keys ignored (clients may send more)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=False)


class AckBody(Body):
    """`POST /api/v1/incidents/{id}/ack`."""

    by: RequiredName = Field(description="Who takes the incident", examples=["Dr. Wang"])
    note: Note | None = Field(default=None, examples=["restarting the app server"])


class UpdateBody(Body):
    """`POST /api/v1/incidents/{id}/updates`."""

    text: RequiredNote = Field(description="The incident lead's progress note")
    by: Name | None = Field(default=None, description="Defaults to `incident lead`")


class AckForm(Body):
    """The acknowledgement form of the incident page (form fields are always strings)."""

    by: RequiredName
    note: Note = ""
    token: str = Field(default="", max_length=MAX_NAME * 2)


MAX_TIME = 253_402_128_000.0
"""9999-12-30T00:00Z: the last instant every time zone can still write as a date."""


def parse_time(value: str, now: float) -> float:
    """An RFC 3339 time, or a duration from now (`2h`)."""
    try:
        ts = now + parse_duration(value)
    except (ValueError, OverflowError) as exc:
        if "too long" in str(exc):  # a duration, beyond what can be shown as a date
            raise ValueError(f'time "{value[:40]}" is out of range (1970 to 9999)') from None
        ts = _absolute_time(value)
    # A silence is stored and shown on every page and API answer: a time that cannot be
    # written back as a date (year 1, `99999999999d`) would break those for good.
    if not 0 <= ts <= MAX_TIME:
        raise ValueError(f'time "{value[:40]}" is out of range (1970 to 9999)')
    return ts


def _absolute_time(value: str) -> float:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f'invalid time "{value}": RFC 3339 (2026-12-01T22:00:00+08:00) '
                         "or a duration like 2h") from None
    if parsed.tzinfo is None:
        raise ValueError(f'time "{value}" needs a UTC offset')
    try:
        return parsed.timestamp()
    except (OverflowError, ValueError):
        return float("nan")  # refused as out of range by the caller


class SilenceBody(Body):
    """`POST /api/v1/silences`. Validated with `context={"systems": ids, "now": ts}`."""

    systems: list[SystemId] | None = Field(
        default=None, min_length=1, max_length=MAX_SYSTEMS,
        description="System ids (or a single `system`)")
    system: SystemId | None = Field(default=None,
                                    description="One system id, instead of `systems`")
    start: TimeText | None = Field(
        default=None, description="RFC 3339 time with offset or a duration from now (`30m`); "
                                  "default now")
    end: TimeText | None = Field(
        default=None, examples=["2h"],
        description="RFC 3339 time with offset or a duration from now; required (or `until`)")
    until: TimeText | None = Field(default=None, description="Alias of `end`")
    reason: Reason
    created_by: Name | None = None

    _start: float = PrivateAttr(default=0.0)
    _end: float = PrivateAttr(default=0.0)

    @model_validator(mode="after")
    def _meaning(self, info: ValidationInfo) -> SilenceBody:
        context: dict[str, Any] = info.context or {}
        systems = self.systems or ([self.system] if self.system else None)
        if not systems:
            raise ValueError('"systems" must be a non-empty list of system ids')
        known = context.get("systems")
        if known is not None:
            unknown = [s for s in systems if s not in known]
            if unknown:
                raise ValueError(f"unknown system {', '.join(unknown)}")
        self.systems = list(dict.fromkeys(systems))
        now = float(context.get("now") or time.time())
        self._start = parse_time(self.start, now) if self.start else now
        end = self.end or self.until
        if end is None:
            raise ValueError('"end" (or "until") is required')
        self._end = parse_time(end, now)
        if self._end <= self._start:
            raise ValueError("end must be after start")
        return self

    def silence(self) -> Silence:
        """The window to store, with a fresh id."""
        return Silence(id=f"sil-{secrets.token_hex(4)}", systems=list(self.systems or []),
                       start=self._start, end=self._end, reason=self.reason,
                       created_by=self.created_by or None)


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A pydantic model's JSON Schema as OpenAPI 3.0 reads it (`nullable`, one `example`,
    `enum` for `const`, nested models inlined: 3.0 knows no `$defs`)."""
    raw = model.model_json_schema(mode="validation")
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = _openapi30(_inline(raw, defs, ()))
    return schema


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """An OpenAPI `requestBody` (JSON) whose schema is the model's own, inline."""
    return {"required": True, "content": {"application/json": {"schema": body_schema(model)}}}


def _inline(node: Any, defs: dict[str, Any], seen: tuple[str, ...]) -> Any:
    """Each `{"$ref": "#/$defs/X"}` replaced by X itself (a body model is never recursive)."""
    if isinstance(node, list):
        return [_inline(item, defs, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        if name in seen:
            raise ValueError(f"a request body cannot be recursive ({name})")
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**_inline(defs[name], defs, (*seen, name)), **_inline(rest, defs, seen)}
    return {k: _inline(v, defs, seen) for k, v in node.items()}


def _openapi30(node: Any) -> Any:
    if isinstance(node, list):
        return [_openapi30(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {k: _openapi30(v) for k, v in node.items() if k != "title"}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del node["anyOf"]
        node = {**(rest[0] if len(rest) == 1 else {"anyOf": rest}), **node, "nullable": True}
    if "examples" in node:
        node["example"] = node.pop("examples")[0]
    return node


def describe(exc: ValidationError) -> str:
    """One line for the 422 answer: `field: what is wrong`, the first few problems."""
    parts = []
    for problem in exc.errors(include_url=False)[:3]:
        where = ".".join(str(p) for p in problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        if problem["type"] == "json_invalid":
            message = "body is not valid JSON (or not valid UTF-8): " + str(
                problem.get("ctx", {}).get("error", message))
        elif problem["type"] == "model_type" or problem["type"] == "model_attributes_type":
            message = "body must be a JSON object"
        elif problem["type"] == "missing":
            message = f'"{where}" is required'
            where = ""
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def first_field(exc: ValidationError) -> str:
    """The field the first problem is about ("" for the body as a whole)."""
    errors = exc.errors(include_url=False)
    return str(errors[0]["loc"][0]) if errors and errors[0]["loc"] else ""
