"""The outbox's line and bookkeeping on the real PostgreSQL: places given out per firm, the
claim's order (urgency first, then each firm in turn), pause, the rate limit, counts,
putting failed emails back, and the statements that settle what a lost worker left."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from kgc.queue import jobs
from kgc.queues import EMAIL
from notifications import delivery, outbox
from notifications.dispatcher import RECONCILE_SQL
from notifications.models import EmailPriority, Notification, OutboundEmail
from notifications.outbox import (
    CLAIM_SQL,
    RECORD_SQL,
    SWEEP_SQL,
    UNKNOWN_AFTER_LOSS,
    EmailQueueReader,
    claim_params,
    claimed_from_row,
    email_places_take,
    outcome_decide,
    record_params,
)
from notifications.services import NotificationDraft, email_enqueue, notifications_deliver
from tests import helpers
from tests.factories import TenantFactory


def worker() -> int:
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id")
        return cursor.fetchone()[0]


def claim(want: int, worker_id: int | None = None) -> list[tuple[int, int]]:
    """(email id, tenant id) of the emails one claim takes, in the claim's order."""
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_SQL, claim_params(worker_id=worker_id or worker(), want=want))
        return [(row[0], row[1]) for row in cursor.fetchall()]


def enqueue(tenant, count: int = 1, priority: str | None = None) -> list[int]:  # noqa: ANN001
    return [
        email_enqueue(
            tenant_id=tenant.pk,
            recipient_email=f"person{n}@example.com",
            recipient_name="Person",
            subject="Hello",
            template="custom",
            data={"body": "Hi"},
            priority=priority,
        ).pk
        for n in range(count)
    ]


@pytest.fixture
def unlimited(settings):
    settings.KGC_RATE_LIMITS = "email=off"


# --- The line ---------------------------------------------------------------------------------


def test_places_of_one_firm_follow_each_other(db, tenant):
    first = email_places_take(tenant_id=tenant.pk, priority=EmailPriority.NORMAL, count=5)
    assert email_places_take(tenant_id=tenant.pk, priority=EmailPriority.NORMAL) == first + 5


def test_a_firm_with_nothing_waiting_is_served_within_one_round(db, unlimited):
    big, small = TenantFactory(), [TenantFactory() for _ in range(3)]
    enqueue(big, 20)
    for tenant in small:
        enqueue(tenant, 2)
    order = [tenant_id for _, tenant_id in claim(26)]
    # each waiting firm's first email comes before the big firm's second
    assert order[:4] == [big.pk, *(tenant.pk for tenant in small)]
    assert order[4:8] == [big.pk, *(tenant.pk for tenant in small)]
    assert order[8:] == [big.pk] * 18


def test_a_firm_arriving_behind_a_backlog_goes_next_not_last(db, unlimited):
    big, late = TenantFactory(), TenantFactory()
    enqueue(big, 30)
    claim(10)
    enqueue(late, 3)
    order = [tenant_id for _, tenant_id in claim(20)]
    assert order[:2] == [big.pk, late.pk]  # behind the big firm's email already at the head, not its 20
    assert order.count(late.pk) == 3 and order.index(late.pk) < 2


def test_a_firm_keeps_its_own_turn_when_it_adds_to_its_backlog(db, unlimited):
    a, b = TenantFactory(), TenantFactory()
    enqueue(a, 3)
    enqueue(b, 3)
    enqueue(a, 3)  # after its own three, not ahead of b's
    order = [tenant_id for _, tenant_id in claim(9)]
    assert order == [a.pk, b.pk] * 3 + [a.pk] * 3


def test_urgent_goes_before_everything_of_every_firm(db, unlimited):
    busy, other = TenantFactory(), TenantFactory()
    enqueue(busy, 50)
    enqueue(other, 5, priority="low")
    [urgent] = enqueue(other, 1, priority="urgent")
    [high] = enqueue(busy, 1, priority="high")
    taken = [email_id for email_id, _ in claim(3)]
    assert taken[:2] == [urgent, high]


def test_a_notifications_urgency_is_its_emails_priority(db, tenant, member_of):
    user = member_of(tenant, "admin")
    drafts = [
        NotificationDraft(
            recipient_id=user.pk,
            recipient_email=user.email,
            recipient_name="Pat",
            kind="filing_reminder",
            title="VAT due",
            body="...",
            dedupe_key=f"filing:{urgency}",
            email_template="custom",
            email_subject="VAT due",
            data={"body": "VAT due"},
            urgency=urgency,
        )
        for urgency in ("URGENT", "HIGH", "NORMAL", None)
    ]
    notifications_deliver(tenant=tenant, drafts=drafts)
    priorities = dict(OutboundEmail.objects.filter(tenant=tenant).values_list("notification__urgency", "priority"))
    assert priorities == {"URGENT": 0, "HIGH": 1, "NORMAL": 2, None: 2}


def test_a_paused_queue_yields_nothing_and_a_resumed_one_everything(db, unlimited, tenant):
    enqueue(tenant, 3)
    jobs.pause_queue(EMAIL)
    assert claim(10) == []
    jobs.resume_queue(EMAIL)
    assert len(claim(10)) == 3


def test_the_rate_limit_counts_emails_across_claims(db, settings, tenant):
    settings.KGC_RATE_LIMITS = "email=40/60s"
    enqueue(tenant, 10)
    # paced: a tenth of the limit (4) in any tenth of the window (6 s), whatever is asked
    assert [len(claim(3)), len(claim(3)), len(claim(3))] == [3, 1, 0]


def test_the_pace_counts_a_tenth_of_the_window_not_a_second_more(db, settings, tenant):
    settings.KGC_RATE_LIMITS = "email=40/60s"
    enqueue(tenant, 10)
    with connection.cursor() as cursor:  # a tenth's worth, six seconds ago: that tenth is over
        cursor.execute(
            "INSERT INTO kgc_ratelimitslot (queue_name, slot, starts) "
            "VALUES ('email', date_trunc('second', clock_timestamp()) - interval '6 seconds', 4)"
        )
    assert len(claim(10)) == 4  # 100 a minute is 100 a minute, not 86


def test_the_rate_limits_window_holds_whatever_the_pace(db, settings, tenant):
    settings.KGC_RATE_LIMITS = "email=4/60s"
    enqueue(tenant, 10)
    with connection.cursor() as cursor:  # three sent a minute ago: one left in the window
        cursor.execute(
            "INSERT INTO kgc_ratelimitslot (queue_name, slot, starts) "
            "VALUES ('email', date_trunc('second', now()) - interval '30 seconds', 3)"
        )
    assert [len(claim(3)), len(claim(3))] == [1, 0]


def test_a_worker_declared_dead_claims_nothing(db, tenant):
    enqueue(tenant, 1)
    with pytest.raises(Exception, match="not registered") as raised:
        claim(1, worker_id=987654321)
    assert getattr(raised.value.__cause__, "sqlstate", None) == "KGC01"


# --- Counts ---------------------------------------------------------------------------------------


def test_counts_follow_every_state(db, unlimited, tenant):
    reader = EmailQueueReader()
    ids = enqueue(tenant, 6)
    claimed = [email_id for email_id, _ in claim(4)]
    now = timezone.now()
    OutboundEmail.objects.filter(pk=claimed[0]).update(status="sent", sent_at=now, finished_at=now)
    OutboundEmail.objects.filter(pk=claimed[1]).update(status="failed", finished_at=now)
    OutboundEmail.objects.filter(pk=claimed[2]).update(status="retrying", available_at=now + timedelta(minutes=5))
    counts = reader.counts(now=now)
    assert (counts.ready, counts.active, counts.delayed, counts.completed, counts.failed) == (2, 1, 1, 1, 1)
    assert len(ids) == 6


def test_emails_finished_before_the_queues_retention_leave_the_counts(db, tenant):
    long_ago = timezone.now() - timedelta(days=8)  # completed: kept 7 days; failed: 30
    [sent, failed] = enqueue(tenant, 2)
    OutboundEmail.objects.filter(pk=sent).update(status="sent", sent_at=long_ago, finished_at=long_ago)
    OutboundEmail.objects.filter(pk=failed).update(status="failed", finished_at=long_ago)
    counts = EmailQueueReader().counts(now=timezone.now())
    assert (counts.completed, counts.failed) == (0, 1)


def test_the_queue_stats_of_the_email_queue_are_the_outboxs(db, unlimited, tenant):
    enqueue(tenant, 3)
    claim(1)
    jobs.pause_queue(EMAIL)
    stats = jobs.get_queue_stats(EMAIL)
    assert (stats.waiting, stats.paused, stats.active, stats.is_paused) == (0, 2, 1, True)


def test_folding_keeps_every_count(db, unlimited, tenant):
    enqueue(tenant, 5)
    claim(2)
    before = EmailQueueReader().counts(now=timezone.now())
    outbox.counts_fold()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM notifications_emailcount")
        rows = cursor.fetchone()[0]
    assert EmailQueueReader().counts(now=timezone.now()) == before
    assert rows <= 2  # one row per state and minute


def test_the_oldest_waiting_email_is_measured_from_when_it_became_due(db, tenant):
    [email_id] = enqueue(tenant)
    now = timezone.now()
    OutboundEmail.objects.filter(pk=email_id).update(created_at=now - timedelta(minutes=30))
    assert 1790 < EmailQueueReader().oldest_waiting_seconds(now=now) < 1810
    OutboundEmail.objects.filter(pk=email_id).update(available_at=now - timedelta(minutes=2))  # a retry, due again
    assert 110 < EmailQueueReader().oldest_waiting_seconds(now=now) < 130


# --- Putting failed emails back -----------------------------------------------------------------


def test_a_resend_takes_a_new_place_after_its_firms_last_with_a_fresh_set_of_attempts(db, unlimited, tenant):
    [failed] = enqueue(tenant)
    OutboundEmail.objects.filter(pk=failed).update(status="failed", attempts=6, last_error="SMTP 421")
    waiting = enqueue(tenant, 2)
    result = delivery.emails_resend(email_ids=[failed])
    assert result.resent == [failed]
    email = OutboundEmail.objects.get(pk=failed)
    assert (email.status, email.attempts, email.last_error) == ("queued", 0, "")
    assert email.fair_key > max(OutboundEmail.objects.filter(pk__in=waiting).values_list("fair_key", flat=True))


def test_a_bulk_retry_of_the_email_queue_leaves_out_emails_of_unknown_delivery(db, tenant):
    plain, unknown = enqueue(tenant, 2)
    OutboundEmail.objects.filter(pk=plain).update(status="failed")
    OutboundEmail.objects.filter(pk=unknown).update(status="failed", delivery_unknown=True)
    result = jobs.failed_jobs_retry(EMAIL)
    assert (result.retried, result.held) == (1, {"delivery_unknown": 1})
    assert dict(OutboundEmail.objects.values_list("pk", "status")) == {plain: "queued", unknown: "failed"}


def test_a_resend_of_that_one_email_of_unknown_delivery_sends_it_again(db, tenant):
    [unknown] = enqueue(tenant)
    OutboundEmail.objects.filter(pk=unknown).update(status="failed", delivery_unknown=True)
    assert delivery.emails_resend(email_ids=[unknown]).resent == []
    assert delivery.emails_resend(email_ids=[unknown], include_delivery_unknown=True).resent == [unknown]


def test_retrying_now_puts_a_waiting_retry_back_in_line_in_its_old_place(db, tenant):
    [email_id] = enqueue(tenant)
    place = OutboundEmail.objects.get(pk=email_id).fair_key
    OutboundEmail.objects.filter(pk=email_id).update(
        status="retrying", available_at=timezone.now() + timedelta(hours=1)
    )
    assert outbox.emails_retry_now(email_ids=[email_id]) == [email_id]
    email = OutboundEmail.objects.get(pk=email_id)
    assert (email.status, email.fair_key) == ("queued", place)


# --- What a lost worker leaves behind ------------------------------------------------------------


def sweep() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(SWEEP_SQL, {"dead_after": 20, "reason": UNKNOWN_AFTER_LOSS})
        return [row[0] for row in cursor.fetchall()]


def test_a_row_a_dead_worker_left_sending_becomes_delivery_unknown(db, unlimited, tenant, member_of):
    user = member_of(tenant, "admin")
    notifications_deliver(
        tenant=tenant,
        drafts=[
            NotificationDraft(
                recipient_id=user.pk, recipient_email=user.email, recipient_name="Pat", kind="compliance_alert",
                title="Alert", body="...", dedupe_key="alert:1", email_template="custom", email_subject="Alert",
                data={"body": "Alert"},
            )
        ],
    )  # fmt: skip
    lost = worker()
    [(email_id, _)] = claim(1, worker_id=lost)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM procrastinate_workers WHERE id = %s", [lost])  # declared dead
    assert sweep() == [email_id]
    email = OutboundEmail.objects.get(pk=email_id)
    assert (email.status, email.delivery_unknown) == ("failed", True)
    assert email.last_error.startswith("delivery unknown")
    assert Notification.objects.get(pk=email.notification_id).email_status == "failed"


@pytest.mark.parametrize(
    ("kind", "reason", "row", "mirror"),
    [
        ("sent", "SMTP 250 OK", ("sent", False), "sent"),
        ("retry", "SMTP 451 4.3.0 Try again later", ("retrying", False), "queued"),
        ("failed", "SMTP 550 5.7.1 Rejected", ("failed", False), "failed"),
        ("unknown", "delivery unknown: no reply to the end of the data", ("failed", True), "failed"),
    ],
)
def test_a_late_outcome_of_a_swept_attempt_is_taken_when_it_knows_more(
    db, unlimited, tenant, member_of, kind, reason, row, mirror
):
    """A worker cut off from the database past the sweep comes back with what its send did."""
    user = member_of(tenant, "admin")
    notifications_deliver(
        tenant=tenant,
        drafts=[
            NotificationDraft(
                recipient_id=user.pk, recipient_email=user.email, recipient_name="Pat", kind="compliance_alert",
                title="Alert", body="...", dedupe_key="alert:late", email_template="custom", email_subject="Alert",
                data={"body": "Alert"},
            )
        ],
    )  # fmt: skip
    cut_off = worker()
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_SQL, claim_params(worker_id=cut_off, want=1))
        claimed = claimed_from_row(dict(zip([c.name for c in cursor.description], cursor.fetchone(), strict=True)))
        cursor.execute("UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 minute' WHERE id = %s",
                       [cut_off])  # fmt: skip
    assert sweep() == [claimed.pk]
    now = timezone.now()
    late = outcome_decide(claimed, kind=kind, reason=reason, now=now, backoff=timedelta(seconds=30))
    with connection.cursor() as cursor:
        cursor.execute(RECORD_SQL, record_params([late], worker_id=cut_off))
        taken = [found for (found,) in cursor.fetchall()]
    email = OutboundEmail.objects.get(pk=claimed.pk)
    assert (email.status, email.delivery_unknown) == row
    assert taken == ([] if kind == "unknown" else [claimed.pk])
    assert Notification.objects.get(pk=email.notification_id).email_status == mirror


def test_a_row_a_live_worker_is_sending_is_left_alone(db, unlimited, tenant):
    enqueue(tenant)
    claim(1)
    assert sweep() == []


def test_a_row_an_earlier_releases_send_job_holds_is_left_alone_until_its_lock_is_free(db, tenant):
    [email_id] = enqueue(tenant)
    OutboundEmail.objects.filter(pk=email_id).update(status="sending", attempts=1)
    key = (0x4B474345 << 32) | email_id
    with psycopg.connect(helpers.test_database_url(), autocommit=True) as other:  # the old send job's session
        other.execute("SELECT pg_advisory_lock(%s)", [key])
        assert sweep() == []
        other.execute("SELECT pg_advisory_unlock(%s)", [key])  # the old send job ended
        assert sweep() == [email_id]


def test_a_claim_whose_answer_was_lost_goes_back_unspent(db, unlimited, tenant):
    held, lost = enqueue(tenant, 2)
    me = worker()
    claim(2, worker_id=me)
    with connection.cursor() as cursor:
        cursor.execute(RECONCILE_SQL, {"worker_id": me, "held": [held]})
        assert [row[0] for row in cursor.fetchall()] == [lost]
    email = OutboundEmail.objects.get(pk=lost)
    assert (email.status, email.attempts) == ("queued", 0)
    assert OutboundEmail.objects.get(pk=held).status == "sending"


# --- Send jobs of an earlier release ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [("queued", "in-outbox"), ("sent", "already-sent"), ("failed", "already-failed"), ("sending", "in-progress")],
)
def test_a_send_job_of_an_earlier_release_sends_nothing_itself(db, tenant, status, outcome):
    [email_id] = enqueue(tenant)
    OutboundEmail.objects.filter(pk=email_id).update(status=status)
    assert delivery.send_job_run(outbound_email_id=email_id, tenant_id=tenant.pk) == outcome
