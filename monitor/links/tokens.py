"""Signed link tokens: pure functions of a key, so every HA instance verifies the same way.

A token is `base64url(kind|incident|recipient|expiry) . base64url(HMAC-SHA256[:16])`. It
names the incident and the recipient, so a token altered to point at another incident (or
turned from a department link into an acknowledgement) fails the signature. 128 bits of MAC
keep an SMS short while leaving forgery out of reach. `expiry` 0 means "decided by the
incident" (department links live until 7 days after it resolved).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

KINDS = {"a": "ack", "d": "department", "v": "vendor"}
MAC_BYTES = 16


@dataclass(frozen=True, slots=True)
class Claim:
    kind: str
    """`ack`, `department` or `vendor`."""
    incident: str
    recipient: str
    """A person id or notifier id (ack), a department id, or the vendor's notifier id."""
    expires: int


class BadToken(Exception):
    """Forged, altered, malformed or of the wrong kind: the page says "no longer valid"."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, claim: Claim) -> str:
    letter = next(k for k, v in KINDS.items() if v == claim.kind)
    for part in (claim.incident, claim.recipient):
        if "|" in part:
            raise ValueError("ids never contain |")
    body = _b64(f"{letter}|{claim.incident}|{claim.recipient}|{claim.expires}".encode())
    mac = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()[:MAC_BYTES]
    return f"{body}.{_b64(mac)}"


def verify(key: bytes, token: str, kind: str) -> Claim:
    """The claim of a genuine token of `kind`; raises BadToken otherwise (expiry is the
    caller's: it depends on the incident too)."""
    body, dot, mac = token.partition(".")
    if not dot or not body or not mac or len(token) > 400:
        raise BadToken("malformed")
    if not body.isascii() or not mac.isascii():
        raise BadToken("malformed")
    wanted = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()[:MAC_BYTES]
    # Compared as text in its one canonical spelling: the last base64 character carries
    # padding bits, and a decoder would take several spellings of the same MAC.
    if not hmac.compare_digest(mac.encode("ascii"), _b64(wanted).encode("ascii")):
        raise BadToken("bad signature")
    try:
        fields = _unb64(body).decode("utf-8").split("|")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadToken("malformed") from None
    if len(fields) != 4 or KINDS.get(fields[0]) != kind or not fields[3].isdigit():
        raise BadToken("wrong kind")
    return Claim(kind, fields[1], fields[2], int(fields[3]))
