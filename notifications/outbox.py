"""The outbox: every email is a row, and the rows are the email queue.

There is no job per email. The dispatcher (``notifications/dispatcher.py``) claims queued
rows in batches, sends them, and records what happened in batches. This module holds the
rules and the statements:

* **Order.** A row's ``priority`` (urgent, high, normal, low) comes first, across all
  firms; within a priority, its place in line (``fair_key``), given out when the row is
  written (``notifications_email_places``): each firm's new email goes after the later of
  that firm's last place and the head of the line. A firm with 2,000 emails waiting keeps
  its own turn, and a firm with nothing waiting is served within one round of the firms
  that are. The claim reads the line in order from one partial index, whatever its length.
* **At most once.** The claim (``notifications_emails_claim``: queued → sending, attempts
  + 1, the claiming worker) commits durably before anything is sent, in one statement for
  the batch, with the queue's pause, its global rate limit (counting emails) and the
  worker's fencing. An outcome is recorded only from the attempt that claimed the row (its
  worker and attempt count). A row left in ``sending`` by a worker that is gone is failed
  as "delivery unknown", never sent again; so is a message the server never answered
  after its final ".". Only an operator's resend of that one email sends it again.
* **Retries.** A failure before the message was handed over (a refused connection, a 4xx)
  makes the row ``retrying`` until its backoff (the email queue's policy in
  ``kgc/queues.py``) is over; the next claim puts it back in line, in its old place. After
  the queue's attempts it fails with the last error.
* **Counts.** Triggers keep ``EmailCount``; ``EmailQueueReader`` answers for the email
  queue in BullMQ's states (``kgc/queue/rows.py``): waiting or paused (queued), active
  (sending), delayed (retrying), completed (sent or suppressed within the queue's
  completed retention), failed (within its failed retention).
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection

from kgc.queue.rows import RowActivity, RowCounts, RowTotals
from kgc.queues import EMAIL, queue_get
from notifications.models import EmailPriority, NotificationEmailStatus, NotificationUrgency, OutboundStatus
from notifications.preferences import ALL_KINDS
from notifications.tracking import DO_NOT_RESEND

logger = logging.getLogger("notifications.email")

PRIORITY_OF_URGENCY: dict[str | None, int] = {
    NotificationUrgency.URGENT: EmailPriority.URGENT,
    NotificationUrgency.HIGH: EmailPriority.HIGH,
    NotificationUrgency.NORMAL: EmailPriority.NORMAL,
    None: EmailPriority.NORMAL,
}
# The channel the outbox's triggers notify when emails join the line (the dispatchers listen).
OUTBOX_CHANNEL = "kgc_outbox"
# Minutes of counts kept minute by minute (the dashboard's day of 5-minute buckets), and
# hours of finished emails kept hour by hour (the longest retention window).
COUNTS_KEEP_MINUTES = timedelta(hours=25)
COUNTS_KEEP_HOURS = timedelta(days=31)
UNKNOWN_AFTER_LOSS = (
    "delivery unknown: the worker sending this email stopped before recording the outcome; it may have been "
    "delivered. Check with the recipient or the provider, then resend if needed."
)


def priority_for(urgency: str | None) -> int:
    return PRIORITY_OF_URGENCY.get(urgency, EmailPriority.NORMAL)


def email_places_take(*, tenant_id: int, priority: int, count: int = 1) -> int:
    """The first of ``count`` places in line for new emails of a tenant and priority (the
    others follow it), in the caller's transaction. Holds the tenant's clock row until commit."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT notifications_email_places(%s, %s::smallint, %s)", [tenant_id, priority, count])
        return int(cursor.fetchone()[0])


# --- Claiming, recording, sweeping ---------------------------------------------------------------

CLAIM_SQL = """
SELECT id, tenant_id, tenant_name, notification_id, to_email, to_name, subject, template, context, attempts,
       priority, suppressed_as, member_id, kind, trace_context
  FROM notifications_emails_claim(%(worker_id)s, %(want)s, %(queue)s, %(limit)s, %(window)s, %(all_kinds)s)
"""


@dataclass(frozen=True)
class ClaimedEmail:
    """A claimed row and what its message needs, read in the claim's own statement."""

    pk: int
    tenant_id: int
    tenant_name: str
    notification_id: int | None
    to_email: str
    to_name: str
    subject: str
    template: str
    context: dict[str, Any]
    attempts: int  # this attempt's number (the claim counted it)
    priority: int
    suppressed_as: str | None
    member_id: int | None  # the person it is for: a notification's recipient, or a digest's
    kind: str | None  # a notification's kind; ALL_KINDS for a digest
    trace_context: dict[str, str] | None = None  # of the span that queued it (kgc/queue/tracing.py)


def claim_params(*, worker_id: int, want: int) -> dict[str, Any]:
    from kgc.queues import rate_limits

    limit = rate_limits().get(EMAIL)
    return {
        "worker_id": worker_id,
        "want": want,
        "queue": EMAIL,
        "limit": limit.limit if limit else None,
        "window": limit.per.total_seconds() if limit else None,
        "all_kinds": ALL_KINDS,
    }


def claimed_from_row(row: dict[str, Any]) -> ClaimedEmail:
    context = row["context"]
    return ClaimedEmail(
        pk=row["id"],
        tenant_id=row["tenant_id"],
        tenant_name=row["tenant_name"],
        notification_id=row["notification_id"],
        to_email=row["to_email"],
        to_name=row["to_name"],
        subject=row["subject"],
        template=row["template"],
        context=context if isinstance(context, dict) else json.loads(context),
        attempts=row["attempts"],
        priority=row["priority"],
        suppressed_as=row["suppressed_as"],
        member_id=row["member_id"],
        kind=row["kind"],
        trace_context=row.get("trace_context"),
    )


@dataclass(frozen=True)
class EmailOutcome:
    """What one attempt came to, as the record statement writes it."""

    email_id: int
    attempts: int  # the attempt it belongs to: with the worker, its fencing token
    status: str  # sent, retrying, failed, suppressed; queued: given back unspent at shutdown
    at: datetime
    last_error: str = ""
    delivery_unknown: bool = False
    message_id: str | None = None
    available_at: datetime | None = None  # retrying: when it is due again
    address_gone: bool = False  # failed because the server says the address does not exist
    spent: bool = True  # False: nothing was handed to the server, so the attempt is not counted

    @property
    def mirror(self) -> str | None:
        """The notification's new ``email_status`` (none while the email is retried)."""
        return {
            OutboundStatus.SENT: NotificationEmailStatus.SENT,
            OutboundStatus.FAILED: NotificationEmailStatus.FAILED,
            OutboundStatus.SUPPRESSED: NotificationEmailStatus.SUPPRESSED,
        }.get(self.status)  # type: ignore[call-overload]


def outcome_decide(
    email: ClaimedEmail, *, kind: str, reason: str, now: datetime, backoff: timedelta, message_id: str | None = None,
    address_gone: bool = False,
) -> EmailOutcome:  # fmt: skip
    """The row's next state after an attempt that ended in ``kind`` (a ``SendResult``'s, or
    ``suppressed``, or ``unbuildable``: no message can be made of the row). Pure: a transient
    failure waits ``backoff`` unless it was the queue's last attempt; an unknown delivery
    fails, marked as such; nothing handed over does not count as an attempt."""
    outcome = functools.partial(EmailOutcome, email_id=email.pk, attempts=email.attempts, at=now)
    if kind == "sent":
        return outcome(status=OutboundStatus.SENT, message_id=(message_id or "")[:255])
    if kind == "suppressed":
        return outcome(status=OutboundStatus.SUPPRESSED, last_error=reason, spent=False)
    if kind == "unbuildable":
        return outcome(status=OutboundStatus.FAILED, last_error=reason, spent=False)
    if kind == "unknown":
        return outcome(status=OutboundStatus.FAILED, last_error=reason, delivery_unknown=True)
    if kind == "retry" and email.attempts < queue_get(EMAIL).retry.max_attempts:
        return outcome(status=OutboundStatus.RETRYING, last_error=reason, available_at=now + backoff)
    return outcome(status=OutboundStatus.FAILED, last_error=reason, address_gone=address_gone)


# The outcomes of a batch, their mirror in the notifications, and the suppression of
# addresses the server says do not exist (for every tenant), in one statement; each outcome
# only from the attempt that claimed the row. A late outcome of an attempt whose row the
# sweep failed as "delivery unknown" meanwhile (its worker was cut off) is still taken:
# "sent", or a refusal or a give-up before the message was handed over, the delivery is
# known after all, and a retry goes back in line (its notification waiting again) rather
# than wait for an operator's resend. An attempt given up at shutdown before its message was
# handed over goes back in line unspent ("queued", its attempt not counted). Committed
# durably, whatever the server's default, one flush for the whole batch: a record a crash
# could lose would leave a sent email "sending" under a live worker, which would then take
# it for a claim it never saw (the dispatcher's reconciliation) and send it again.
RECORD_SQL = """
WITH durable AS MATERIALIZED (SELECT set_config('synchronous_commit', 'on', true)),
outcome AS (
    SELECT *
      FROM unnest(%(ids)s::bigint[], %(attempts)s::int[], %(statuses)s::text[], %(errors)s::text[],
                  %(unknown)s::bool[], %(message_ids)s::text[], %(at)s::timestamptz[],
                  %(available_at)s::timestamptz[], %(mirror)s::text[], %(gone)s::bool[], %(spent)s::bool[])
           AS o(id, attempts, status, last_error, delivery_unknown, message_id, at, available_at, mirror, gone, spent)
), email AS (
    UPDATE notifications_outboundemail AS email
       SET status = o.status, last_error = o.last_error, delivery_unknown = o.delivery_unknown,
           attempts = CASE WHEN o.spent THEN email.attempts ELSE email.attempts - 1 END,
           message_id = coalesce(o.message_id, email.message_id),
           sent_at = CASE WHEN o.status = 'sent' THEN o.at ELSE email.sent_at END,
           finished_at = CASE WHEN o.status IN ('sent', 'failed', 'suppressed') THEN o.at END,
           available_at = o.available_at
      FROM outcome AS o
     WHERE email.id = o.id AND email.claimed_by = %(worker_id)s AND email.attempts = o.attempts
       AND (email.status = 'sending'
            OR (email.status = 'failed' AND email.delivery_unknown AND NOT o.delivery_unknown))
       AND EXISTS (SELECT FROM durable)
    RETURNING email.id, email.tenant_id, email.notification_id, email.to_email,
              CASE WHEN o.status IN ('retrying', 'queued') THEN 'queued' ELSE o.mirror END AS mirror,
              o.gone, o.last_error
), mirrored AS (
    UPDATE notifications_notification AS notification SET email_status = email.mirror
      FROM email
     WHERE notification.id = email.notification_id AND notification.tenant_id = email.tenant_id
       AND email.mirror IS NOT NULL AND notification.email_status IS DISTINCT FROM email.mirror
), gone AS (
    INSERT INTO notifications_suppression (email, reason, tenant_id, description, created_at)
    SELECT DISTINCT ON (lower(trim(email.to_email))) lower(trim(email.to_email)), 'bounced', NULL,
           left(email.last_error, 2000), now()
      FROM email WHERE email.gone
    ON CONFLICT (email, tenant_id) DO NOTHING
)
SELECT id FROM email
"""


def record_params(outcomes: list[EmailOutcome], *, worker_id: int) -> dict[str, Any]:
    return {
        "worker_id": worker_id,
        "ids": [o.email_id for o in outcomes],
        "attempts": [o.attempts for o in outcomes],
        "statuses": [str(o.status) for o in outcomes],
        "errors": [o.last_error for o in outcomes],
        "unknown": [o.delivery_unknown for o in outcomes],
        "message_ids": [o.message_id for o in outcomes],
        "at": [o.at for o in outcomes],
        "available_at": [o.available_at for o in outcomes],
        "mirror": [o.mirror for o in outcomes],
        "gone": [o.address_gone for o in outcomes],
        "spent": [o.spent for o in outcomes],
    }


# Rows in "sending" whose worker is gone (declared dead, or silent past the cutoff): their
# outcome will never come. Failed as "delivery unknown" with their notification. A row
# claimed by the send job of an earlier release (no claiming worker) is its own when that
# job's session lock on it is free.
SWEEP_SQL = """
WITH orphaned AS (
    SELECT email.id
      FROM notifications_outboundemail AS email
     WHERE email.status = 'sending'
       AND CASE WHEN email.claimed_by IS NULL
                THEN pg_try_advisory_xact_lock((x'4B474345'::bigint << 32) | (email.id & 4294967295))
                ELSE NOT EXISTS (
                    SELECT 1 FROM procrastinate_workers AS worker
                     WHERE worker.id = email.claimed_by
                       AND worker.last_heartbeat >= now() - make_interval(secs => %(dead_after)s))
           END
       FOR UPDATE SKIP LOCKED
), failed AS (
    UPDATE notifications_outboundemail AS email
       SET status = 'failed', delivery_unknown = true, last_error = %(reason)s, finished_at = now()
      FROM orphaned
     WHERE email.id = orphaned.id AND email.status = 'sending'
    RETURNING email.id, email.tenant_id, email.notification_id
), mirrored AS (
    UPDATE notifications_notification AS notification SET email_status = 'failed'
      FROM failed
     WHERE notification.id = failed.notification_id AND notification.tenant_id = failed.tenant_id
)
SELECT id, tenant_id FROM failed
"""

FOLD_SQL = """
SELECT notifications_email_counts_fold(make_interval(secs => %(keep_minutes)s), make_interval(secs => %(keep_hours)s))
"""
FOLD_PARAMS = {
    "keep_minutes": COUNTS_KEEP_MINUTES.total_seconds(),
    "keep_hours": COUNTS_KEEP_HOURS.total_seconds(),
}


# --- What the queue layer reads: the email queue in BullMQ's states ---------------------------

COUNTS_SQL = """
SELECT state, coalesce(sum(delta), 0)::bigint FROM notifications_emailcount
 WHERE state IN ('queued', 'retrying', 'sending')
    OR (state IN ('sent', 'suppressed') AND bucket >= %(completed_since)s)
    OR (state = 'failed' AND bucket >= %(failed_since)s)
 GROUP BY 1
"""

# The first waiting emails by age (outbound_status_idx), due since they were queued or
# their backoff ended.
OLDEST_SQL = """
SELECT extract(epoch FROM %(now)s - min(greatest(head.created_at, coalesce(head.available_at, head.created_at))))
  FROM (SELECT created_at, available_at FROM notifications_outboundemail
         WHERE status = 'queued' ORDER BY status, created_at LIMIT 50) AS head
"""

ACTIVITY_SQL = """
SELECT state, coalesce(sum(entered), 0)::bigint FROM notifications_emailcount
 WHERE state IN ('sent', 'suppressed', 'failed', 'retrying') AND bucket >= %(since)s AND bucket < %(now)s
 GROUP BY 1
"""

SERIES_SQL = """
SELECT date_bin(make_interval(secs => %(bucket)s), bucket, %(origin)s), state, coalesce(sum(entered), 0)::bigint
  FROM notifications_emailcount
 WHERE state IN ('sent', 'suppressed', 'failed') AND bucket >= %(origin)s AND bucket < %(now)s
 GROUP BY 1, 2
"""


# Every email that ever entered each state (``entered`` only grows; folding keeps its sums),
# and how many are in each state now.
TOTALS_SQL = """
SELECT state, coalesce(sum(entered), 0)::bigint, coalesce(sum(delta), 0)::bigint
  FROM notifications_emailcount GROUP BY 1
"""


def _activity(found: dict[str, int]) -> RowActivity:
    return RowActivity(
        completed=found.get("sent", 0) + found.get("suppressed", 0),
        failed=found.get("failed", 0),
        retried=found.get("retrying", 0),
    )


class EmailQueueReader:
    """The email queue's counts and activity, from the outbox (``kgc/queue/rows.py``)."""

    def counts(self, *, now: datetime) -> RowCounts:
        retention = queue_get(EMAIL).retention
        with connection.cursor() as cursor:
            cursor.execute(
                COUNTS_SQL, {"completed_since": now - retention.completed, "failed_since": now - retention.failed}
            )
            found = {state: max(int(count), 0) for state, count in cursor.fetchall()}
        return RowCounts(
            ready=found.get("queued", 0),
            active=found.get("sending", 0),
            delayed=found.get("retrying", 0),
            completed=found.get("sent", 0) + found.get("suppressed", 0),
            failed=found.get("failed", 0),
        )

    def oldest_waiting_seconds(self, *, now: datetime) -> float | None:
        with connection.cursor() as cursor:
            cursor.execute(OLDEST_SQL, {"now": now})
            row = cursor.fetchone()
        return None if row is None or row[0] is None else max(float(row[0]), 0.0)

    def activity(self, *, since: datetime, now: datetime) -> RowActivity:
        with connection.cursor() as cursor:
            cursor.execute(ACTIVITY_SQL, {"since": since.replace(second=0, microsecond=0), "now": now})
            return _activity({state: int(count) for state, count in cursor.fetchall()})

    def totals(self) -> RowTotals:
        entered = {state: int(count) for state, count, _ in self._tallies()}
        ended = _activity(entered)
        return RowTotals(completed=ended.completed, failed=ended.failed, retried=ended.retried, entered=entered)

    def states(self) -> dict[str, int]:
        return {state: max(int(now_in), 0) for state, _, now_in in self._tallies()}

    def _tallies(self) -> list[tuple[str, int, int]]:
        with connection.cursor() as cursor:
            cursor.execute(TOTALS_SQL)
            return list(cursor.fetchall())

    def finished_series(self, *, origin: datetime, now: datetime, bucket: timedelta) -> dict[datetime, RowActivity]:
        found: dict[datetime, dict[str, int]] = {}
        with connection.cursor() as cursor:
            cursor.execute(SERIES_SQL, {"bucket": bucket.total_seconds(), "origin": origin, "now": now})
            for start, state, count in cursor.fetchall():
                found.setdefault(start, {})[state] = int(count)
        return {start: _activity(counts) for start, counts in found.items()}

    def failed_retry(self) -> int:
        return len(emails_requeue(email_ids=None, include_delivery_unknown=False))

    def failed_held(self) -> dict[str, int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM notifications_outboundemail WHERE status = 'failed' AND delivery_unknown"
            )
            return {"delivery_unknown": int(cursor.fetchone()[0])}


# --- Putting failed emails back ---------------------------------------------------------------

# Failed emails (not bounced, rejected or complained about; not of unknown delivery unless
# asked) go back in line with a fresh set of attempts, each tenant's after its last place,
# and their notifications back to "queued"; one statement.
REQUEUE_SQL = """
WITH chosen AS (
    SELECT email.id, email.tenant_id, email.priority
      FROM notifications_outboundemail AS email
     WHERE email.status = 'failed'
       AND (%(ids)s::bigint[] IS NULL OR email.id = ANY(%(ids)s::bigint[]))
       AND (%(include_unknown)s OR NOT email.delivery_unknown)
       AND NOT EXISTS (SELECT 1 FROM notifications_emailevent AS event
                        WHERE event.outbound_email_id = email.id AND event.event_type = ANY(%(do_not_resend)s))
       FOR UPDATE OF email
), numbered AS (
    SELECT chosen.*, row_number() OVER (PARTITION BY tenant_id, priority ORDER BY id) - 1 AS nth FROM chosen
), places AS (
    SELECT tenant_id, priority, notifications_email_places(tenant_id, priority::smallint, count(*)::int) AS first
      FROM chosen GROUP BY 1, 2
), requeued AS (
    UPDATE notifications_outboundemail AS email
       SET status = 'queued', attempts = 0, last_error = '', delivery_unknown = false, available_at = NULL,
           finished_at = NULL, claimed_at = NULL, fair_key = places.first + numbered.nth
      FROM numbered JOIN places USING (tenant_id, priority)
     WHERE email.id = numbered.id
    RETURNING email.id, email.tenant_id, email.notification_id
), mirrored AS (
    UPDATE notifications_notification AS notification SET email_status = 'queued'
      FROM requeued
     WHERE notification.id = requeued.notification_id AND notification.tenant_id = requeued.tenant_id
)
SELECT id, tenant_id, notification_id FROM requeued ORDER BY id
"""


def emails_requeue(*, email_ids: list[int] | None, include_delivery_unknown: bool) -> list[tuple[int, int, int | None]]:
    """Put failed emails back in line (all of them with ``email_ids`` None); return
    ``(email, tenant, notification)`` of each.

    Bounced, rejected or complained-about emails stay failed (resending would hurt the
    sender's reputation); an email whose delivery is unknown (it may have reached the
    recipient) goes back only with ``include_delivery_unknown``: an explicit resend.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            REQUEUE_SQL,
            {"ids": email_ids, "include_unknown": include_delivery_unknown, "do_not_resend": list(DO_NOT_RESEND)},
        )
        return [(row[0], row[1], row[2]) for row in cursor.fetchall()]


RETRY_NOW_SQL = """
UPDATE notifications_outboundemail SET status = 'queued', available_at = NULL
 WHERE id = ANY(%(ids)s::bigint[]) AND status = 'retrying'
RETURNING id
"""


def emails_retry_now(*, email_ids: list[int]) -> list[int]:
    """Emails waiting for their backoff go back in line now, in their old place; return which."""
    with connection.cursor() as cursor:
        cursor.execute(RETRY_NOW_SQL, {"ids": email_ids})
        return [row[0] for row in cursor.fetchall()]


def counts_fold() -> None:
    """Fold the outbox's counts (also done by every dispatcher on its own)."""
    with connection.cursor() as cursor:
        cursor.execute(FOLD_SQL, FOLD_PARAMS)
