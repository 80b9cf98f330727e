"""The migration to the outbox moves the emails already waiting, with their send jobs' state,
and loses or doubles none; an email whose job was gone stays unsent. Back again, every
waiting email gets a send job once more, and one a dispatcher had claimed is delivery unknown."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BEFORE = ("notifications", "0005_escalations_morning_runs_digest_outcomes")
AFTER = ("notifications", "0007_email_outbox_indexes")


def migrate(target: tuple[str, str] | None) -> None:
    """To ``target``, or with None to every app's latest migration (as the other tests expect it)."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target] if target else executor.loader.graph.leaf_nodes())


def rows(statement: str, params: list | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])
        return cursor.fetchall() if cursor.description else []


def send_job(email_id: int, tenant_id: int, *, status: str = "todo", scheduled_in: timedelta | None = None) -> int:
    [(job_id,)] = rows(
        """SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW('email', 'notifications.send_email', -100, NULL, NULL,
                  jsonb_build_object('outbound_email_id', %s::bigint, 'tenant_id', %s::bigint),
                  %s)::procrastinate_job_to_defer_v1]))""",
        [email_id, tenant_id, timezone.now() + scheduled_in if scheduled_in else None],
    )
    if status != "todo":
        rows("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s", [job_id])
        if status != "doing":
            rows("UPDATE procrastinate_jobs SET status = %s WHERE id = %s", [status, job_id])
    return job_id


def email(tenant_id: int, key: str, status: str) -> int:
    [(email_id,)] = rows(
        """INSERT INTO notifications_outboundemail (tenant_id, to_email, to_name, subject, template, context, status,
                  attempts, last_error, message_id, idempotency_key, created_at, delivery_unknown)
           VALUES (%s, %s, 'Pat', 'Hello', 'custom', '{"body": "Hi"}', %s, 0, '', '', %s, now(), false)
           RETURNING id""",
        [tenant_id, f"{key}@example.com", status, key],
    )
    return email_id


def test_waiting_emails_and_their_retries_move_into_the_outbox_and_back():
    migrate(BEFORE)
    try:
        [(tenant,)] = rows(
            "INSERT INTO compliance_tenant (name, slug, timezone, is_active, created_at, notification_email_default,"
            " holiday_country, holiday_subdivision) VALUES ('Move', 'move', 'UTC', true, now(), 'immediate', '', '')"
            " RETURNING id"
        )
        due = email(tenant, "due", "queued")
        due_job = send_job(due, tenant)
        backoff = email(tenant, "backoff", "queued")
        backoff_job = send_job(backoff, tenant, scheduled_in=timedelta(minutes=10))
        in_flight = email(tenant, "in-flight", "sending")
        in_flight_job = send_job(in_flight, tenant, status="doing")
        sent = email(tenant, "sent", "sent")
        send_job(sent, tenant, status="succeeded")
        cancelled = email(tenant, "cancelled", "queued")  # an operator cancelled its job
        send_job(cancelled, tenant, status="cancelled")
        jobless = email(tenant, "jobless", "queued")

        migrate(AFTER)

        state = {
            row[0]: row[1:]
            for row in rows("SELECT id, status, fair_key, available_at FROM notifications_outboundemail")
        }
        assert state[due][:2] == ("queued", 1)
        assert state[backoff][0] == "retrying" and state[backoff][1] == 2
        assert abs((state[backoff][2] - timezone.now()).total_seconds() - 600) < 30  # due when its job was
        assert state[in_flight][0] == "sending" and state[sent][0] == "sent"
        assert (state[cancelled][0], state[jobless][0]) == ("failed", "failed")  # not sent late
        assert rows(
            "SELECT count(*) FROM notifications_outboundemail WHERE last_error LIKE 'not sent: its send job%%'"
        )[0] == (2,)
        jobs = dict(rows("SELECT id, status::text FROM procrastinate_jobs"))
        assert (jobs[due_job], jobs[backoff_job], jobs[in_flight_job]) == ("cancelled", "cancelled", "doing")
        counts = dict(rows("SELECT state, sum(delta) FROM notifications_emailcount GROUP BY 1"))
        assert counts == {"queued": 1, "retrying": 1, "sending": 1, "sent": 1, "failed": 2}
        assert rows("SELECT priority, last_key FROM notifications_emailfairclock WHERE tenant_id = %s", [tenant]) == [
            (2, 2)
        ]

        claimed = email(tenant, "claimed", "queued")  # then taken by a dispatcher, which stopped
        rows("UPDATE notifications_outboundemail SET status = 'sending', claimed_by = 42 WHERE id = %s", [claimed])

        migrate(BEFORE)

        waiting = {
            row[0]: row[1:] for row in rows("SELECT id, status, delivery_unknown FROM notifications_outboundemail")
        }
        assert (waiting[due][0], waiting[backoff][0]) == ("queued", "queued")
        assert waiting[claimed] == ("failed", True)  # never "sending" with no job to settle it
        assert waiting[in_flight][0] == "sending"  # its own job settles it
        queued_jobs = rows(
            """SELECT (args->>'outbound_email_id')::bigint, scheduled_at FROM procrastinate_jobs
                WHERE task_name = 'notifications.send_email' AND status = 'todo' ORDER BY 1"""
        )
        assert [email_id for email_id, _ in queued_jobs] == [due, backoff]
        assert queued_jobs[0][1] is None and queued_jobs[1][1] == state[backoff][2]  # the retry keeps its backoff
    finally:
        migrate(None)
