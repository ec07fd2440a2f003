"""The one gate every write endpoint passes, JSON API and page forms alike: `@write(Model)`.

In this order: the body is read up to a size limit (413), the token is checked in constant
time (401, nothing changed), a standby refuses (503: the leader's next save would overwrite
what a standby writes, SPEC §9), and the body is validated once by its pydantic model (422).
Only then does the handler run, with the validated body. A refusal is rendered by the
endpoint's `refuse` function: JSON for the API, a page in the reader's language for forms.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from monitor.web.bodies import describe, first_field
from monitor.web.interfaces import ReadView, WebSide

MAX_JSON_BODY = 256 * 1024
"""An API body is a few short fields with their own limits; any body within them fits here,
even with every character written as a JSON escape (`tests/test_web_edge.py` checks it)."""
MAX_ANY_BODY = 4 * 1024 * 1024
"""The edge's limit for every request: the largest endpoint limit (an Alertmanager group)."""
MAX_FORM_BODY = 16 * 1024
"""A page form is three short fields; anything bigger is not from our page."""

B = TypeVar("B", bound=BaseModel)
Handler = Callable[[Request, WebSide, Any], Awaitable[Response]]
TokenPolicy = Callable[[Request, ReadView], "Sequence[str] | None"]
"""The tokens that may call an endpoint; None: no token needed. May raise a `Refusal`."""


Endpoint = Callable[[Request], Awaitable[Response]]

WRITE_BODIES: dict[Endpoint, type[BaseModel] | None] = {}
"""Every endpoint made by `write`, with the model of its body (None: it takes none). The
OpenAPI test reads it: each documented request body must be the model's generated schema."""


class Refusal(Exception):
    """Why a request changed nothing; `code` lets a page say it in the reader's language."""

    def __init__(self, status: int, code: str, detail: str, field: str = "") -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.field = status, code, detail, field


def side_of(request: Request) -> WebSide:
    """The daemon's read view and operations, as given to `build_app`."""
    side: WebSide = request.app.state.side
    return side


def error(status: int, message: str) -> JSONResponse:
    """The API's error answer (SPEC §7): `{"error": ..., "status": ...}`."""
    return JSONResponse({"error": message, "status": status}, status_code=status)


def api_refusal(request: Request, refusal: Refusal) -> Response:
    return error(refusal.status, refusal.detail)


def token_valid(token: str, tokens: Sequence[str]) -> bool:
    """Constant-time comparison against every configured token; an empty one never matches."""
    if not token:
        return False
    given = token.encode("utf-8", "surrogateescape")
    return any(t and hmac.compare_digest(given, t.encode()) for t in tokens)


def bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def api_tokens(request: Request, view: ReadView) -> Sequence[str]:
    """The default policy: a token from `server.api_tokens`."""
    return view.config.server.api_tokens


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it grows past `limit` (never buffered whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refusal(413, "too_large", f"the body is larger than {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise Refusal(413, "too_large", f"the body is larger than {limit} bytes")
    except ClientDisconnect:
        raise Refusal(400, "invalid", "the client went away before sending the body") from None
    return bytes(body)


def parse_form(raw: bytes) -> dict[str, str]:
    """An urlencoded form as strict UTF-8; text that is not is refused, never guessed."""
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, encoding="utf-8",
                          errors="strict", max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise Refusal(422, "invalid", "the form is not valid UTF-8") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def validation_context(view: ReadView) -> dict[str, Any]:
    """What body models may check against: known system ids and now."""
    return {"systems": {s.id for s in view.config.systems}, "now": view.clock()}


def write(
    body: type[B] | None = None,
    *,
    form: bool = False,
    tokens: TokenPolicy = api_tokens,
    leader_only: bool = True,
    refuse: Callable[[Request, Refusal], Response] = api_refusal,
    limit: int | None = None,
) -> Callable[[Handler], Endpoint]:
    """Make `handler(request, side, body)` a guarded Starlette endpoint.

    `body`: the pydantic model of the JSON body (or of the form with `form=True`; the form's
    `token` field carries the token). `tokens`: who may call (default `server.api_tokens`).
    `leader_only`: refuse on a standby (operator actions; not a job's heartbeat).
    `limit`: the body's size limit (default `MAX_JSON_BODY`, `MAX_FORM_BODY` for forms; at
    most `MAX_ANY_BODY`, which the edge enforces for every request).
    """
    size = limit or (MAX_FORM_BODY if form else MAX_JSON_BODY)

    def decorate(handler: Handler) -> Endpoint:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            side = side_of(request)
            try:
                raw = await read_body(request, size)
                fields = parse_form(raw) if form else {}
                token = fields.get("token") or bearer_token(request)
                wanted = tokens(request, side)
                if wanted is not None and not token_valid(token, wanted):
                    raise Refusal(401, "unauthorized", "missing or invalid Bearer token")
                if leader_only and not side.leading:
                    raise Refusal(503, "standby", "this hismon instance is a standby; send this "
                                  f"to the leader ({side.leader or 'none elected yet'})")
                parsed = None if body is None else _validate(body, raw, fields, form, side)
            except Refusal as refusal:
                return refuse(request, refusal)
            return await handler(request, side, parsed)

        WRITE_BODIES[endpoint] = body
        return endpoint

    return decorate


def _validate(model: type[B], raw: bytes, fields: dict[str, str], form: bool,
              view: ReadView) -> B:
    context = validation_context(view)
    try:
        if form:
            return model.model_validate(fields, context=context)
        return model.model_validate_json(raw, context=context)
    except ValidationError as exc:
        raise Refusal(422, "invalid", describe(exc), first_field(exc)) from None
