"""E-mail against real SMTP servers on 127.0.0.1 (aiosmtpd): plain, STARTTLS + AUTH, SMTPS.

Certificates come from a throwaway `trustme` CA, so TLS is verified for real: with the CA
in `ca_file` delivery works, without it the notifier refuses the server.
"""

from __future__ import annotations

import asyncio
import base64
import email
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import ValidationError

from monitor.core.text import plain_auth_token
from notifiers import NOTIFIER_TYPES
from notifiers.base import DeliveryError, NotifyContext, OutgoingMessage
from notifiers.email import EmailNotifier, build_email, message_id

USER, PASSWORD = "hismon@hospital.example", "Xy7-pw-ward-42!"
FROM = "医院信息科 <hismon@hospital.example>"
TO = ["director@hospital.example", "it-oncall@hospital.example"]
TITLE = "【领导报告】门诊医生站 故障 已持续 25 分钟"
TEXT = ("门诊医生站自 08:05 起无法使用，疑似数据库故障。\n"
        "受影响科室：急诊科、门诊部、发热门诊。\n详情：http://hismon.hospital.internal:9464/")


def message(**changes: Any) -> OutgoingMessage:
    fields: dict[str, Any] = {
        "kind": "leadership_report", "idempotency_key": "inc-42:step-2:email-leaders:0",
        "recipient": "email-leaders", "title": TITLE, "text": TEXT,
        "incident": {"id": "inc-42", "system": "his-outpatient", "severity": "critical",
                     "started_at": "2026-11-20T08:05:12+08:00"},
        "status_url": "http://hismon.hospital.internal:9464/",
    }
    fields.update(changes)
    return OutgoingMessage(**fields)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    login: bytes | None

    def parsed(self) -> EmailMessage:
        return email.message_from_bytes(self.content, policy=default_policy)  # type: ignore[return-value]


class Mailbox:
    """aiosmtpd handler: keeps every accepted mail, refuses the addresses it is told to."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.refuse: dict[str, str] = {}

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                      envelope.original_content or envelope.content,
                                      session.ssl is not None,
                                      getattr(session.auth_data, "login", None)))
        return "250 2.0.0 Ok: queued as 4F2A9C"


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                  auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode()
          and auth_data.password == PASSWORD.encode())
    # handled=False: aiosmtpd itself answers "535 5.7.8 Authentication credentials invalid".
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class LoopbackController(Controller):
    """aiosmtpd on port 0: learn the port the kernel chose before the readiness probe."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "hospital-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def start(mailbox: Mailbox, **options: Any) -> LoopbackController:
    controller = LoopbackController(mailbox, hostname="127.0.0.1", port=0, ready_timeout=5,
                                    **options)
    controller.start()
    return controller


@pytest.fixture
def plain() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    controller = start(mailbox)
    yield mailbox, controller.port
    controller.stop()


@pytest.fixture
def starttls_auth(server_tls: ssl.SSLContext) -> Iterator[tuple[Mailbox, int]]:
    """A submission server as hospitals run them: STARTTLS required, then AUTH required."""
    mailbox = Mailbox()
    controller = start(mailbox, tls_context=server_tls, require_starttls=True,
                       authenticator=authenticator, auth_required=True)
    yield mailbox, controller.port
    controller.stop()


@pytest.fixture
def smtps(server_tls: ssl.SSLContext) -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    controller = start(mailbox, ssl_context=server_tls)
    yield mailbox, controller.port
    controller.stop()


def mailer(port: int, **keys: Any) -> EmailNotifier:
    config = {"id": "email-leaders", "type": "email", "host": "127.0.0.1", "port": port,
              "tls": "none", "from": FROM, "to": TO, "timeout": "5s", **keys}
    return EmailNotifier.model_validate(config)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_email_is_registered() -> None:
    """Configs can name `type: email`; `from` is read despite being a Python keyword."""
    assert NOTIFIER_TYPES["email"] is EmailNotifier
    assert mailer(25).from_ == FROM


def test_the_message_id_comes_from_the_idempotency_key() -> None:
    """Same key, same Message-ID (clients drop the duplicate); another key, another id."""
    first = build_email(message(), from_addr=FROM, to=TO, now=0, limit=100_000)
    again = build_email(message(), from_addr=FROM, to=TO, now=60, limit=100_000)
    other = build_email(message(idempotency_key="inc-42:step-3:email-leaders:0"),
                        from_addr=FROM, to=TO, now=0, limit=100_000)
    assert first["Message-ID"] == again["Message-ID"] == message_id(
        "inc-42:step-2:email-leaders:0", FROM)
    assert first["Message-ID"].endswith("@hospital.example>")
    assert other["Message-ID"] != first["Message-ID"]
    assert other["References"] == first["References"]  # one thread per incident


async def test_it_delivers_utf8_subject_and_body_in_plain_and_html(
    plain: tuple[Mailbox, int], ctx: NotifyContext
) -> None:
    """Envelope, headers and both parts arrive; the Chinese subject decodes back exactly."""
    mailbox, port = plain
    answer = await mailer(port).send(message(), ctx)
    assert answer.startswith("250 2.0.0 Ok: queued as 4F2A9C")
    (mail,) = mailbox.received
    assert mail.mail_from == "hismon@hospital.example"
    assert mail.rcpt_tos == TO
    raw_headers = mail.content.split(b"\r\n\r\n", 1)[0]
    assert raw_headers.isascii()  # RFC 2047: survives any relay
    parsed = mail.parsed()
    assert parsed["Subject"] == TITLE
    assert parsed["From"].addresses[0].display_name == "医院信息科"
    assert parsed["Message-ID"] == message_id("inc-42:step-2:email-leaders:0", FROM)
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["X-Priority"].startswith("1")
    text_part = parsed.get_body(("plain",))
    html_part = parsed.get_body(("html",))
    assert text_part is not None and html_part is not None
    assert "受影响科室：急诊科、门诊部、发热门诊。" in text_part.get_content()
    html = html_part.get_content()
    assert TITLE in html
    assert '<a href="http://hismon.hospital.internal:9464/">' in html


async def test_starttls_and_auth_deliver_with_the_hospital_ca(
    starttls_auth: tuple[Mailbox, int], ca_file: str, ctx: NotifyContext
) -> None:
    """The server required TLS before AUTH; the mail went over TLS as the configured user."""
    mailbox, port = starttls_auth
    notifier = mailer(port, tls="starttls", username=USER, password=PASSWORD, ca_file=ca_file)
    answer = await notifier.send(message(), ctx)
    assert answer.startswith("250")
    (mail,) = mailbox.received
    assert mail.tls is True
    assert mail.login == USER.encode()
    assert mail.parsed()["Subject"] == TITLE


async def test_a_refused_login_is_permanent_and_hides_the_password(
    starttls_auth: tuple[Mailbox, int], ca_file: str, ctx: NotifyContext
) -> None:
    """535: the password is wrong; waiting will not fix it, and the error does not repeat it."""
    mailbox, port = starttls_auth
    wrong = "not-the-password-123"
    notifier = mailer(port, tls="starttls", username=USER, password=wrong, ca_file=ca_file)
    with pytest.raises(DeliveryError) as failure:
        await notifier.send(message(), ctx)
    assert failure.value.permanent is True
    assert "535" in str(failure.value)
    assert wrong not in str(failure.value)
    assert mailbox.received == []


async def test_an_untrusted_certificate_is_permanent(
    starttls_auth: tuple[Mailbox, int], ctx: NotifyContext
) -> None:
    """Without the hospital CA the server is not trusted: no mail, and a hint to set ca_file."""
    mailbox, port = starttls_auth
    notifier = mailer(port, tls="starttls", username=USER, password=PASSWORD)
    with pytest.raises(DeliveryError) as failure:
        await notifier.send(message(), ctx)
    assert failure.value.permanent is True
    assert "ca_file" in str(failure.value)
    assert mailbox.received == []


async def test_starttls_is_never_skipped(plain: tuple[Mailbox, int], ctx: NotifyContext) -> None:
    """A server that does not offer STARTTLS gets nothing rather than a clear-text mail."""
    mailbox, port = plain
    with pytest.raises(DeliveryError) as failure:
        await mailer(port, tls="starttls").send(message(), ctx)
    assert failure.value.permanent is True
    assert "STARTTLS" in str(failure.value)
    assert mailbox.received == []


async def test_implicit_tls_delivers(
    smtps: tuple[Mailbox, int], ca_file: str, ctx: NotifyContext
) -> None:
    """tls: implicit speaks TLS from the first byte (SMTPS, port 465 style)."""
    mailbox, port = smtps
    assert (await mailer(port, tls="implicit", ca_file=ca_file).send(message(), ctx)
            ).startswith("250")
    assert mailbox.received[0].parsed()["Subject"] == TITLE


async def test_one_refused_recipient_does_not_stop_the_others(
    plain: tuple[Mailbox, int], ctx: NotifyContext
) -> None:
    """The others get the mail; the answer names who was refused (a retry would duplicate)."""
    mailbox, port = plain
    mailbox.refuse["director@hospital.example"] = "550 5.1.1 mailbox unavailable"
    answer = await mailer(port).send(message(), ctx)
    assert mailbox.received[0].rcpt_tos == ["it-oncall@hospital.example"]
    assert "refused director@hospital.example (550)" in answer


@pytest.mark.parametrize(("reply", "permanent"), [
    ("550 5.1.1 mailbox unavailable", True),
    ("450 4.2.0 greylisted, try again later", False),
])
async def test_all_recipients_refused_is_judged_by_the_code(
    plain: tuple[Mailbox, int], ctx: NotifyContext, reply: str, permanent: bool
) -> None:
    """5xx for everyone is permanent; 4xx (greylisting) retries."""
    mailbox, port = plain
    mailbox.refuse = {addr: reply for addr in TO}
    with pytest.raises(DeliveryError) as failure:
        await mailer(port).send(message(), ctx)
    assert failure.value.permanent is permanent
    assert reply.split()[0] in str(failure.value)


async def test_a_closed_port_is_retryable(ctx: NotifyContext) -> None:
    """Connection refused: the mail server may be restarting."""
    with pytest.raises(DeliveryError) as failure:
        await mailer(free_port()).send(message(), ctx)
    assert failure.value.permanent is False
    assert "127.0.0.1" in str(failure.value)


async def test_a_server_that_never_greets_costs_only_the_timeout(ctx: NotifyContext) -> None:
    """Accepts TCP, never says 220: a retryable error after `timeout`, not a hang."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(DeliveryError) as failure:
            await mailer(port, timeout="500ms").send(message(), ctx)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert failure.value.permanent is False
    assert "no answer" in str(failure.value)
    assert elapsed < 3


def test_a_password_without_tls_is_refused() -> None:
    """Safe defaults: no config that would send the password in clear text."""
    with pytest.raises(ValidationError, match="clear text"):
        mailer(25, username=USER, password=PASSWORD)


def test_addresses_are_checked() -> None:
    """A typo in `to` is a config error, not a bounce during an outage."""
    with pytest.raises(ValidationError, match="not an e-mail address"):
        mailer(25, to=["director.hospital.example"])


def echoing_authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                          auth_data: Any) -> AuthResult:
    """A server that quotes the client's AUTH exchange in its refusal (seen in the wild)."""
    if mechanism == "PLAIN":
        sent = base64.b64encode(b"\0" + auth_data.login + b"\0" + auth_data.password)
    else:  # LOGIN sends the password on its own line
        sent = base64.b64encode(auth_data.password)
    return AuthResult(success=False, handled=False,
                      message=f"535 5.7.8 rejected {mechanism} {sent.decode()}")


async def test_a_server_echoing_auth_does_not_leak_the_password_in_base64(
    server_tls: ssl.SSLContext, ca_file: str, ctx: NotifyContext
) -> None:
    """The refusal quoted base64 of `\\0user\\0password`; hismon knows what it sent, so it
    masks that too (issue 11)."""
    mailbox = Mailbox()
    controller = start(mailbox, tls_context=server_tls, require_starttls=True,
                       authenticator=echoing_authenticator, auth_required=True)
    try:
        notifier = mailer(controller.port, tls="starttls", username=USER,
                          password="Secret-Pw-4711", ca_file=ca_file)
        with pytest.raises(DeliveryError) as failure:
            await notifier.send(message(), ctx)
    finally:
        controller.stop()
    text = str(failure.value)
    assert "535" in text and "rejected" in text
    for leaked in (plain_auth_token(USER, "Secret-Pw-4711"),
                   base64.b64encode(b"Secret-Pw-4711").decode(), "Secret-Pw-4711"):
        assert leaked not in text
    assert "***" in text
