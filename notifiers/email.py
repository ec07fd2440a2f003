"""E-mail over SMTP: STARTTLS, implicit TLS (SMTPS) or plain, optional AUTH.

Built with the standard library (`email.message.EmailMessage`, `smtplib`) so that no extra
dependency is needed; the blocking SMTP dialogue runs in a worker thread with one deadline
for the whole exchange (connect, TLS, login, envelope, data), so a hanging mail server
costs the notifier's `timeout` and a thread for no longer.

What recipients get: a UTF-8 subject (the title; RFC 2047-encoded, so Chinese survives
every relay), a plain-text part and an HTML part, `Auto-Submitted: auto-generated` so
out-of-office robots do not answer, and a `Message-ID` derived from the idempotency key:
when a retry follows a lost answer, mail clients see the same Message-ID and show one
mail. All messages of one incident share a `References` header, so they thread together.

Verdicts: 5xx answers (535 login refused, 550 unknown mailbox) and TLS failures are
permanent; refused connections, timeouts and 4xx answers (greylisting, 421 busy) retry.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import html
import re
import smtplib
import socket
import ssl
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, parseaddr
from typing import Literal

from pydantic import Field, field_validator, model_validator

from monitor.core.text import plain_auth_token, scrub
from notifiers.base import DeliveryError, NotifierBase, NotifyContext, OutgoingMessage

DEFAULT_PORTS = {"starttls": 587, "implicit": 465, "none": 25}
_URL = re.compile(r"https?://[^\s<>\"']+")


def _address(value: str) -> str:
    """Accept `it@hospital.cn` and `信息科 <it@hospital.cn>`; refuse anything without an @."""
    _, addr = parseaddr(value)
    if not addr or "@" not in addr or addr.startswith("@") or addr.endswith("@"):
        raise ValueError(f'"{value}" is not an e-mail address')
    return value


def _domain(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2] or "hismon.invalid"


def message_id(idempotency_key: str, from_addr: str) -> str:
    """The same key always gives the same Message-ID, so duplicates collapse in clients."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}.hismon@{_domain(from_addr)}>"


def thread_id(incident: dict[str, object], from_addr: str) -> str:
    seed = f"{incident.get('id')}|{incident.get('started_at')}"
    digest = hashlib.sha256(seed.encode()).hexdigest()[:24]
    return f"<incident.{digest}.hismon@{_domain(from_addr)}>"


def html_body(message: OutgoingMessage, text: str) -> str:
    """A readable HTML part: the text as written (line breaks kept), links clickable."""
    incident = message.incident or {}
    if message.kind in ("recovery", "maintenance_over"):
        colour = "#1a7f37"
    elif incident.get("severity") == "critical":
        colour = "#c62828"
    else:
        colour = "#b26a00"
    escaped = html.escape(text)
    linked = _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)
    status = (f'<p><a href="{html.escape(message.status_url)}">状态页 / Status page</a></p>'
              if message.status_url else "")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>'
        '<body style="font-family: sans-serif; line-height: 1.5">\n'
        f'<h2 style="color: {colour}">{html.escape(message.title)}</h2>\n'
        f'<div style="white-space: pre-wrap">{linked}</div>\n{status}</body></html>\n'
    )


def build_email(
    message: OutgoingMessage, *, from_addr: str, to: list[str], now: float, limit: int
) -> EmailMessage:
    """Pure: the complete mail, ready for `as_bytes()`."""
    text = message.trimmed_text(limit)
    plain = text
    if message.status_url and message.status_url not in text:
        plain += f"\n\n{message.status_url}"
    mail = EmailMessage(policy=SMTP_POLICY)
    mail["Subject"] = message.title or message.kind
    mail["From"] = from_addr
    mail["To"] = ", ".join(to)
    mail["Date"] = format_datetime(dt.datetime.fromtimestamp(now, dt.UTC))
    mail["Message-ID"] = message_id(message.idempotency_key, from_addr)
    mail["Auto-Submitted"] = "auto-generated"
    mail["X-Hismon-Kind"] = message.kind
    mail["X-Hismon-Idempotency-Key"] = message.idempotency_key
    incident = message.incident
    if incident:
        mail["References"] = thread_id(incident, from_addr)
        mail["X-Hismon-Incident"] = str(incident.get("id"))
        if incident.get("severity") == "critical" and message.kind != "recovery":
            mail["X-Priority"] = "1 (Highest)"
            mail["Importance"] = "high"
    mail.set_content(plain, subtype="plain", charset="utf-8", cte="base64")
    mail.add_alternative(html_body(message, text), subtype="html", charset="utf-8",
                         cte="base64")
    return mail


def _code_text(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {text}".replace("\n", " ").strip()


def classify(exc: BaseException, host: str, secrets: list[str]) -> DeliveryError:
    """Turn what smtplib and ssl raise into a verdict: retry, or hand over to the fallback."""
    where = f"email via {host}"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        text = f"{where}: login refused: {_code_text(exc.smtp_code, exc.smtp_error)}"
        return DeliveryError(scrub(text, secrets)[:300], permanent=exc.smtp_code >= 500)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = exc.recipients
        detail = "; ".join(f"{addr}: {_code_text(code, reply)}"
                           for addr, (code, reply) in list(refused.items())[:3])
        permanent = all(code >= 500 for code, _ in refused.values())
        return DeliveryError(scrub(f"{where}: all recipients refused: {detail}",
                                   secrets)[:300], permanent=permanent)
    if isinstance(exc, smtplib.SMTPResponseException):
        text = f"{where}: {_code_text(exc.smtp_code, exc.smtp_error)}"
        return DeliveryError(scrub(text, secrets)[:300], permanent=exc.smtp_code >= 500)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryError(scrub(f"{where}: {exc}", secrets)[:300], permanent=True)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return DeliveryError(f"{where}: TLS certificate not trusted ({exc.verify_message}); "
                             "set ca_file to the hospital CA", permanent=True)
    if isinstance(exc, ssl.SSLError):
        return DeliveryError(f"{where}: TLS failed ({exc.reason or exc}); check tls and port",
                             permanent=True)
    if isinstance(exc, TimeoutError):
        return DeliveryError(f"{where}: timed out")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        if "timed out" in str(exc):  # smtplib reports a read timeout as a disconnect
            return DeliveryError(f"{where}: no answer from the server in time")
        return DeliveryError(scrub(f"{where}: connection closed: {exc}", secrets)[:300])
    if isinstance(exc, OSError):
        return DeliveryError(f"{where}: {exc.strerror or exc}")
    return DeliveryError(scrub(f"{where}: {type(exc).__name__}: {exc}", secrets)[:300])


class EmailNotifier(NotifierBase):
    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    """Defaults by `tls`: 587 for starttls, 465 for implicit, 25 for none."""
    tls: Literal["starttls", "implicit", "none"] = "starttls"
    username: str | None = None
    password: str | None = None
    from_: str = Field(alias="from")
    to: list[str] = Field(default_factory=list)
    """Who a message not meant for a person goes to; none needed when only people use it."""
    verify: bool = True
    """Verify the server's certificate and name; turn off only for a known test relay."""
    ca_file: str | None = None
    """PEM bundle of the hospital's own CA, for internal mail servers."""

    secret_fields = ("password",)

    def secrets(self) -> list[str]:
        """The password, and the AUTH PLAIN token smtplib sends (base64 of
        `\\0user\\0password`): a server echoing the exchange must not leak it. The password's
        own base64 (AUTH LOGIN) is masked by `scrub` for every secret."""
        values = super().secrets()
        if self.username is not None and self.password:
            values += [plain_auth_token(self.username, self.password),
                       base64.b64encode(f"{self.username}\0{self.password}".encode()).decode()]
        return values

    @field_validator("from_")
    @classmethod
    def _from_is_address(cls, value: str) -> str:
        return _address(value)

    @field_validator("to")
    @classmethod
    def _to_are_addresses(cls, value: list[str]) -> list[str]:
        return [_address(v) for v in value]

    @model_validator(mode="after")
    def _auth_is_safe(self) -> EmailNotifier:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.username is not None and self.tls == "none":
            raise ValueError("username/password need tls: starttls or implicit "
                             "(the password would cross the network in clear text)")
        return self

    @property
    def smtp_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.tls]

    def build_email(self, message: OutgoingMessage, *, now: float | None = None) -> EmailMessage:
        return build_email(message, from_addr=self.from_, to=self.addressees(message),
                           now=time.time() if now is None else now, limit=self.text_limit)

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def addressees(self, message: OutgoingMessage) -> list[str]:
        """A message for a person goes to their own address, not to `to` (SPEC §13.1)."""
        email = message.person_address("email")
        found = [email] if email else list(self.to)
        if not found:
            raise DeliveryError("email: no recipient (the message is for no person and the "
                                "notifier has no `to`)", permanent=True)
        return found

    def _transmit(self, mail: EmailMessage, deadline: float,
                  to: list[str] | None = None) -> str:
        """The blocking SMTP dialogue; every step gets what is left of one deadline."""

        def left() -> float:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("deadline passed")
            return remaining

        envelope_from = parseaddr(self.from_)[1]
        recipients = [parseaddr(t)[1] for t in (self.to if to is None else to)]
        helo = socket.gethostname()  # getfqdn() may wait on reverse DNS
        smtp: smtplib.SMTP
        if self.tls == "implicit":
            smtp = smtplib.SMTP_SSL(self.host, self.smtp_port, local_hostname=helo,
                                    timeout=left(), context=self._tls_context())
        else:
            smtp = smtplib.SMTP(self.host, self.smtp_port, local_hostname=helo, timeout=left())
        with smtp:
            smtp.ehlo_or_helo_if_needed()
            if self.tls == "starttls":
                if not smtp.has_extn("starttls"):
                    # Never fall back to clear text: that is the attack STARTTLS invites.
                    raise smtplib.SMTPNotSupportedError("server does not offer STARTTLS")
                assert smtp.sock is not None
                smtp.sock.settimeout(left())
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if self.username is not None and self.password is not None:
                assert smtp.sock is not None
                smtp.sock.settimeout(left())
                smtp.login(self.username, self.password)
            assert smtp.sock is not None
            smtp.sock.settimeout(left())
            code, reply = smtp.mail(envelope_from)
            if code != 250:
                smtp.rset()
                raise smtplib.SMTPSenderRefused(code, reply, envelope_from)
            refused: dict[str, tuple[int, bytes]] = {}
            for rcpt in recipients:
                smtp.sock.settimeout(left())
                code, reply = smtp.rcpt(rcpt)
                if code not in (250, 251):
                    refused[rcpt] = (code, reply)
            if len(refused) == len(recipients):
                smtp.rset()
                raise smtplib.SMTPRecipientsRefused(refused)
            smtp.sock.settimeout(left())
            code, reply = smtp.data(mail.as_bytes())
            if code != 250:
                smtp.rset()
                raise smtplib.SMTPDataError(code, reply)
        answer = _code_text(code, reply)
        if refused:
            # Delivered to the others: a retry would duplicate their mail. Say who is missing.
            answer += "; refused " + ", ".join(f"{a} ({c})" for a, (c, _) in refused.items())
        return answer[:200]

    async def send(self, message: OutgoingMessage, ctx: NotifyContext) -> str:
        mail = self.build_email(message)
        deadline = time.monotonic() + self.timeout
        try:
            return await asyncio.to_thread(self._transmit, mail, deadline,
                                           self.addressees(message))
        except Exception as exc:
            raise classify(exc, self.host, self.secrets()) from None
