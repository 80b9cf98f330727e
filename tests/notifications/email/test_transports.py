"""Handing a message over, against real servers: a real SMTP server (aiosmtpd, fast, slow or
silent after the data) and a real HTTP server standing in for a provider's API.

What a send comes to decides whether it may ever be sent again: ``retry`` only when the
message was not handed over, ``unknown`` when it was and no answer came."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from notifications import delivery
from notifications.dispatcher import emails_send
from notifications.models import OutboundEmail
from notifications.outbox import ClaimedEmail
from notifications.transports import BackendTransport, SmtpSettings, SmtpTransport, data_stuffed, transport_for


def claimed(pk: int = 1, **fields: Any) -> ClaimedEmail:
    values: dict[str, Any] = {
        "pk": pk,
        "tenant_id": 1,
        "tenant_name": "Example Accounting",
        "notification_id": None,
        "to_email": f"pat{pk}@example.com",
        "to_name": "Pat",
        "subject": "Your documents",
        "template": "custom",
        "context": {"body": "Hello Pat"},
        "attempts": 1,
        "priority": 2,
        "suppressed_as": None,
        "member_id": None,
        "kind": None,
        **fields,
    }
    return ClaimedEmail(**values)


def smtp(server, **settings: Any) -> SmtpTransport:  # noqa: ANN001
    options = {"host": "127.0.0.1", "port": server.port, "timeout": 5, "data_timeout": 600, **settings}
    return SmtpTransport(SmtpSettings(**options), size=4)


def send_all(transport, messages: list) -> list:  # noqa: ANN001
    async def run() -> list:
        try:
            return [await transport.send(message) for message in messages]
        finally:
            await transport.close()

    return asyncio.run(run())


def message(pk: int = 1) -> Any:
    return delivery.email_message_build(claimed(pk))


def test_data_is_sent_with_crlf_ends_and_leading_dots_doubled():
    assert data_stuffed(b"a\n.b\r\n..c\rd") == b"a\r\n..b\r\n...c\r\nd\r\n.\r\n"


def test_sends_one_after_another_share_one_session(smtp_server):
    results = send_all(smtp(smtp_server), [message(n) for n in range(4)])
    assert [result.kind for result in results] == ["sent"] * 4
    assert (len(smtp_server.received), smtp_server.handler.sessions) == (4, 1)


def test_a_4xx_at_rcpt_is_retried_and_the_session_goes_on(smtp_server):
    smtp_server.handler.rcpt_replies.append("451 4.3.0 Try again later")
    results = send_all(smtp(smtp_server), [message(1), message(2)])
    assert [(result.kind, result.reason[:15]) for result in results] == [
        ("retry", "SMTP recipient "),
        ("sent", "SMTP 250 Messag"),
    ]
    assert smtp_server.handler.sessions == 1


def test_a_session_the_server_does_not_reset_after_a_refusal_is_closed_not_reused(smtp_server):
    smtp_server.handler.rcpt_replies.append("451 4.3.0 Try again later")
    smtp_server.handler.rset_replies.append("503 5.5.1 Bad sequence of commands")
    results = send_all(smtp(smtp_server), [message(1), message(2)])
    assert [result.kind for result in results] == ["retry", "sent"]
    assert smtp_server.handler.sessions == 2  # the second email had a session of its own


def test_every_idle_session_past_its_time_is_closed(smtp_server, monkeypatch):
    """After a burst, a trickle of sends reuses one session; the burst's others are closed in time."""
    monkeypatch.setattr("notifications.transports.KEEP_OPEN_SECONDS", 1.0)
    transport = smtp(smtp_server)

    async def run() -> list:
        try:
            await asyncio.gather(*(transport.send(message(n)) for n in range(3)))
            burst = [session.client for session in transport._idle]
            for n in (4, 5):
                await asyncio.sleep(0.6)  # the burst's sessions are 1.2 s old at the second
                await transport.send(message(n))  # the freshest session, again and again
            return [client.is_connected for client in burst]  # before the transport closes
        finally:
            await transport.close()

    assert sorted(asyncio.run(run())) == [False, False, True]  # the one still in use stays open
    assert len(smtp_server.received) == 5


def test_a_5xx_at_rcpt_fails_and_says_whether_the_address_is_gone(smtp_server):
    smtp_server.handler.rcpt_replies += ["550 5.1.1 No such user here", "550 5.7.1 Rejected as spam"]
    gone, policy = send_all(smtp(smtp_server), [message(1), message(2)])
    assert (gone.kind, gone.address_gone) == ("failed", True)
    assert (policy.kind, policy.address_gone) == ("failed", False)


@pytest.mark.parametrize(
    ("reply", "kind"), [("452 4.3.1 Insufficient storage", "retry"), ("554 5.6.0 Message refused", "failed")]
)
def test_a_refusal_after_the_data_is_believed(smtp_server, reply, kind):
    """The server answered: it did not take the message, so a 4xx may be retried safely."""
    smtp_server.handler.data_replies.append(reply)
    [result] = send_all(smtp(smtp_server), [message()])
    assert result.kind == kind
    assert reply.split()[0] in result.reason


def test_a_server_slow_after_the_data_gets_one_copy_and_it_counts_as_sent(smtp_server):
    """Each command's timeout (1 s) is not the end-of-data reply's, which may take minutes."""
    smtp_server.handler.data_delay = 2.0
    [result] = send_all(smtp(smtp_server, timeout=1), [message()])
    assert result.kind == "sent"
    assert (smtp_server.handler.data_commands, len(smtp_server.received)) == (1, 1)


def test_no_reply_after_the_data_is_delivery_unknown_not_a_retry(smtp_server):
    smtp_server.handler.data_delay = 3.0
    [result] = send_all(smtp(smtp_server, data_timeout=0.5), [message()])
    assert result.kind == "unknown"
    assert result.reason.startswith("delivery unknown: the message was sent but the server gave no reply")
    # aiosmtpd hands a message to its handler only once its final "." has arrived
    assert smtp_server.handler.data_commands == 1


def test_a_slow_answer_before_the_data_is_retried(smtp_server):
    """A server that takes longer than the command timeout to answer RCPT never got the message."""

    async def slow_rcpt(server, session, envelope, address, options):  # noqa: ANN001
        await asyncio.sleep(2)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    smtp_server.handler.handle_RCPT = slow_rcpt  # type: ignore[method-assign]
    [result] = send_all(smtp(smtp_server, timeout=0.5), [message()])
    assert result.kind == "retry"
    assert smtp_server.handler.data_commands == 0


def test_a_refused_connection_is_retried():
    from tests.notifications.email.conftest import free_port

    transport = SmtpTransport(SmtpSettings(host="127.0.0.1", port=free_port(), timeout=2), size=1)
    [result] = send_all(transport, [message()])
    assert result.kind == "retry"


def test_the_dispatcher_records_one_delivery_from_a_slow_server(db, settings, smtp_mailer, make_email):
    """The issue's case: 250 three seconds after the final "." with SMTP_TIMEOUT=1: one copy, sent."""
    settings.MAILERS = {"default": smtp_mailer.mailer(timeout=1)}
    smtp_mailer.handler.data_delay = 3.0
    email = make_email()
    assert emails_send().count("sent") == 1
    email.refresh_from_db()
    assert (email.status, email.delivery_unknown, email.attempts) == ("sent", False, 1)
    assert smtp_mailer.handler.data_commands == 1


def test_the_dispatcher_records_an_unanswered_email_as_delivery_unknown(db, settings, smtp_mailer, make_email):
    settings.SMTP_DATA_TIMEOUT = 1
    smtp_mailer.handler.data_delay = 3.0
    email = make_email()
    assert emails_send().count("failed") == 1
    email.refresh_from_db()
    assert (email.status, email.delivery_unknown) == ("failed", True)
    assert email.last_error.startswith("delivery unknown")
    # nothing sends it again on its own: not a second run, not a bulk resend
    assert emails_send().outcomes == []
    assert delivery.emails_resend(email_ids=[email.pk]).resent == []
    assert OutboundEmail.objects.get(pk=email.pk).status == "failed"


# --- A provider's HTTP API (anymail's Postmark backend against a local server) -----------------


class _ProviderHandler(http.server.BaseHTTPRequestHandler):
    delay = 0.0
    requests: list[bytes]

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.requests.append(body)
        time.sleep(self.delay)
        to = json.loads(body)["To"]
        payload = json.dumps({"ErrorCode": 0, "Message": "OK", "MessageID": "pm-0001", "To": to}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def provider() -> Iterator[tuple[str, type[_ProviderHandler]]]:
    handler = type("Handler", (_ProviderHandler,), {"requests": [], "delay": 0.0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    server.shutdown()
    server.server_close()


def postmark(settings, url: str, timeout: float = 5) -> BackendTransport:  # noqa: ANN001
    settings.MAILERS = {
        "default": {
            "BACKEND": "anymail.backends.postmark.EmailBackend",
            "OPTIONS": {"server_token": "test-token", "api_url": url, "timeout": timeout},
        }
    }
    transport = transport_for("default", size=2)
    assert isinstance(transport, BackendTransport)
    return transport


def test_a_provider_that_answers_gives_its_message_id(settings, provider):
    url, handler = provider
    [result] = send_all(postmark(settings, url), [message()])
    assert (result.kind, result.message_id) == ("sent", "pm-0001")
    assert len(handler.requests) == 1


def test_a_provider_read_timeout_after_the_request_was_sent_is_delivery_unknown(settings, provider):
    url, handler = provider
    handler.delay = 2.0
    [result] = send_all(postmark(settings, url, timeout=0.5), [message()])
    assert result.kind == "unknown"
    assert "did not answer in time after the request was sent" in result.reason
    assert len(handler.requests) == 1


def test_a_provider_that_cannot_be_reached_is_retried(settings):
    from tests.notifications.email.conftest import free_port

    [result] = send_all(postmark(settings, f"http://127.0.0.1:{free_port()}/", timeout=2), [message()])
    assert result.kind == "retry"


# --- Amazon SES (anymail's SES backend, real boto3) against a local server ---------------------


class _SesHandler(http.server.BaseHTTPRequestHandler):
    """SES v2's SendEmail: answers with a message id, a scripted error, or late."""

    delay = 0.0
    error: tuple[int, str] | None = None  # (HTTP status, SES error code)
    requests: list[str]

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.requests.append(self.path)
        time.sleep(self.delay)
        status, payload, headers = 200, {"MessageId": "ses-0001"}, {}
        if self.error:
            status, code = self.error
            payload, headers = {"message": f"{code} from the test"}, {"x-amzn-ErrorType": code}
        body = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def ses_server() -> Iterator[tuple[str, type[_SesHandler]]]:
    handler = type("Handler", (_SesHandler,), {"requests": [], "delay": 0.0, "error": None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def ses(settings, monkeypatch, url: str, read_timeout: float = 5) -> BackendTransport:  # noqa: ANN001
    pytest.importorskip("boto3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    settings.MAILERS = {
        "default": {
            "BACKEND": "anymail.backends.amazon_ses.EmailBackend",
            "OPTIONS": {
                "client_params": {
                    "region_name": "eu-west-1",
                    "endpoint_url": url,
                    # as kgc/settings.py makes it, with short timeouts for the test
                    "config": {"retries": {"total_max_attempts": 1, "mode": "standard"}, "read_timeout": read_timeout,
                               "connect_timeout": 2},
                }
            },
        }
    }  # fmt: skip
    transport = transport_for("default", size=2)
    assert isinstance(transport, BackendTransport)
    return transport


def test_amazon_ses_that_answers_gives_its_message_id(settings, monkeypatch, ses_server):
    url, handler = ses_server
    [result] = send_all(ses(settings, monkeypatch, url), [message()])
    assert (result.kind, result.message_id) == ("sent", "ses-0001")
    assert handler.requests == ["/v2/email/outbound-emails"]


def test_amazon_ses_silent_after_the_request_is_delivery_unknown_and_asked_once(settings, monkeypatch, ses_server):
    url, handler = ses_server
    handler.delay = 2.0
    [result] = send_all(ses(settings, monkeypatch, url, read_timeout=0.5), [message()])
    assert result.kind == "unknown"
    assert result.reason.startswith("delivery unknown: Amazon SES did not answer")
    assert len(handler.requests) == 1  # botocore sent it once, not again


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ((400, "MessageRejected"), "failed"),
        ((429, "TooManyRequestsException"), "retry"),
        ((500, "InternalFailure"), "retry"),
    ],
)
def test_amazon_ses_refusals_are_read_by_their_status(settings, monkeypatch, ses_server, error, kind):
    url, handler = ses_server
    handler.error = error
    [result] = send_all(ses(settings, monkeypatch, url), [message()])
    assert result.kind == kind
    assert result.reason.startswith(f"Amazon SES API {error[0]}: {error[1]}")


def test_amazon_ses_that_cannot_be_reached_is_retried(settings, monkeypatch):
    from tests.notifications.email.conftest import free_port

    [result] = send_all(ses(settings, monkeypatch, f"http://127.0.0.1:{free_port()}"), [message()])
    assert result.kind == "retry"
    assert "before it was sent" in result.reason
