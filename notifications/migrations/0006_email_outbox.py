"""The outbox: the email rows become the email queue (notifications/outbox.py).

* Each email gets a priority (urgent, high, normal, low) and a place in line among its
  priority's emails (``fair_key``), each firm in turn; ``notifications_email_places``
  gives places out, ``EmailFairClock`` remembers each firm's last one.
* ``retrying`` is a state of its own (a transient failure waiting for its backoff).
* ``notifications_emails_claim`` claims a batch in line order, with the queue's pause,
  its global rate limit and the worker's fencing, as ``kgc_fetch_jobs`` does for jobs.
* Triggers keep ``EmailCount`` (emails per state, and per minute for finished ones).
* Emails already queued keep their place: each firm in turn, oldest first. A send job
  waiting for its backoff turns its email into a retrying one due at the same time; the
  waiting send jobs are cancelled, since the outbox sends their emails now. A send job
  running during the migration finishes as before (its email's claim still counts).

The new indexes are built concurrently by the next migration.
"""

import django.db.models.deletion
from django.contrib.postgres.operations import AddConstraintNotValid
from django.db import migrations, models

FUNCTIONS = """
-- The places of ``p_count`` new emails of one tenant and priority; returns the first, the
-- others follow it. A new email goes after the later of its firm's last place and the head
-- of the line (or, when nothing waits, the last place anyone was given): a firm with a
-- backlog keeps its turn, one with nothing waiting is served within a round of the others.
CREATE FUNCTION notifications_email_places(p_tenant_id bigint, p_priority smallint, p_count integer)
    RETURNS bigint
    LANGUAGE plpgsql
AS $$
DECLARE
    head bigint;
    first_place bigint;
BEGIN
    SELECT q.fair_key - 1 INTO head
      FROM notifications_outboundemail AS q
     WHERE q.status = 'queued' AND q.priority = p_priority
     ORDER BY q.priority, q.fair_key
     LIMIT 1;
    IF head IS NULL THEN
        SELECT max(clock.last_key) INTO head FROM notifications_emailfairclock AS clock WHERE clock.priority = p_priority;
    END IF;
    INSERT INTO notifications_emailfairclock AS clock (tenant_id, priority, last_key)
    VALUES (p_tenant_id, p_priority, coalesce(head, 0) + p_count)
    ON CONFLICT (tenant_id, priority) DO UPDATE SET last_key = greatest(clock.last_key, coalesce(head, 0)) + p_count
    RETURNING clock.last_key - p_count + 1 INTO first_place;
    RETURN first_place;
END;
$$;

-- Claim up to ``p_want`` emails in line order (priority, then place), for the worker
-- ``p_worker_id`` (fencing: a worker declared dead claims nothing, SQLSTATE KGC01).
-- Retries that are due go back in line first. A paused queue yields nothing. A rate limit
-- (``p_limit`` per ``p_window`` seconds, counted in kgc_ratelimitslot under the queue's
-- advisory lock, as kgc_fetch_jobs counts job starts) cuts the batch to what its window
-- still allows, and paces it: at most a tenth of the limit in any tenth of the window, so
-- that the window's budget is not spent in its first second, leaving an urgent email or
-- a newly arrived firm's to wait for the rest of it. Each row comes with what its message
-- needs: the tenant's name, whom it is for and of what kind (a notification's or a
-- digest's), and its suppression if any.
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
        member_id bigint, kind text
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
                WHEN digest.id IS NOT NULL THEN p_all_kinds END
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

-- The minute an email counts in: a finished one in the minute it finished (so a window of
-- minutes counts what finished in it), any other in the minute of the change.
CREATE FUNCTION notifications_email_count_bucket(p_status text, p_finished_at timestamptz)
    RETURNS timestamptz
    LANGUAGE sql
    STABLE
AS $$
    SELECT date_trunc('minute', CASE WHEN p_status IN ('sent', 'failed', 'suppressed')
                                     THEN coalesce(p_finished_at, now()) ELSE now() END)
$$;

-- Emails entering and leaving states, one row per state and minute a statement touched:
-- per statement, not per row, and no shared counter row that would serialise writers.
CREATE FUNCTION notifications_email_counts_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notifications_emailcount (state, bucket, delta, entered)
        SELECT status, notifications_email_count_bucket(status, coalesce(finished_at, sent_at, created_at)), count(*),
               count(*)
          FROM new_emails GROUP BY 1, 2;
    PERFORM pg_notify('kgc_outbox', 'queued') WHERE EXISTS (SELECT 1 FROM new_emails WHERE status = 'queued');
    RETURN NULL;
END;
$$;

CREATE FUNCTION notifications_email_counts_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notifications_emailcount (state, bucket, delta, entered)
        SELECT state, bucket, sum(delta), sum(entered)
          FROM (
                SELECT after.status AS state, notifications_email_count_bucket(after.status, coalesce(after.finished_at, after.sent_at, after.created_at)) AS bucket,
                       1 AS delta, 1 AS entered
                  FROM new_emails AS after JOIN old_emails AS before ON before.id = after.id
                 WHERE before.status IS DISTINCT FROM after.status OR before.finished_at IS DISTINCT FROM after.finished_at
                UNION ALL
                SELECT before.status, notifications_email_count_bucket(before.status, coalesce(before.finished_at, before.sent_at, before.created_at)), -1, 0
                  FROM new_emails AS after JOIN old_emails AS before ON before.id = after.id
                 WHERE before.status IS DISTINCT FROM after.status OR before.finished_at IS DISTINCT FROM after.finished_at
          ) AS moves
         GROUP BY 1, 2
        HAVING sum(delta) <> 0 OR sum(entered) <> 0;
    PERFORM pg_notify('kgc_outbox', 'queued')
      WHERE EXISTS (SELECT 1 FROM new_emails AS after JOIN old_emails AS before ON before.id = after.id
                     WHERE after.status = 'queued' AND before.status <> 'queued');
    RETURN NULL;
END;
$$;

CREATE FUNCTION notifications_email_counts_on_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notifications_emailcount (state, bucket, delta, entered)
        SELECT status, notifications_email_count_bucket(status, coalesce(finished_at, sent_at, created_at)), -count(*), 0
          FROM old_emails GROUP BY 1, 2;
    RETURN NULL;
END;
$$;

CREATE TRIGGER notifications_email_counts_insert AFTER INSERT ON notifications_outboundemail
    REFERENCING NEW TABLE AS new_emails FOR EACH STATEMENT EXECUTE FUNCTION notifications_email_counts_on_insert();
CREATE TRIGGER notifications_email_counts_update AFTER UPDATE ON notifications_outboundemail
    REFERENCING OLD TABLE AS old_emails NEW TABLE AS new_emails
    FOR EACH STATEMENT EXECUTE FUNCTION notifications_email_counts_on_update();
CREATE TRIGGER notifications_email_counts_delete AFTER DELETE ON notifications_outboundemail
    REFERENCING OLD TABLE AS old_emails FOR EACH STATEMENT EXECUTE FUNCTION notifications_email_counts_on_delete();

-- Fold the counts: one row per state and bucket; minutes older than a day become hours,
-- and finished emails older than the longest retention (and every other state's rows older
-- than a day) one row per state, at the epoch, where no window reaches. Rows added while it
-- runs are left for the next fold; two folds cannot count a row twice (DELETE claims it).
CREATE FUNCTION notifications_email_counts_fold(p_keep_minutes interval, p_keep_hours interval) RETURNS void
    LANGUAGE sql
AS $$
    WITH folded AS (
        DELETE FROM notifications_emailcount RETURNING state, bucket, delta, entered
    )
    INSERT INTO notifications_emailcount (state, bucket, delta, entered)
    SELECT state,
           CASE WHEN bucket >= now() - p_keep_minutes THEN bucket
                WHEN state IN ('sent', 'failed', 'suppressed') AND bucket >= now() - p_keep_hours
                    THEN date_trunc('hour', bucket)
                ELSE timestamptz '1970-01-01 00:00:00+00' END,
           sum(delta), sum(entered)
      FROM folded
     GROUP BY 1, 2
    HAVING sum(delta) <> 0 OR sum(entered) <> 0;
$$;
"""

FUNCTIONS_DROP = """
DROP TRIGGER IF EXISTS notifications_email_counts_insert ON notifications_outboundemail;
DROP TRIGGER IF EXISTS notifications_email_counts_update ON notifications_outboundemail;
DROP TRIGGER IF EXISTS notifications_email_counts_delete ON notifications_outboundemail;
DROP FUNCTION IF EXISTS notifications_email_counts_on_insert();
DROP FUNCTION IF EXISTS notifications_email_counts_on_update();
DROP FUNCTION IF EXISTS notifications_email_counts_on_delete();
DROP FUNCTION IF EXISTS notifications_email_counts_fold(interval, interval);
DROP FUNCTION IF EXISTS notifications_email_count_bucket(text, timestamptz);
DROP FUNCTION IF EXISTS notifications_emails_claim(bigint, integer, varchar, integer, double precision, text);
DROP FUNCTION IF EXISTS notifications_email_places(bigint, smallint, integer);
"""

# The emails already in the queue, moved into the outbox. Counted last, from the rows as
# they then are, with the triggers in place from then on.
MOVE = """
UPDATE notifications_outboundemail AS email
   SET priority = CASE notification.urgency WHEN 'URGENT' THEN 0 WHEN 'HIGH' THEN 1 ELSE 2 END
  FROM notifications_notification AS notification
 WHERE notification.id = email.notification_id AND email.status IN ('queued', 'sending')
   AND notification.urgency IN ('URGENT', 'HIGH');

UPDATE notifications_outboundemail AS email SET status = 'retrying', available_at = job.scheduled_at
  FROM procrastinate_jobs AS job
 WHERE job.task_name = 'notifications.send_email' AND job.status = 'todo' AND job.scheduled_at > now()
   AND job.args->>'outbound_email_id' ~ '^[0-9]{1,18}$'
   AND email.id = (job.args->>'outbound_email_id')::bigint AND email.status = 'queued';

-- A waiting email whose send job is gone (an operator cancelled it, it failed before it
-- sent, it was purged) was never going to leave with the earlier release. It does not
-- leave now either, months late: it fails with the reason, for an operator to resend.
WITH live AS (
    SELECT job.args->>'outbound_email_id' AS email_id
      FROM procrastinate_jobs AS job
     WHERE job.task_name = 'notifications.send_email' AND job.status IN ('todo', 'doing')
       AND job.args ? 'outbound_email_id'
), orphaned AS (
    UPDATE notifications_outboundemail AS email
       SET status = 'failed', finished_at = now(),
           last_error = 'not sent: its send job had been cancelled or had failed before the email queue '
                        'became the outbox; resend it if it is still wanted'
     WHERE email.status = 'queued' AND email.id::text NOT IN (SELECT live.email_id FROM live)
    RETURNING email.tenant_id, email.notification_id
)
UPDATE notifications_notification AS notification SET email_status = 'failed'
  FROM orphaned
 WHERE notification.id = orphaned.notification_id AND notification.tenant_id = orphaned.tenant_id
   AND notification.email_status = 'queued';

WITH placed AS (
    SELECT id, row_number() OVER (PARTITION BY tenant_id, priority ORDER BY id) AS place
      FROM notifications_outboundemail WHERE status IN ('queued', 'retrying')
)
UPDATE notifications_outboundemail AS email SET fair_key = placed.place FROM placed WHERE email.id = placed.id;

INSERT INTO notifications_emailfairclock (tenant_id, priority, last_key)
SELECT tenant_id, priority, max(fair_key) FROM notifications_outboundemail
 WHERE status IN ('queued', 'retrying') GROUP BY 1, 2;

UPDATE procrastinate_jobs SET status = 'cancelled'
 WHERE task_name = 'notifications.send_email' AND status = 'todo';

DELETE FROM notifications_emailcount;
INSERT INTO notifications_emailcount (state, bucket, delta, entered)
SELECT status, notifications_email_count_bucket(status, coalesce(finished_at, sent_at, created_at)), count(*), count(*)
  FROM notifications_outboundemail GROUP BY 1, 2;
"""

# Back to one send job per email: the waiting emails get theirs again, a retry's due when
# the row was. An email a dispatcher had claimed (the dispatchers are stopped to migrate)
# may have left: the earlier release reads rows only through their jobs and would leave
# it "sending" for ever, so it is failed as delivery unknown here, as the sweep would.
MOVE_BACK = """
WITH unknown AS (
    UPDATE notifications_outboundemail
       SET status = 'failed', delivery_unknown = true, finished_at = now(),
           last_error = 'delivery unknown: the worker sending this email stopped before recording the outcome; '
                        'it may have been delivered. Check with the recipient or the provider, then resend if needed.'
     WHERE status = 'sending' AND claimed_by IS NOT NULL
    RETURNING tenant_id, notification_id
)
UPDATE notifications_notification AS notification SET email_status = 'failed'
  FROM unknown WHERE notification.id = unknown.notification_id AND notification.tenant_id = unknown.tenant_id;

WITH waiting AS (
    SELECT id, tenant_id, CASE WHEN status = 'retrying' THEN available_at END AS due
      FROM notifications_outboundemail WHERE status IN ('queued', 'retrying')
       FOR UPDATE
), back AS (
    UPDATE notifications_outboundemail AS email SET status = 'queued', available_at = NULL
      FROM waiting WHERE email.id = waiting.id
)
SELECT procrastinate_defer_jobs_v1(array_agg(
           ROW('email', 'notifications.send_email', -100, NULL, NULL,
               jsonb_build_object('outbound_email_id', id, 'tenant_id', tenant_id), due
           )::procrastinate_job_to_defer_v1 ORDER BY id))
  FROM waiting HAVING count(*) > 0;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0003_tenant_notification_email_default"),
        ("notifications", "0005_escalations_morning_runs_digest_outcomes"),
        ("kgc", "0007_jobs_worker_index"),
        ("procrastinate", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="EmailCount",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("state", models.CharField(max_length=16)),
                ("bucket", models.DateTimeField()),
                ("delta", models.BigIntegerField(default=0)),
                ("entered", models.BigIntegerField(default=0)),
            ],
            options={"indexes": [models.Index(fields=["state", "bucket"], name="email_count_state_idx")]},
        ),
        migrations.CreateModel(
            name="EmailFairClock",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "priority",
                    models.PositiveSmallIntegerField(choices=[(0, "Urgent"), (1, "High"), (2, "Normal"), (3, "Low")]),
                ),
                ("last_key", models.BigIntegerField(default=0)),
                (
                    "tenant",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="compliance.tenant"
                    ),
                ),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("tenant", "priority"), name="email_fair_clock_unique")]
            },
        ),
        migrations.RemoveConstraint(model_name="outboundemail", name="outbound_status_valid"),
        migrations.AddField(
            model_name="outboundemail",
            name="available_at",
            field=models.DateTimeField(blank=True, help_text="When a retrying email is due again.", null=True),
        ),
        migrations.AddField(
            model_name="outboundemail",
            name="claimed_at",
            field=models.DateTimeField(blank=True, help_text="When its last attempt began.", null=True),
        ),
        migrations.AddField(
            model_name="outboundemail",
            name="claimed_by",
            field=models.BigIntegerField(blank=True, help_text="The worker that took its last attempt.", null=True),
        ),
        migrations.AddField(
            model_name="outboundemail",
            name="fair_key",
            field=models.BigIntegerField(
                db_default=0, default=0, help_text="Its place in line among its priority's emails (each firm in turn)."
            ),
        ),
        migrations.AddField(
            model_name="outboundemail",
            name="finished_at",
            field=models.DateTimeField(blank=True, help_text="When it was sent, failed or suppressed.", null=True),
        ),
        migrations.AddField(
            model_name="outboundemail",
            name="priority",
            field=models.SmallIntegerField(
                choices=[(0, "Urgent"), (1, "High"), (2, "Normal"), (3, "Low")], db_default=2, default=2
            ),
        ),
        migrations.AlterField(
            model_name="outboundemail",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"),
                    ("retrying", "Waiting to retry"),
                    ("sending", "Sending"),
                    ("sent", "Sent"),
                    ("failed", "Failed"),
                    ("suppressed", "Suppressed (not handed to the server)"),
                ],
                default="queued",
                max_length=16,
            ),
        ),
        AddConstraintNotValid(
            model_name="outboundemail",
            constraint=models.CheckConstraint(
                condition=models.Q(("status__in", ["queued", "retrying", "sending", "sent", "failed", "suppressed"])),
                name="outbound_status_valid",
            ),
        ),
        AddConstraintNotValid(
            model_name="outboundemail",
            constraint=models.CheckConstraint(
                condition=models.Q(("priority__gte", 0), ("priority__lte", 3)), name="outbound_priority_valid"
            ),
        ),
        migrations.RunSQL(FUNCTIONS, FUNCTIONS_DROP),
        migrations.RunSQL(MOVE, MOVE_BACK),
    ]
