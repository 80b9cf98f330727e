"""The email queue's spans: one per send, the child of the span that queued the email.

The row keeps the context of the span current when it was written (``trace_context``: the
API request of ``POST /api/v1/jobs/email``, or the run of the job whose notifications or
digests it carries), so that a trace goes from the caller to the send. Only called while
tracing is on (``kgc.queue.tracing.enabled()``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.trace import Span, Status, StatusCode

from kgc.queue import tracing
from kgc.queues import EMAIL
from notifications.models import OutboundStatus
from notifications.outbox import ClaimedEmail, EmailOutcome

MESSAGING_SYSTEM = "kgc_outbox"


@contextmanager
def email_send_span(email: ClaimedEmail) -> Iterator[Span]:
    """The span of one attempt to send ``email``: its id, tenant, template and attempt."""
    with tracing.row_span(
        "send email",
        system=MESSAGING_SYSTEM,
        queue=EMAIL,
        item_id=email.pk,
        carrier=email.trace_context,
        tenant_id=email.tenant_id,
        **{"kgc.email.id": email.pk, "kgc.email.template": email.template, "kgc.email.attempt": email.attempts},
    ) as span:
        yield span


def email_send_ended(span: Span, outcome: EmailOutcome) -> None:
    """What the attempt came to, and the provider's message id of a sent email."""
    span.set_attribute("kgc.email.outcome", str(outcome.status))
    if outcome.message_id:
        span.set_attribute("kgc.email.provider_message_id", outcome.message_id)
    if outcome.delivery_unknown:
        span.set_attribute("kgc.email.delivery_unknown", True)
    if outcome.status in (OutboundStatus.FAILED, OutboundStatus.RETRYING):
        span.set_status(Status(StatusCode.ERROR, outcome.last_error[:500]))
