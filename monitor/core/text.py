"""Text helpers every stage uses: one-line messages and secret masking.

`scrub` is the one masking rule of hismon: what it hides in a check's message it hides in a
notifier's error, the outbox's stored `last_error` and `hismon notify-test`'s output. Mask
first, cut after: a secret cut in half by a length limit no longer matches (issue 11).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_SECRET = 3
"""Shorter values are not masked: replacing every `a` of a text hides nothing and ruins it."""

_URL_CREDENTIALS = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^\s/]*@")
"""Up to the last `@` before the host: a password with an unencoded `@` is masked whole."""
_KEY_VALUE_SECRET = re.compile(r"(?i)\b(password|passwd|pwd)\s*=\s*('[^']*'|\S+)")


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
    values: set[str] = set()
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET:
            values.add(secret)
            values.update(e for e in encodings(secret) if len(e) >= MIN_SECRET)
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _URL_CREDENTIALS.sub(rf"\1{MASK}@", text)
    return _KEY_VALUE_SECRET.sub(rf"\1={MASK}", text)


def host_port(host: str | None, port: int) -> str:
    """`10.1.2.3:5432`, `[::1]:18080`: an IPv6 literal in brackets, as in a URL."""
    host = host or "?"
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def first_line(text: str, limit: int = 200) -> str:
    """The first non-blank line, stripped, at most `limit` characters: a plugin's or a
    driver's message as one result line."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line[:limit]


def one_line(text: str, limit: int = 160) -> str:
    """All of a multi-line text on one line (aiohttp's parser errors draw a caret below)."""
    return " ".join(text.split())[:limit]
