"""Each email's message, and what an operator may do with failed ones.

* **The message** (``email_message_build``): the template rendered (text and HTML parts
  on the shared layout, CSS inlined) and written once in its MIME form
  (``notifications/mime.py``), with a ``Message-ID`` derived from the row, the same on
  every attempt (``<outbound-{id}.{tenant}@{EMAIL_FROM's domain}>``), the ``X-KGC-Tenant``
  and ``X-KGC-Notification`` headers, and, for an email to a member, the one-click
  unsubscribe headers and footer links. A message that cannot be built (a line break in
  a header, an address no header can carry, missing template data) fails at once: the
  same row would fail the same way on every attempt.
* **Resending** (``emails_resend``): failed emails go back in line with a fresh set of
  attempts, and their notifications back to "queued", except those the provider
  reported as bounced, rejected or complained about, and, unless the operator resends
  that one email on purpose, those whose delivery is unknown.
* **Send jobs of an earlier release** (``send_job_run``): before the outbox each email
  had a ``notifications.send_email`` job; one still run (a rescue, an operator's retry)
  sends nothing itself: its email is the outbox's.

Sending, and its at-most-once guarantee, is the dispatcher's (``notifications/dispatcher.py``
and ``notifications/outbox.py``).
"""

from __future__ import annotations

import functools
import logging
import re
import time
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from django.conf import settings
from django.db import models, transaction

from kgc.queue import jobs
from kgc.queue.retry import PermanentJobError
from notifications import outbox, rendering
from notifications.exceptions import NotificationError
from notifications.mime import PreparedEmail
from notifications.models import OutboundEmail, OutboundStatus, SuppressionReason
from notifications.outbox import ClaimedEmail
from notifications.preferences import EmailLinks, email_links
from notifications.services import SEND_EMAIL_TASK
from notifications.texts import header_text

logger = logging.getLogger("notifications.email")

LINE_BREAKS = ("\r", "\n")


class SendOutcome(models.TextChoices):
    """What a send job of an earlier release found (``send_job_run``)."""

    IN_OUTBOX = "in-outbox", "The outbox sends it: nothing to do here"
    ALREADY_SENT = "already-sent", "Already sent earlier: nothing sent"
    ALREADY_FAILED = "already-failed", "Failed earlier: nothing sent"
    IN_PROGRESS = "in-progress", "Being sent: nothing sent"
    SUPPRESSED = "suppressed", "The address is suppressed: nothing sent"


class EmailPermanentError(PermanentJobError, NotificationError):
    """A message that would fail the same way again."""


class HeaderInjection(EmailPermanentError, ValueError):
    pass


class MessageBuildError(EmailPermanentError, ValueError):
    """The row's values make no valid message (an address no header can carry...)."""


def header_errors(*, subject: str, to_name: str, to_email: str) -> list[str]:
    """Fields that would let a line break into the message headers."""
    fields = {"subject": subject, "recipient_name": to_name, "recipient_email": to_email}
    return [name for name, value in fields.items() if any(mark in value for mark in LINE_BREAKS)]


def mailbox(name: str, address: str) -> str:
    """``Name <address>`` as Django's and the providers' APIs take it (the MIME form is
    written by ``notifications/mime.py``): quoted when the name holds specials."""
    if not name:
        return address
    if _SPECIALS.search(name):
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{address}>'
    return f"{name} <{address}>"


_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')


@functools.lru_cache(maxsize=64)
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
            to=[mailbox(to_name, to_email)],
            headers={"Message-ID": message_id, **headers},
        )
        message.attach_alternative(rendered.html, "text/html")
        # Built and serialised now, once, not inside the backend's send: a message that
        # cannot be built fails here, as the permanent error it is.
        message.prepare(to_name=to_name, to_email=to_email)
    except Exception as exc:
        raise MessageBuildError(f"the message cannot be built: {type(exc).__name__}: {exc}"[:500]) from exc
    return message


def email_links_for(email: ClaimedEmail, *, now: float | None = None) -> EmailLinks | None:
    """The preferences and unsubscribe links of an email to a member: a notification's
    (that kind) or a digest's (every kind). None for an email to an address the system
    knows no member by (the API's), and without ``KGC_PUBLIC_URL``."""
    if email.member_id is None or email.kind is None or not settings.KGC_PUBLIC_URL:
        return None
    era = int((time.time() if now is None else now) // LINKS_REUSED_FOR)
    return _links(settings.KGC_PUBLIC_URL, email.member_id, email.tenant_id, email.kind, era)


# A morning's emails reach the same people many times over, and signing their links costs
# more than rendering a template: the same links serve them for a few minutes.
LINKS_REUSED_FOR = 600.0


@functools.lru_cache(maxsize=8192)
def _links(public_url: str, user_id: int, tenant_id: int, kind: str, era: int) -> EmailLinks | None:
    return email_links(public_url=public_url, user_id=user_id, tenant_id=tenant_id, kind=kind)


def email_message_build(email: ClaimedEmail) -> PreparedEmail:
    """The message for one row: stable Message-ID, X-KGC-Tenant and X-KGC-Notification headers,
    and the unsubscribe headers and links of an email to a member."""
    headers = {"X-KGC-Tenant": str(email.tenant_id)}
    if email.notification_id is not None:
        headers["X-KGC-Notification"] = str(email.notification_id)
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
        headers=headers,
        links=email_links_for(email),
    )
    # Read by anymail's providers (tags, metadata in webhooks); ignored by SMTP.
    message.tags = [email.template]  # type: ignore[attr-defined]
    message.metadata = {"outbound_email_id": str(email.pk), "tenant_id": str(email.tenant_id)}  # type: ignore[attr-defined]
    return message


def own_message_id(message: PreparedEmail) -> str:
    """The message's own Message-ID (what an SMTP server knows it by)."""
    return str(message.extra_headers["Message-ID"])


def provider_message_id(message: PreparedEmail) -> str:
    """The id the provider knows the message by (anymail's), else its own Message-ID."""
    status = getattr(message, "anymail_status", None)
    if status is not None and status.message_id is not None:
        return str(status.message_id)
    return own_message_id(message)


def suppressed_reason(reason: str) -> str:
    return f"not sent: the address is suppressed ({SuppressionReason(reason).label.lower()})"


# --- Resending failed emails (the admin's actions) ----------------------------------------------


@dataclass(frozen=True)
class ResendResult:
    resent: list[int]
    skipped: int


def emails_resend(
    *, email_ids: list[int], user_id: int | None = None, include_delivery_unknown: bool = False
) -> ResendResult:
    """Put failed emails back in line; return which went back.

    Only ``failed`` rows are touched, and not those the provider reported as bounced,
    rejected or complained about (resending would hurt the sender's reputation), nor,
    unless ``include_delivery_unknown`` (an operator's resend of that one email), those
    whose delivery is unknown. One transaction: rows, notifications and the admin log
    entries commit together; one statement whatever the number of emails.
    """
    with transaction.atomic():
        rows = outbox.emails_requeue(email_ids=email_ids, include_delivery_unknown=include_delivery_unknown)
        ids = [pk for pk, _, _ in rows]
        if rows and user_id is not None:
            from django.contrib.admin.models import CHANGE, LogEntry

            LogEntry.objects.log_actions(
                user_id=user_id,
                queryset=OutboundEmail.objects.filter(pk__in=ids),
                action_flag=CHANGE,
                change_message="Resent: status failed → queued",
            )
    return ResendResult(resent=ids, skipped=len(set(email_ids)) - len(ids))


# --- Send jobs of an earlier release -------------------------------------------------------------


def send_job_run(*, outbound_email_id: int, tenant_id: int | None = None) -> str:
    """What a ``notifications.send_email`` job of an earlier release does now: nothing but
    say where its email stands; the outbox sends it (or has), at most once."""
    email = OutboundEmail.objects.filter(pk=outbound_email_id)
    if tenant_id is not None:
        email = email.filter(tenant_id=tenant_id)
    status = email.values_list("status", flat=True).first()
    if status is None:
        raise OutboundEmail.DoesNotExist(f"no outbound email {outbound_email_id} of tenant {tenant_id}")
    return {
        OutboundStatus.SENT: SendOutcome.ALREADY_SENT,
        OutboundStatus.FAILED: SendOutcome.ALREADY_FAILED,
        OutboundStatus.SENDING: SendOutcome.IN_PROGRESS,
        OutboundStatus.SUPPRESSED: SendOutcome.SUPPRESSED,
    }.get(OutboundStatus(status), SendOutcome.IN_OUTBOX)


def send_jobs_retried(sender: object, jobs: list[Any], **kwargs: object) -> None:
    """An operator retried a failed send job of an earlier release: its email, failed with
    that job, goes back in line in the retry's transaction (``kgc.signals.jobs_retried``).

    A bulk retry has already left out the send jobs whose email's delivery is unknown
    (``SEND_JOB_DELIVERY_UNKNOWN``); one that arrives here was retried on its own, on
    purpose, so its email is sent again.
    """
    email_ids = [job.args["outbound_email_id"] for job in jobs if job.task == SEND_EMAIL_TASK]
    if email_ids:
        outbox.emails_requeue(email_ids=email_ids, include_delivery_unknown=True)


# A failed send job whose email may have reached its recipient: its email failed as
# "delivery unknown", or is still "sending". A bulk retry leaves it out; retrying that one
# job, or resending that one email, sends it again.
SEND_JOB_DELIVERY_UNKNOWN = jobs.RetryHold(
    name="delivery_unknown",
    task_name=SEND_EMAIL_TASK,
    condition="""EXISTS (
        SELECT 1 FROM notifications_outboundemail AS email
         WHERE email.id = CASE WHEN procrastinate_jobs.args->>'outbound_email_id' ~ '^[0-9]{1,18}$'
                               THEN (procrastinate_jobs.args->>'outbound_email_id')::bigint END
           AND (email.delivery_unknown OR email.status = 'sending'))""",
    description="emails whose delivery is unknown (they may have reached the recipient): "
    "resend those one at a time from the outbound email admin",
)
