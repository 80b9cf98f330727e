"""Fixtures for the email tests: a real SMTP server (aiosmtpd) per test, rows to send,
and email worker subprocesses pointed at that server."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from anymail.backends.test import EmailBackend as AnymailTestBackend
from anymail.exceptions import AnymailRequestsAPIError

from notifications.models import OutboundEmail
from notifications.services import NotificationDraft, notifications_deliver
from tests.helpers import manage_popen, subprocess_env


def free_port() -> int:
    # aiosmtpd's Controller(port=0) fails its own start-up check, so pick a port first.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.raw, policy=policy.default)  # type: ignore[return-value]


@dataclass
class RecordingHandler:
    """Accepts mail and keeps it; scripted replies make RCPT or DATA fail first."""

    received: list[Received] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)  # consumed one per RCPT, then 250
    data_replies: list[str] = field(default_factory=list)  # consumed one per DATA, then 250
    rset_replies: list[str] = field(default_factory=list)  # consumed one per RSET, then 250
    data_commands: int = 0
    sessions: int = 0  # EHLO greetings: one per SMTP session
    in_data: threading.Event = field(default_factory=threading.Event)
    hold: threading.Event | None = None  # while set to an unset Event, DATA waits for it
    data_delay: float = 0.0  # seconds between the end of a message's data and the reply (a slow server)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        return self.rset_replies.pop(0) if self.rset_replies else "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_commands += 1
        self.in_data.set()
        if self.hold is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.hold.wait, 60)
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_replies:
            return self.data_replies.pop(0)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    port: int
    handler: RecordingHandler

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def mailer(self, **options: Any) -> dict[str, Any]:
        return {
            "BACKEND": "notifications.mime.SMTPBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": self.port, "use_tls": False, "timeout": 10, **options},
        }

    def env(self) -> dict[str, str]:
        """The variables that point a worker subprocess at this server."""
        return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.port), "SMTP_STARTTLS": "false"}


def _start(handler: RecordingHandler, **smtp_options: Any) -> tuple[Controller, SmtpServer]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **smtp_options)
    controller.start()
    return controller, SmtpServer(port=port, handler=handler)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    controller, server = _start(RecordingHandler())
    yield server
    if server.handler.hold is not None:
        server.handler.hold.set()
    controller.stop()


SMTP_USER, SMTP_PASSWORD = "kgc-mailer", "pw-9f3c-never-in-logs"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server_with_auth() -> Iterator[SmtpServer]:
    controller, server = _start(RecordingHandler(), authenticator=_authenticate, auth_require_tls=False)
    yield server
    controller.stop()


@pytest.fixture
def smtp_mailer(settings, smtp_server: SmtpServer) -> SmtpServer:
    """This process sends through the test SMTP server (pytest-django installs locmem otherwise)."""
    settings.MAILERS = {"default": smtp_server.mailer()}
    return smtp_server


@pytest.fixture
def make_email(tenant) -> Callable[..., OutboundEmail]:
    """``make_email(**fields)``: a queued outbound email (the custom template unless told)."""
    counter = iter(range(1, 1_000_000))

    def make(**fields: Any) -> OutboundEmail:
        values: dict[str, Any] = {
            "tenant": tenant,
            "to_email": "pat@example.com",
            "to_name": "Pat Person",
            "subject": "Your documents",
            "template": "custom",
            "context": {"body": "Hello Pat"},
            "idempotency_key": f"test:{next(counter)}:{time.monotonic_ns()}",
            **fields,
        }
        return OutboundEmail.objects.create(**values)

    return make


@pytest.fixture
def notified_email(tenant, member_of) -> Callable[..., OutboundEmail]:
    """``notified_email(**data)``: a notification and its queued email, made as the reminders make them."""

    def make(key: str = "expiry:doc-1:30", user: Any = None, **data: Any) -> OutboundEmail:
        user = user or member_of(tenant, "admin")
        sample = {
            "documentId": 1,
            "clientId": 1,
            "documentTitle": "TIN Certificate",
            "documentType": "TIN Certificate",
            "clientName": "ACME Corp",
            "expiresOn": "2026-12-29",
            "daysLeft": 30,
            "tenantName": tenant.name,
            **data,
        }
        notifications_deliver(
            tenant=tenant,
            drafts=[
                NotificationDraft(
                    recipient_id=user.pk,
                    recipient_email=user.email,
                    recipient_name=user.get_full_name(),
                    kind="document_expiry",
                    title="TIN Certificate of ACME Corp expires in 30 days",
                    body="...",
                    dedupe_key=key,
                    email_template="document-expiry",
                    email_subject="TIN Certificate of ACME Corp expires in 30 days",
                    data=sample,
                )
            ],
        )
        return OutboundEmail.objects.get(notification__dedupe_key=key)

    return make


class EmailWorkers:
    """``manage.py runworkers --queues email`` subprocesses; all stopped at the end of the test."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, **env: str | None) -> subprocess.Popen[str]:
        process = manage_popen("runworkers", "--queues", "email", "--shutdown-timeout", "5", env=subprocess_env(**env))
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
            if process.stdout:
                process.stdout.close()


@pytest.fixture
def email_workers(transactional_db) -> Iterator[EmailWorkers]:
    workers = EmailWorkers()
    yield workers
    workers.stop_all()


class StatusTestBackend(AnymailTestBackend):
    """anymail's test backend, answering every send with the HTTP status in ``STATUS`` (a class attribute)."""

    STATUS = 503

    def post_to_esp(self, payload: Any, message: Any) -> Any:
        response = requests.Response()
        response.status_code = self.STATUS
        response.reason = "scripted"
        response._content = b'{"Message": "scripted provider reply"}'
        raise AnymailRequestsAPIError("send failed", response=response, backend=self, email_message=message)
