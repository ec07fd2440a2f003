"""Text helpers every stage uses: one-line messages and secret masking.

`scrub` is the one masking rule of hismon: what it hides in a check's message it hides in a
notifier's error, the outbox's stored `last_error` and `hismon notify-test`'s output. Mask
first, cut after: a secret cut in half by a length limit no longer matches (issue 11).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

MASK = "***"
MIN_SECRET = 3
"""Shorter values are not masked: replacing every `a` of a text hides nothing and ruins it."""

_URL_CREDENTIALS = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^\s/]*@")
"""Up to the last `@` before the host: a password with an unencoded `@` is masked whole."""
_KEY_VALUE_SECRET = re.compile(r"(?i)\b(password|passwd|pwd)\s*=\s*('[^']*'|\S+)")


_TOKENISH = re.compile(r"^[A-Za-z0-9_\-.~=+/%]{16,}$")
_CREDENTIAL_HEADER = re.compile(r"auth|token|key|secret|sign|cookie|pass", re.IGNORECASE)


def url_secrets(url: str | None) -> list[str]:
    """The URL and the parts of it that are credentials on their own.

    The whole URL is a secret, but an error text may also quote just the WeCom `key`, the
    DingTalk `access_token`, the Feishu hook id (a long path segment) or a basic-auth
    password, so those are listed separately and scrubbed too.
    """
    if not url:
        return []
    found = [url]
    try:
        parts = urlsplit(url)
    except ValueError:
        return found
    if parts.password:
        found.append(parts.password)
    for _, value in parse_qsl(parts.query, keep_blank_values=False):
        if len(value) >= 8:
            found.append(value)
    for segment in parts.path.split("/"):
        if _TOKENISH.match(segment):
            found.append(segment)
    # The same values as they may appear percent-encoded in a logged URL.
    encoded = [quote(v, safe="") for v in found] + [quote_plus(v) for v in found]
    return list(dict.fromkeys(found + encoded))


def header_secrets(headers: dict[str, str]) -> list[str]:
    """Values of credential-like headers (`Authorization`, `X-Api-Key`...), and the bare
    token of `Bearer <token>`, so an echoing error page cannot leak them."""
    values = [v for k, v in headers.items() if _CREDENTIAL_HEADER.search(k) and v.strip()]
    return values + [v.split(None, 1)[1] for v in values if " " in v.strip()]


def mask_url(text: str) -> str:
    """`scheme://user:password@host` → `scheme://user:***@host` wherever it appears."""
    return _URL_CREDENTIALS.sub(rf"\1{MASK}@", text)


def secret_forms(secrets: Iterable[str | None]) -> tuple[str, ...]:
    """Every value `scrub` replaces for these secrets, longest first (computed once per
    check or notifier, not per message)."""
    values: set[str] = set()
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET:
            values.add(secret)
            values.update(e for e in encodings(secret) if len(e) >= MIN_SECRET)
    return tuple(sorted(values, key=len, reverse=True))


def scrub_forms(text: str, forms: Iterable[str]) -> str:
    """`scrub` with the forms already computed by `secret_forms`."""
    for value in forms:
        if value in text:
            text = text.replace(value, MASK)
    return _KEY_VALUE_SECRET.sub(rf"\1={MASK}", mask_url(text))


def encodings(secret: str) -> list[str]:
    """The forms in which hismon itself may send `secret`: URL-encoded (a query, a form
    body, a DSN) and base64 (HTTP basic auth, SMTP `AUTH LOGIN`), so an echo is masked too."""
    forms = [quote(secret, safe=""), quote_plus(secret), quote(secret)]
    try:
        forms.append(base64.b64encode(secret.encode("utf-8")).decode("ascii"))
    except UnicodeEncodeError:  # a lone surrogate: nothing of it can have been sent
        pass
    return [f for f in forms if f != secret]


def basic_auth_token(user: str, password: str) -> str:
    """base64 of `user:password`, as an HTTP `Authorization: Basic` header carries it."""
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def plain_auth_token(user: str, password: str) -> str:
    """base64 of `\\0user\\0password`, as SMTP `AUTH PLAIN` sends it (smtplib's form)."""
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """Mask every secret and its encodings, any `scheme://user:password@` and `password=`.

    Longest first, so that a URL is masked before the key inside it.
    """
    return scrub_forms(text, secret_forms(secrets))


def host_port(host: str | None, port: int) -> str:
    """`10.1.2.3:5432`, `[::1]:18080`: an IPv6 literal in brackets, as in a URL."""
    host = host or "?"
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def first_line(text: str, limit: int | None = 200) -> str:
    """The first non-blank line, stripped, at most `limit` characters (None: all of it): a
    plugin's or a driver's message as one result line."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if limit is None else line[:limit]


def one_line(text: str, limit: int = 160, mark: str = "") -> str:
    """All of a multi-line text on one line (aiohttp's parser errors draw a caret below),
    at most `limit` characters; a cut one ends with `mark` (e.g. `...`) within the limit."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - len(mark)] + mark
