"""Real worker processes (``manage.py runworkers --queues email``) sending the outbox to a real
SMTP server: delivery, retries, order, pause, the rate limit across processes, shutdown and
a killed sender, each message counted at the server."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from django.db import connection

from kgc.job_helpers import enqueue_email, get_email
from kgc.queue import jobs
from kgc.queue.models import WorkerProcess
from kgc.queues import EMAIL
from notifications.models import OutboundEmail
from tests.factories import TenantFactory
from tests.helpers import FAST_FAULTS, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SEED_ALERT = {
    "clientName": "ACME Corp",
    "complianceScore": 65,
    "complianceLevel": "amber",
    "issues": ["Missing TIN Certificate", "VAT Filing Overdue"],
    "recommendations": ["Upload TIN Certificate", "Submit VAT Filing"],
}


def status_of(email: OutboundEmail) -> str:
    email.refresh_from_db()
    return email.status


def queue(tenant, count: int, priority: str | None = None) -> list[int]:  # noqa: ANN001
    return [
        enqueue_email(
            recipient_email=f"person{n}.{tenant.pk}@example.com",
            recipient_name="Person",
            subject=f"Note {n}",
            template="custom",
            data={"body": "Hi"},
            tenant_id=tenant.pk,
            priority=priority,
        )
        for n in range(count)
    ]


def message_ids(server) -> list[str]:  # noqa: ANN001
    return [received.message["Message-ID"] for received in server.received]


def test_an_enqueued_email_arrives_and_its_id_tells_where_it_stands(email_workers, smtp_server, tenant):
    email_workers.start(**smtp_server.env())
    email_id = enqueue_email(
        recipient_email="ops@acme.example",
        recipient_name="Ops Team",
        subject="Compliance alert: ACME Corp",
        template="compliance-alert",
        data=SEED_ALERT,
        tenant_id=tenant.pk,
    )
    wait_for(lambda: get_email(email_id)["status"] == "sent", message="the email to be sent")
    [received] = smtp_server.received
    message = received.message
    assert received.rcpt_tos == ["ops@acme.example"]
    assert str(message["To"]) == "Ops Team <ops@acme.example>"
    assert message["Message-ID"] == f"<outbound-{email_id}.{tenant.pk}@kgc-compliance.com>"
    assert message["X-KGC-Tenant"] == str(tenant.pk)
    assert "- Missing TIN Certificate" in message.get_body(("plain",)).get_content()
    assert get_email(email_id)["message_id"] == message["Message-ID"]


def test_a_451_is_retried_after_its_backoff_and_delivered_exactly_once(email_workers, smtp_server, make_email):
    smtp_server.handler.rcpt_replies.append("451 4.3.0 Greylisted, try again later")
    email_workers.start(**smtp_server.env())
    email = make_email()
    wait_for(lambda: status_of(email) == "retrying", message="the first attempt to be put off")
    assert "451" in email.last_error
    OutboundEmail.objects.filter(pk=email.pk).update(available_at=email.claimed_at)  # the backoff is over
    wait_for(lambda: status_of(email) == "sent", message="the retry to deliver")
    assert (email.attempts, len(smtp_server.received)) == (2, 1)


def test_two_worker_processes_send_each_email_once(email_workers, smtp_server, tenant):
    for _ in range(2):
        email_workers.start(**smtp_server.env(), KGC_CONCURRENCY="email=8", KGC_RATE_LIMITS="email=off")
    wait_for(lambda: WorkerProcess.objects.count() == 2, message="both workers serving the email queue")
    ids = queue(tenant, 200)
    wait_for(lambda: len(smtp_server.received) >= 200, timeout=120, message="200 emails")
    time.sleep(1)  # anything sent twice would arrive now
    assert sorted(message_ids(smtp_server)) == sorted(f"<outbound-{pk}.{tenant.pk}@kgc-compliance.com>" for pk in ids)
    assert set(OutboundEmail.objects.values_list("status", flat=True)) == {"sent"}
    claimed_by = set(OutboundEmail.objects.values_list("claimed_by", flat=True))
    assert len(claimed_by) == 2, "both processes sent"


def test_each_firm_is_served_in_turn_and_urgent_email_first(email_workers, smtp_server):
    """One send at a time, so the server sees the claim's order."""
    big, small = TenantFactory(), [TenantFactory() for _ in range(4)]
    smtp_server.handler.hold = threading.Event()
    email_workers.start(**smtp_server.env(), KGC_CONCURRENCY="email=1", KGC_RATE_LIMITS="email=off")
    queue(big, 1)
    assert smtp_server.handler.in_data.wait(60), "the first email never reached DATA"
    queue(big, 30)
    for tenant in small:
        queue(tenant, 1)
    [urgent] = queue(small[0], 1, priority="urgent")
    smtp_server.handler.hold.set()
    wait_for(lambda: len(smtp_server.received) >= 36, timeout=120, message="36 emails")
    tenants = [int(received.message["X-KGC-Tenant"]) for received in smtp_server.received]
    assert message_ids(smtp_server)[1] == f"<outbound-{urgent}.{small[0].pk}@kgc-compliance.com>"
    # after the urgent one, each small firm's email within the first round, not after the big firm's 30
    assert set(tenants[2:8]) >= {tenant.pk for tenant in small}


def test_a_pause_mid_batch_lets_the_sends_in_flight_finish_and_starts_no_more(email_workers, smtp_server, tenant):
    smtp_server.handler.hold = threading.Event()
    email_workers.start(**smtp_server.env(), KGC_CONCURRENCY="email=3", KGC_RATE_LIMITS="email=off")
    queue(tenant, 10)
    assert smtp_server.handler.in_data.wait(60), "nothing reached DATA"
    wait_for(lambda: OutboundEmail.objects.filter(status="sending").count() == 3, message="three sends in flight")
    jobs.pause_queue(EMAIL)
    smtp_server.handler.hold.set()
    wait_for(lambda: len(smtp_server.received) == 3, message="the three in flight to finish")
    time.sleep(3)  # three poll intervals: a claim would have happened by now
    assert len(smtp_server.received) == 3
    assert OutboundEmail.objects.filter(status="queued").count() == 7
    jobs.resume_queue(EMAIL)
    wait_for(lambda: len(smtp_server.received) == 10, message="the rest after the resume")
    time.sleep(1)
    assert len(set(message_ids(smtp_server))) == 10 == len(smtp_server.received)


def test_the_rate_limit_holds_across_three_processes(email_workers, smtp_server, tenant):
    """5 emails per 2 s window (the 100-a-minute limit scaled down), three processes sharing it."""
    for _ in range(3):
        email_workers.start(**smtp_server.env(), KGC_RATE_LIMITS="email=5/2s")
    wait_for(lambda: WorkerProcess.objects.count() == 3, message="three workers serving the email queue")
    queue(tenant, 20)
    wait_for(lambda: len(smtp_server.received) >= 20, timeout=120, message="20 limited emails")
    with connection.cursor() as cursor:
        cursor.execute("SELECT extract(epoch FROM claimed_at) FROM notifications_outboundemail ORDER BY claimed_at")
        claims = [float(row[0]) for row in cursor.fetchall()]
    busiest = max(sum(1 for other in claims if start <= other < start + 2.0) for start in claims)
    assert busiest <= 5, f"{busiest} emails claimed within one 2 s window"
    assert len(smtp_server.received) == 20


def test_a_slow_server_gets_one_copy_from_a_worker_with_a_short_command_timeout(email_workers, smtp_server, tenant):
    smtp_server.handler.data_delay = 3.0
    email_workers.start(**smtp_server.env(), SMTP_TIMEOUT="1")
    [email_id] = queue(tenant, 1)
    wait_for(lambda: get_email(email_id)["status"] == "sent", message="the slow send to be recorded")
    assert (smtp_server.handler.data_commands, len(smtp_server.received)) == (1, 1)
    assert get_email(email_id)["delivery_unknown"] is False


def test_shutdown_gives_back_what_was_never_handed_over_and_calls_the_rest_unknown(email_workers, smtp_server, tenant):
    smtp_server.handler.hold = threading.Event()
    worker = email_workers.start(**smtp_server.env(), KGC_CONCURRENCY="email=1", KGC_RATE_LIMITS="email=off")
    in_data, waiting = queue(tenant, 2)
    assert smtp_server.handler.in_data.wait(60), "nothing reached DATA"
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(60) == 0
    rows = {email.pk: email for email in OutboundEmail.objects.all()}
    assert (rows[in_data].status, rows[in_data].delivery_unknown) == ("failed", True)
    assert (rows[waiting].status, rows[waiting].attempts) == ("queued", 0)
    smtp_server.handler.hold.set()


def test_a_sender_killed_mid_send_is_never_sent_again(email_workers, smtp_server, tenant):
    """At most once: the row stays "sending" until the sweep sees its worker gone, then it is
    failed as "delivery unknown" for an operator; no other worker sends it."""
    smtp_server.handler.hold = threading.Event()
    first = email_workers.start(**smtp_server.env(), **FAST_FAULTS)
    [email_id] = queue(tenant, 1)
    assert smtp_server.handler.in_data.wait(60), "the worker never reached DATA"
    first.kill()
    first.wait(30)
    assert get_email(email_id)["status"] == "sending"
    email_workers.start(**smtp_server.env(), **FAST_FAULTS)
    wait_for(lambda: get_email(email_id)["status"] == "failed", timeout=120, message="the sweep to settle the row")
    assert get_email(email_id)["delivery_unknown"] is True
    smtp_server.handler.hold.set()
    time.sleep(1)
    assert smtp_server.handler.data_commands == 1
