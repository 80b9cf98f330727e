"""Sending one stored email, never twice.

The send job works from the ``OutboundEmail`` row:

1. It loads the row and takes a PostgreSQL session advisory lock on it (one query),
   held for the whole send. A second worker holding a job for the same row finds the
   lock taken and sends nothing; a worker that dies loses its connection, and
   PostgreSQL releases its lock with it.
2. It renders and builds the message (a rendering or build error fails the row at
   once: the same data would fail the same way on every retry).
3. It claims the row: one ``UPDATE ... WHERE status = 'queued'`` (the row lock, the
   check and queued → sending, attempts + 1 in one short, durably committed
   transaction), then sends outside any transaction, on this thread's kept-open
   connection to the mail server.
4. It records ``sent``, the provider's message id and ``sent_at``, and mirrors the
   outcome into ``Notification.email_status``, in one statement; then unlocks.

A row whose address is suppressed (``notifications.suppressions``) is recorded as
``suppressed``, with its notification, and nothing is sent; an SMTP 5xx that says the
address does not exist suppresses it for every tenant.

At most once: a job that finds its row in ``sending`` with the lock free knows the
worker that claimed it died between sending and recording. It cannot tell whether the
message left, so it does not send again: the row fails as "delivery unknown" for an
operator to check and resend from the admin.

Transient failures (SMTP 4xx, dropped or refused connections, timeouts, provider 429
or 5xx) put the row back to ``queued`` and raise, so the queue retries with backoff;
on the final attempt the row fails with the last error. Permanent failures (SMTP 5xx,
an invalid address, provider 4xx, bad template data) fail the row at once and raise
``PermanentJobError``, so there is no retry.
"""

from __future__ import annotations

import contextlib
import json
import logging
import smtplib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.utils import parseaddr
from typing import Any

import psycopg
from anymail.exceptions import (
    AnymailAPIError,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
    AnymailUnsupportedFeature,
)
from django.conf import settings
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.db import connection, models, transaction
from django.utils import timezone
from procrastinate.contrib.django import app
from procrastinate.types import JSONValue

from kgc.queue import jobs
from kgc.queue.retry import PermanentJobError
from notifications import rendering, suppressions
from notifications.exceptions import NotificationError
from notifications.mime import PreparedEmail
from notifications.models import (
    Notification,
    NotificationEmailStatus,
    OutboundEmail,
    OutboundStatus,
    SuppressionReason,
)
from notifications.preferences import ALL_KINDS, EmailLinks, email_links
from notifications.services import SEND_EMAIL_TASK
from notifications.texts import header_text
from notifications.tracking import DO_NOT_RESEND

logger = logging.getLogger("notifications.email")

# Advisory lock keys of outbound emails: this namespace in the high 32 bits, the row id
# in the low ones. The single-bigint key space is separate from the two-int one the
# queue layer uses for its rate limits.
ADVISORY_LOCK_NAMESPACE = 0x4B47_4345  # "KGCE"
LINE_BREAKS = ("\r", "\n")


class SendOutcome(models.TextChoices):
    SENT = "sent", "Sent"
    ALREADY_SENT = "already-sent", "Already sent earlier: nothing sent"
    ALREADY_FAILED = "already-failed", "Failed earlier: nothing sent"
    IN_PROGRESS = "in-progress", "Another worker is sending it: nothing sent"
    SUPPRESSED = "suppressed", "The address is suppressed: nothing sent"


class EmailTransientError(NotificationError):
    """A send that may work later; not a ValueError, so the queue retries it."""


class EmailPermanentError(PermanentJobError, NotificationError):
    """A send that would fail the same way again: the row fails, the job fails without retry."""


class EmailDeliveryUnknown(EmailPermanentError):
    """The worker that claimed the row died before recording the outcome (see the module doc)."""


class EmailBusy(EmailTransientError):
    """Another worker holds the row's send lock: look again later (the row may be stuck)."""


class HeaderInjection(EmailPermanentError, ValueError):
    pass


class MessageBuildError(EmailPermanentError, ValueError):
    """The row's values make no valid message (an address no header can carry...)."""


@dataclass(frozen=True)
class SendFailure:
    permanent: bool
    reason: str


def _smtp_text(error: Any) -> str:
    return error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)


def send_failure_classify(exc: BaseException) -> SendFailure:
    """Whether a send error is permanent, and a reason fit for the row and the logs.

    Pure. The reason never contains the message body or credentials: SMTP replies and
    provider responses are quoted, anymail's payload is not.
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        replies = "; ".join(f"{code} {_smtp_text(text)}" for code, text in exc.recipients.values())
        return SendFailure(permanent=bool(codes) and min(codes) >= 500, reason=f"SMTP recipient refused: {replies}")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        # A configuration problem, not this email's: retried, so that fixing SMTP_USER
        # or SMTP_PASSWORD within the backoff lets the queue drain.
        return SendFailure(False, f"SMTP authentication failed: {exc.smtp_code} {_smtp_text(exc.smtp_error)}")
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = f"SMTP {exc.smtp_code} {_smtp_text(exc.smtp_error)}"
        return SendFailure(permanent=500 <= exc.smtp_code < 600, reason=reply)
    if isinstance(exc, AnymailRecipientsRefused):
        return SendFailure(True, "the provider refused the recipient (invalid, bounced before or suppressed)")
    if isinstance(exc, AnymailInvalidAddress | AnymailUnsupportedFeature):
        return SendFailure(True, f"{type(exc).__name__}: {exc.args[0] if exc.args else ''}")
    if isinstance(exc, AnymailAPIError):
        status = exc.status_code
        text = getattr(exc.response, "text", "") or ""
        reason = f"{exc.esp_name or 'provider'} API {status or 'request failed'}" + (f": {text[:300]}" if text else "")
        if status is None:
            return SendFailure(False, reason)  # no response at all: network trouble
        return SendFailure(permanent=400 <= status < 500 and status != 429, reason=reason)
    # Dropped or refused connections, timeouts, TLS trouble, a server that hung up.
    return SendFailure(False, f"{type(exc).__name__}: {exc}"[:500])


def header_errors(*, subject: str, to_name: str, to_email: str) -> list[str]:
    """Fields that would let a line break into the message headers."""
    fields = {"subject": subject, "recipient_name": to_name, "recipient_email": to_email}
    return [name for name, value in fields.items() if any(mark in value for mark in LINE_BREAKS)]


def sender_domain(from_email: str) -> str:
    """The domain of ``EMAIL_FROM`` (``Name <addr@domain>`` or ``addr@domain``)."""
    _, at, domain = parseaddr(from_email)[1].rpartition("@")
    return domain if at and domain else "kgc.invalid"


def message_id_for(*, outbound_email_id: int, tenant_id: int, from_email: str) -> str:
    """The stable Message-ID of an outbound email: the same on every attempt."""
    return f"<outbound-{outbound_email_id}.{tenant_id}@{sender_domain(from_email)}>"


def message_compose(
    *,
    to_email: str,
    to_name: str,
    subject: str,
    template: str,
    data: dict[str, Any],
    tenant_name: str,
    message_id: str,
    headers: dict[str, str],
    links: EmailLinks | None = None,
) -> PreparedEmail:
    """A message with its text and HTML parts and the given Message-ID and headers.

    With ``links`` (an email to a member, and a public URL to point them at), the footer
    links to the person's preferences and to unsubscribing, and the message carries the
    one-click unsubscribe headers of RFC 2369 and RFC 8058 (List-Unsubscribe,
    List-Unsubscribe-Post), which mail clients show as an "Unsubscribe" button.

    Raises ``HeaderInjection``, ``MessageBuildError`` or ``rendering.EmailDataError``
    (all permanent).
    """
    bad = header_errors(subject=subject, to_name=to_name, to_email=to_email)
    if bad:
        raise HeaderInjection(f"line break in {', '.join(bad)}: refused (header injection)")
    # The other line separators (U+2028, NEL, form feed...) come from names typed
    # into the product; the email package refuses them in a header, a space reads the same.
    subject, to_name = header_text(subject), header_text(to_name)
    rendered = rendering.email_render(
        template=template, subject=subject, data=data, tenant_name=tenant_name, links=links
    )
    if links is not None:
        headers = {
            **headers,
            "List-Unsubscribe": f"<{links.unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
    try:
        message = PreparedEmail(
            subject=rendered.subject,
            body=rendered.text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[str(Address(display_name=to_name, addr_spec=to_email))],
            headers={"Message-ID": message_id, **headers},
        )
        message.attach_alternative(rendered.html, "text/html")
        # Built and serialised now, once, not inside the backend's send: a message that
        # cannot be built fails here, as the permanent error it is.
        message.prepare(to_name=to_name, to_email=to_email)
    except Exception as exc:
        raise MessageBuildError(f"the message cannot be built: {type(exc).__name__}: {exc}"[:500]) from exc
    return message


@dataclass(frozen=True)
class EmailToSend:
    """An outbound email row and what its message needs, read with its send lock in one
    statement (``LOCK_AND_GET_SQL``): no model instances on the send path."""

    pk: int
    tenant_id: int
    tenant_name: str
    notification_id: int | None
    to_email: str
    to_name: str
    subject: str
    template: str
    context: dict[str, Any]
    status: str
    send_locked: bool
    suppressed_as: str | None
    member_id: int | None  # the person it is for: a notification's recipient, or a digest's
    kind: str | None  # a notification's kind; ALL_KINDS for a digest


def email_links_for(email: EmailToSend) -> EmailLinks | None:
    """The preferences and unsubscribe links of an email to a member: a notification's
    (that kind) or a digest's (every kind). None for an email to an address the system
    knows no member by (the API's), and without ``KGC_PUBLIC_URL``."""
    if email.member_id is None or email.kind is None:
        return None
    return email_links(
        public_url=settings.KGC_PUBLIC_URL, user_id=email.member_id, tenant_id=email.tenant_id, kind=email.kind
    )


def email_message_build(email: EmailToSend) -> PreparedEmail:
    """The message for one row: stable Message-ID, X-KGC-Tenant and X-KGC-Notification headers,
    and the unsubscribe headers and links of an email to a member."""
    message = message_compose(
        to_email=email.to_email,
        to_name=email.to_name,
        subject=email.subject,
        template=email.template,
        data=email.context,
        tenant_name=email.tenant_name,
        message_id=message_id_for(
            outbound_email_id=email.pk, tenant_id=email.tenant_id, from_email=settings.DEFAULT_FROM_EMAIL
        ),
        headers={"X-KGC-Tenant": str(email.tenant_id), "X-KGC-Notification": str(email.notification_id or "none")},
        links=email_links_for(email),
    )
    # Read by anymail's providers (tags, metadata in webhooks); ignored by SMTP.
    message.tags = [email.template]  # type: ignore[attr-defined]
    message.metadata = {"outbound_email_id": str(email.pk), "tenant_id": str(email.tenant_id)}  # type: ignore[attr-defined]
    return message


def provider_message_id(message: EmailMultiAlternatives) -> str:
    """The id the provider knows the message by (anymail's), else its own Message-ID."""
    status = getattr(message, "anymail_status", None)
    if status is not None and status.message_id is not None:
        return str(status.message_id)
    return str(message.extra_headers["Message-ID"])


def send_lock_key(outbound_email_id: int) -> int:
    return (ADVISORY_LOCK_NAMESPACE << 32) | (outbound_email_id & 0xFFFF_FFFF)


# The row, the tenant's name, whom it is for (a notification's recipient or a digest's), the
# address's suppression if any (the newest), and its send lock, in one statement. The lock
# is taken only when the row exists (pg_try_advisory_lock runs for the row found).
LOCK_AND_GET_SQL = """
SELECT email.id, email.tenant_id, tenant.name, email.notification_id, email.to_email, email.to_name,
       email.subject, email.template, email.context, email.status,
       pg_try_advisory_lock(%(key)s) AS send_locked,
       (SELECT suppression.reason FROM notifications_suppression AS suppression
         WHERE suppression.email = lower(email.to_email)
           AND (suppression.tenant_id = email.tenant_id OR suppression.tenant_id IS NULL)
         ORDER BY suppression.created_at DESC LIMIT 1) AS suppressed_as,
       coalesce(notification.recipient_id, digest.recipient_id) AS member_id,
       CASE WHEN notification.id IS NOT NULL THEN notification.kind
            WHEN digest.id IS NOT NULL THEN %(all_kinds)s END AS kind
  FROM notifications_outboundemail AS email
  JOIN compliance_tenant AS tenant ON tenant.id = email.tenant_id
  LEFT JOIN notifications_notification AS notification ON notification.id = email.notification_id
  LEFT JOIN notifications_digest AS digest ON digest.outbound_email_id = email.id
 WHERE email.id = %(id)s AND (%(tenant_id)s::bigint IS NULL OR email.tenant_id = %(tenant_id)s)
"""


def _statement(query: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """Run one of the send path's statements on Django's connection of this thread; its
    first row. Prepared on the server: the same four statements run for every email, so
    each is parsed and planned once per connection, not once per email (planning the
    read's joins cost more than running them)."""
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(query, params, prepare=True)
        return cursor.fetchone() if cursor.description else None


def _email_lock_and_get(outbound_email_id: int, tenant_id: int | None) -> EmailToSend:
    """The row, with ``send_locked``: whether this call took its advisory lock (one query).

    A session lock, not a transaction one: the send runs outside any transaction, and
    the lock must last until the outcome is recorded (or the process dies with it).
    """
    row = _statement(
        LOCK_AND_GET_SQL,
        {
            "id": outbound_email_id,
            "tenant_id": tenant_id,
            "key": send_lock_key(outbound_email_id),
            "all_kinds": ALL_KINDS,
        },
    )
    if row is None:
        raise OutboundEmail.DoesNotExist(f"no outbound email {outbound_email_id} of tenant {tenant_id}")
    (pk, tenant, tenant_name, notification, to_email, to_name, subject, template, context, status, locked,
     suppressed_as, member, kind) = row  # fmt: skip
    return EmailToSend(
        pk=pk,
        tenant_id=tenant,
        tenant_name=tenant_name,
        notification_id=notification,
        to_email=to_email,
        to_name=to_name,
        subject=subject,
        template=template,
        # Django's connection leaves jsonb as text (its JSONField decodes it).
        context=context if isinstance(context, dict) else json.loads(context),
        status=status,
        send_locked=locked,
        suppressed_as=suppressed_as,
        member_id=member,
        kind=kind,
    )


def _send_unlock(outbound_email_id: int) -> None:
    _statement("SELECT pg_advisory_unlock(%(key)s)", {"key": send_lock_key(outbound_email_id)})


# --- Connections to the mail server ---------------------------------------------------------
# Each worker thread keeps its connection (SMTP session, provider HTTP session) open
# between sends: opening one costs more than sending a message. One idle longer than
# KEEP_OPEN_SECONDS is closed and reopened rather than trusted (servers drop idle
# sessions), and one that failed is never reused.
KEEP_OPEN_SECONDS = 15.0
# When a send job's last attempt finds another worker sending its email, the email is
# looked at again this much later, by a new job.
RECHECK_AFTER = timedelta(minutes=5)


@dataclass
class _OpenConnection:
    backend: Any
    config: str
    used_at: float


_connections = threading.local()


def _connection_close(alias: str) -> None:
    held = getattr(_connections, "by_alias", {}).pop(alias, None)
    if held is not None:
        with contextlib.suppress(Exception):  # already broken: nothing left to close cleanly
            held.backend.close()


def mail_connections_close() -> None:
    """Close this thread's open mail connections (tests, shutdown)."""
    for alias in list(getattr(_connections, "by_alias", {})):
        _connection_close(alias)


@contextmanager
def mailer_connection(alias: str) -> Iterator[Any]:
    """This thread's open connection to the ``alias`` mailer (opened if need be)."""
    by_alias = _connections.__dict__.setdefault("by_alias", {})
    config = repr(settings.MAILERS.get(alias))
    held = by_alias.get(alias)
    if held is not None and (held.config != config or time.monotonic() - held.used_at > KEEP_OPEN_SECONDS):
        _connection_close(alias)
        held = None
    if held is None:
        backend = mail.mailers[alias]
        try:
            backend.open()
        except BaseException:
            with contextlib.suppress(Exception):  # a half-open SMTP session (failed login)
                backend.close()
            raise
        held = by_alias[alias] = _OpenConnection(backend=backend, config=config, used_at=time.monotonic())
    try:
        yield held.backend
    except BaseException:
        _connection_close(alias)
        raise
    held.used_at = time.monotonic()


# The claim is one statement: the UPDATE takes the row lock, checks the row is still
# queued and moves it to sending, as its own short transaction (autocommit), committed
# (durably) before anything is sent.
CLAIM_SQL = """
UPDATE notifications_outboundemail SET status = 'sending', attempts = attempts + 1
 WHERE id = %(id)s AND tenant_id = %(tenant_id)s AND status = 'queued'
RETURNING attempts
"""

# The outcome and its mirror in the notification, in one statement (one transaction),
# and only if the row is still in the state this worker left it in. Committed
# asynchronously: set_config(..., true) lasts for this statement's own transaction
# (autocommit), and the EXISTS makes PostgreSQL evaluate it first.
RECORD_SQL = """
WITH async_commit AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)),
email AS (
    UPDATE notifications_outboundemail
       SET status = %(status)s, last_error = %(last_error)s, delivery_unknown = %(delivery_unknown)s,
           message_id = coalesce(%(message_id)s, message_id), sent_at = coalesce(%(sent_at)s, sent_at)
     WHERE id = %(id)s AND tenant_id = %(tenant_id)s AND status = %(from_status)s
       AND EXISTS (SELECT FROM async_commit)
 RETURNING notification_id
)
UPDATE notifications_notification AS notification SET email_status = %(notification_status)s
  FROM email
 WHERE notification.id = email.notification_id AND notification.tenant_id = %(tenant_id)s
   AND %(notification_status)s::varchar IS NOT NULL
"""


def _claim(email: EmailToSend) -> int | None:
    """queued → sending, attempts + 1; return the attempt number, or None if no longer queued."""
    row = _statement(CLAIM_SQL, {"id": email.pk, "tenant_id": email.tenant_id})
    return row[0] if row else None


def _record(
    email: EmailToSend,
    *,
    from_status: str,
    status: str,
    notification_status: str | None,
    last_error: str = "",
    message_id: str | None = None,
    sent_at: datetime | None = None,
    delivery_unknown: bool = False,
) -> None:
    """Write the outcome to the row and mirror it into the notification, in one statement.

    Committed asynchronously (no wait for the WAL flush; it is the slow part of a send on
    a busy server). Only a PostgreSQL crash in the next fraction of a second can lose it,
    and then the row stays in ``sending``: the rerun fails it as "delivery unknown",
    never sends it twice. The claim, which must be durable before the send, is not.
    """
    _statement(
        RECORD_SQL,
        {
            "id": email.pk,
            "tenant_id": email.tenant_id,
            "from_status": from_status,
            "status": status,
            "last_error": last_error,
            "message_id": message_id,
            "sent_at": sent_at,
            "notification_status": notification_status,
            "delivery_unknown": delivery_unknown,
        },
    )


def _fail(email: EmailToSend, *, from_status: str, reason: str, delivery_unknown: bool = False) -> None:
    _record(
        email,
        from_status=from_status,
        notification_status=NotificationEmailStatus.FAILED,
        status=OutboundStatus.FAILED,
        last_error=reason,
        delivery_unknown=delivery_unknown,
    )


def _log_fields(email: EmailToSend) -> dict[str, Any]:
    domain = email.to_email.rpartition("@")[2]
    return {
        "outbound_email_id": email.pk,
        "tenant_id": email.tenant_id,
        "template": email.template,
        "to_domain": domain,
    }


def email_send(
    *, outbound_email_id: int, tenant_id: int | None = None, final_attempt: bool = True, mailer: str = "default"
) -> str:
    """Send one stored email through the ``mailer`` (a MAILERS alias) at most once; return the outcome.

    A row already sent, already failed, or being sent by another worker sends nothing.
    ``final_attempt`` says whether the queue will retry a transient failure; on the
    final attempt such a failure fails the row. Raises ``EmailTransientError`` (retry)
    or ``EmailPermanentError`` (no retry) after recording the failure on the row.
    """
    email = _email_lock_and_get(outbound_email_id, tenant_id)
    if not email.send_locked:
        # Another worker is in the middle of this row. Normally it records the outcome
        # itself; looking again later also covers one that dies before recording (the row
        # is then in "sending" with its lock free, and fails as "delivery unknown"). On the
        # last attempt, that later look is a new job, deferred RECHECK_AFTER from now.
        if final_attempt:
            jobs.job_defer(
                task_name=SEND_EMAIL_TASK,
                kwargs=_send_kwargs(email.pk, email.tenant_id),
                schedule_in=RECHECK_AFTER,
            )
            return SendOutcome.IN_PROGRESS
        raise EmailBusy(f"outbound email {outbound_email_id} is being sent by another worker")
    try:
        return _send_locked(email, final_attempt=final_attempt, mailer=mailer)
    finally:
        _send_unlock(outbound_email_id)


def _send_locked(email: EmailToSend, *, final_attempt: bool, mailer: str) -> str:
    if email.status == OutboundStatus.SENT:
        return SendOutcome.ALREADY_SENT
    if email.status == OutboundStatus.FAILED:
        return SendOutcome.ALREADY_FAILED
    if email.status == OutboundStatus.SENDING:
        return _interrupted(email)
    if email.suppressed_as:
        return _suppressed(email, reason=email.suppressed_as)
    try:
        message = email_message_build(email)
    except (HeaderInjection, MessageBuildError, rendering.EmailDataError) as exc:
        _fail(email, from_status=OutboundStatus.QUEUED, reason=str(exc))
        logger.error("email not sent: %s", exc, extra={**_log_fields(email), "event": "email_failed"})
        raise EmailPermanentError(str(exc)) from exc
    attempt = _claim(email)
    if attempt is None:  # not while we hold the lock; were it to happen, nothing is sent
        return SendOutcome.IN_PROGRESS
    return _deliver(email, message, attempt=attempt, final_attempt=final_attempt, mailer=mailer)


def _address_gone(email: EmailToSend, *, reason: str) -> None:
    """The server says the address does not exist: nothing more goes to it, for any tenant.

    After the row's failure is recorded: a suppression that cannot be written is logged,
    and never leaves the row in "sending" (which would read as "delivery unknown").
    """
    try:
        suppressions.suppression_add(email=email.to_email, reason=SuppressionReason.BOUNCED, tenant_id=None,
                                     description=reason)  # fmt: skip
    except Exception:  # the email's outcome is recorded; the suppression is a follow-up
        logger.exception("could not suppress an address the server says does not exist",
                         extra={**_log_fields(email), "event": "suppression_failed"})  # fmt: skip


def _suppressed(email: EmailToSend, *, reason: str) -> str:
    """Not handed to the server: the address bounced, or complained about this tenant's email."""
    _record(
        email,
        from_status=OutboundStatus.QUEUED,
        status=OutboundStatus.SUPPRESSED,
        notification_status=NotificationEmailStatus.SUPPRESSED,
        last_error=f"not sent: the address is suppressed ({SuppressionReason(reason).label.lower()})",
    )
    logger.info("email not sent: address suppressed", extra={**_log_fields(email), "event": "email_suppressed"})
    return SendOutcome.SUPPRESSED


def _interrupted(email: EmailToSend) -> str:
    reason = (
        "delivery unknown: the worker sending this email stopped before recording the outcome; "
        "it may have been delivered. Check with the recipient or the provider, then resend if needed."
    )
    _fail(email, from_status=OutboundStatus.SENDING, reason=reason, delivery_unknown=True)
    logger.error("email left in sending by a lost worker", extra={**_log_fields(email), "event": "email_unknown"})
    raise EmailDeliveryUnknown(reason)


def _deliver(
    email: EmailToSend, message: EmailMultiAlternatives, *, attempt: int, final_attempt: bool, mailer: str
) -> str:
    try:
        with mailer_connection(mailer) as backend:
            sent = backend.send_messages([message])
        if not sent:
            raise EmailTransientError("the mail backend reported 0 messages sent")
    except Exception as exc:
        failure = send_failure_classify(exc)
        fields = {**_log_fields(email), "attempt": attempt, "error": type(exc).__name__}
        if failure.permanent or final_attempt:
            _fail(email, from_status=OutboundStatus.SENDING, reason=failure.reason)
            logger.error("email failed: %s", failure.reason, extra={**fields, "event": "email_failed"})
            if failure.permanent and suppressions.send_error_says_address_gone(exc):
                _address_gone(email, reason=failure.reason)
        else:
            _record(
                email,
                from_status=OutboundStatus.SENDING,
                notification_status=None,
                status=OutboundStatus.QUEUED,
                last_error=failure.reason,
            )
            logger.warning("email not sent, will retry: %s", failure.reason, extra={**fields, "event": "email_retry"})
        if failure.permanent:
            raise EmailPermanentError(failure.reason) from exc
        raise EmailTransientError(failure.reason) from exc
    message_id = provider_message_id(message)
    _record(
        email,
        from_status=OutboundStatus.SENDING,
        notification_status=NotificationEmailStatus.SENT,
        status=OutboundStatus.SENT,
        message_id=message_id[:255],
        sent_at=timezone.now(),
        last_error="",
    )
    logger.info(
        "email sent",
        extra={**_log_fields(email), "attempt": attempt, "message_id": message_id, "event": "email_sent"},
    )
    return SendOutcome.SENT


# --- Resending failed emails (the admin's action) ----------------------------------------


@dataclass(frozen=True)
class ResendResult:
    resent: list[int]
    skipped: int


def _send_kwargs(outbound_email_id: int, tenant_id: int) -> dict[str, JSONValue]:
    return {"outbound_email_id": outbound_email_id, "tenant_id": tenant_id}


def emails_requeue(*, email_ids: list[int], include_delivery_unknown: bool) -> list[tuple[int, int, int | None]]:
    """Put failed emails (not bounced, rejected or complained about) and their notifications
    back to ``queued``; return ``(email, tenant, notification)`` of each. Defers nothing.

    An email whose delivery is unknown (it may have reached the recipient) is put back
    only with ``include_delivery_unknown``: an explicit resend of that one email.
    """
    eligible = (
        OutboundEmail.objects.select_for_update()
        .filter(pk__in=email_ids, status=OutboundStatus.FAILED)
        .exclude(events__event_type__in=DO_NOT_RESEND)
    )
    if not include_delivery_unknown:
        eligible = eligible.exclude(delivery_unknown=True)
    rows: list[tuple[int, int, int | None]] = list(eligible.values_list("pk", "tenant_id", "notification_id"))
    OutboundEmail.objects.filter(pk__in=[pk for pk, _, _ in rows]).update(
        status=OutboundStatus.QUEUED, last_error="", delivery_unknown=False
    )
    Notification.objects.filter(pk__in=[n for _, _, n in rows if n]).update(email_status=NotificationEmailStatus.QUEUED)
    return rows


def send_jobs_retried(sender: object, jobs: list[Any], **kwargs: object) -> None:
    """A retried send job sends again: its email, marked failed when the job failed, goes
    back to ``queued`` in the retry's transaction (``kgc.signals.jobs_retried``).

    A bulk retry has already left out the send jobs whose email's delivery is unknown
    (``SEND_JOB_DELIVERY_UNKNOWN``); one that arrives here was retried on its own, on
    purpose, so its email is sent again.
    """
    email_ids = [job.args["outbound_email_id"] for job in jobs if job.task == SEND_EMAIL_TASK]
    if email_ids:
        emails_requeue(email_ids=email_ids, include_delivery_unknown=True)


# A failed send job whose email may have reached its recipient: its worker stopped
# between the claim and the record (the email failed as "delivery unknown", or is
# still "sending" because the worker of its last attempt died). A bulk retry leaves
# it out; retrying that one job, or resending that one email, sends it again.
SEND_JOB_DELIVERY_UNKNOWN = jobs.RetryHold(
    name="delivery_unknown",
    task_name=SEND_EMAIL_TASK,
    condition="""EXISTS (
        SELECT 1 FROM notifications_outboundemail AS email
         WHERE email.id = CASE WHEN procrastinate_jobs.args->>'outbound_email_id' ~ '^[0-9]{1,18}$'
                               THEN (procrastinate_jobs.args->>'outbound_email_id')::bigint END
           AND (email.delivery_unknown OR email.status = 'sending'))""",
    description="send jobs whose email's delivery is unknown (it may have reached the recipient); "
    "resend those one at a time from the outbound email admin",
)


def emails_resend(
    *, email_ids: list[int], user_id: int | None = None, include_delivery_unknown: bool = False
) -> ResendResult:
    """Put failed emails back to ``queued`` and defer a send job for each; return which.

    Only ``failed`` rows are touched, and not those the provider reported as bounced,
    rejected or complained about (resending would hurt the sender's reputation), nor,
    unless ``include_delivery_unknown`` (an operator's resend of that one email), those
    whose delivery is unknown. One transaction: rows, notifications, jobs and the admin
    log entries commit together. A constant number of queries whatever the number of emails.
    """
    with transaction.atomic():
        rows = emails_requeue(email_ids=email_ids, include_delivery_unknown=include_delivery_unknown)
        ids = [pk for pk, _, _ in rows]
        if rows:
            app.configure_task(
                SEND_EMAIL_TASK, allow_unknown=False, priority=jobs.priority_to_stored(None)
            ).batch_defer(*(_send_kwargs(pk, tenant_id) for pk, tenant_id, _ in rows))
            if user_id is not None:
                from django.contrib.admin.models import CHANGE, LogEntry

                LogEntry.objects.log_actions(
                    user_id=user_id,
                    queryset=OutboundEmail.objects.filter(pk__in=ids),
                    action_flag=CHANGE,
                    change_message="Resent: status failed → queued, send job deferred",
                )
    return ResendResult(resent=ids, skipped=len(set(email_ids)) - len(ids))
