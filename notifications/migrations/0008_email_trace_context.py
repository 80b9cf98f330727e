"""The context of the span that queued an email, kept in its row for its send's span.

``trace_context`` is written only while tracing is on (``kgc/queue/tracing.py``): by
``email_enqueue``, the notifications' delivering statement and the digests'. A column added
without a default is a change of the catalogue only: the busy table is not rewritten.

The claim returns it with the rest of what a send needs. Its result gains a column, which
``CREATE OR REPLACE`` cannot do: the function is dropped and created again in one
transaction, so a claim sees either the old function or the new, and a dispatcher of the
previous release, which names the columns it reads, goes on with the new one.
"""

import importlib

from django.db import migrations, models

CLAIM = """
DROP FUNCTION notifications_emails_claim(bigint, integer, varchar, integer, double precision, text);

-- Claim up to ``p_want`` emails in line order (priority, then place), for the worker
-- ``p_worker_id`` (fencing: a worker declared dead claims nothing, SQLSTATE KGC01).
-- Retries that are due go back in line first. A paused queue yields nothing. A rate limit
-- (``p_limit`` per ``p_window`` seconds, counted in kgc_ratelimitslot under the queue's
-- advisory lock, as kgc_fetch_jobs counts job starts) cuts the batch to what its window
-- still allows, and paces it: at most a tenth of the limit in any tenth of the window, so
-- that the window's budget is not spent in its first second, leaving an urgent email or
-- a newly arrived firm's to wait for the rest of it. Each row comes with what its message
-- needs: the tenant's name, whom it is for and of what kind (a notification's or a
-- digest's), its suppression if any, and the trace context of the span that queued it.
CREATE FUNCTION notifications_emails_claim(
    p_worker_id bigint,
    p_want integer,
    p_queue character varying,
    p_limit integer,
    p_window double precision,
    p_all_kinds text
)
    RETURNS TABLE (
        id bigint, tenant_id bigint, tenant_name text, notification_id bigint, to_email text, to_name text,
        subject text, template text, context jsonb, attempts integer, priority smallint, suppressed_as text,
        member_id bigint, kind text, trace_context jsonb
    )
    LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    want integer := p_want;
    started integer;
    claimed integer;
    pace_seconds double precision;
BEGIN
    -- The claim must be on disk before anything is sent, whatever the server's default.
    PERFORM set_config('synchronous_commit', 'on', true);
    PERFORM 1 FROM procrastinate_workers AS worker WHERE worker.id = p_worker_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'worker % is not registered (declared dead)', p_worker_id USING ERRCODE = 'KGC01';
    END IF;
    UPDATE notifications_outboundemail AS email SET status = 'queued'
     WHERE email.id IN (SELECT due.id FROM notifications_outboundemail AS due
                         WHERE due.status = 'retrying' AND due.available_at <= now()
                         ORDER BY due.available_at LIMIT 1000 FOR UPDATE SKIP LOCKED);
    IF want <= 0 OR EXISTS (SELECT 1 FROM kgc_queuepause AS pause WHERE pause.queue_name = p_queue) THEN
        RETURN;
    END IF;
    IF p_limit IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('kgc_rate_limit'), hashtext(p_queue));
        DELETE FROM kgc_ratelimitslot AS slot
         WHERE slot.queue_name = p_queue
           AND slot.slot < date_trunc('second', clock_timestamp()) - make_interval(secs => ceil(p_window));
        SELECT coalesce(sum(slot.starts), 0) INTO started FROM kgc_ratelimitslot AS slot WHERE slot.queue_name = p_queue;
        want := least(want, p_limit - started);
        pace_seconds := greatest(p_window / 10, 1);
        SELECT coalesce(sum(slot.starts), 0) INTO started FROM kgc_ratelimitslot AS slot
         WHERE slot.queue_name = p_queue
           AND slot.slot >= date_trunc('second', clock_timestamp()) - make_interval(secs => ceil(pace_seconds));
        want := least(want, greatest(ceil(p_limit * pace_seconds / p_window), 1)::integer - started);
        IF want <= 0 THEN
            RETURN;
        END IF;
    END IF;

    RETURN QUERY
    WITH picked AS (
        SELECT line.id
          FROM notifications_outboundemail AS line
         WHERE line.status = 'queued'
         ORDER BY line.priority, line.fair_key, line.id
         LIMIT want
           FOR UPDATE SKIP LOCKED
    ), taken AS (
        UPDATE notifications_outboundemail AS email
           SET status = 'sending', attempts = email.attempts + 1, claimed_by = p_worker_id, claimed_at = now()
          FROM picked
         WHERE email.id = picked.id
        RETURNING email.*
    )
    SELECT taken.id, taken.tenant_id, tenant.name::text, taken.notification_id, taken.to_email::text,
           taken.to_name::text, taken.subject::text, taken.template::text, taken.context, taken.attempts::integer,
           taken.priority::smallint,
           (SELECT suppression.reason::text FROM notifications_suppression AS suppression
             WHERE suppression.email = lower(taken.to_email)
               AND (suppression.tenant_id = taken.tenant_id OR suppression.tenant_id IS NULL)
             ORDER BY suppression.created_at DESC LIMIT 1),
           coalesce(notification.recipient_id, digest.recipient_id)::bigint,
           CASE WHEN notification.id IS NOT NULL THEN notification.kind::text
                WHEN digest.id IS NOT NULL THEN p_all_kinds END,
           taken.trace_context
      FROM taken
      JOIN compliance_tenant AS tenant ON tenant.id = taken.tenant_id
      LEFT JOIN notifications_notification AS notification ON notification.id = taken.notification_id
      LEFT JOIN notifications_digest AS digest ON digest.outbound_email_id = taken.id
     ORDER BY taken.priority, taken.fair_key, taken.id;

    GET DIAGNOSTICS claimed = ROW_COUNT;
    IF p_limit IS NOT NULL AND claimed > 0 THEN
        INSERT INTO kgc_ratelimitslot AS slots (queue_name, slot, starts)
        VALUES (p_queue, date_trunc('second', clock_timestamp()), claimed)
        ON CONFLICT (queue_name, slot) DO UPDATE SET starts = slots.starts + excluded.starts;
    END IF;
END;
$$;
"""

_OUTBOX = importlib.import_module("notifications.migrations.0006_email_outbox")


def _claim_of(functions: str) -> str:
    """The claim function of ``0006_email_outbox``, with its comment, out of its statements."""
    start = functions.index("-- Claim up to ``p_want`` emails")
    end = functions.index("$$;", functions.index("AS $$", start) + len("AS $$")) + len("$$;")
    return functions[start:end]


# Back: the function as 0006 created it.
CLAIM_BEFORE = (
    "\nDROP FUNCTION notifications_emails_claim(bigint, integer, varchar, integer, double precision, text);\n\n"
    + _claim_of(_OUTBOX.FUNCTIONS)
    + "\n"
)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0007_email_outbox_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="outboundemail",
            name="trace_context",
            field=models.JSONField(
                blank=True, editable=False, help_text="The trace context of the span that queued it.", null=True
            ),
        ),
        migrations.RunSQL(CLAIM, CLAIM_BEFORE),
    ]
