"""The enqueue contract: the seed's ``src/lib/job-helpers.ts``, for Python callers.

Every function keeps the seed's name in snake_case and its meaning. Enqueueing goes
through Django's connection, so inside ``transaction.atomic()`` the job commits or
rolls back with the caller's rows. Bad input raises a ``ValueError`` subclass naming
what is wrong, and nothing is enqueued.
"""

from __future__ import annotations

import re
from typing import Any

from compliance import services as compliance_services
from compliance.selectors import tenant_get
from kgc.queue import jobs
from kgc.queue.jobs import cleanup_queue, get_failed, is_paused, pause_queue, resume_queue, retry_failed, retry_job
from notifications import services as notification_services

__all__ = [
    "cleanup_queue",
    "enqueue_compliance_refresh",
    "enqueue_email",
    "enqueue_expiry_check",
    "enqueue_filing_reminder",
    "get_all_queue_stats",
    "get_email",
    "get_failed",
    "get_queue_stats",
    "is_paused",
    "pause_queue",
    "resume_queue",
    "retry_failed",
    "retry_job",
]

TRIGGERED_BY_MAX = 64
# Why a refresh was asked for (kept on every score it writes): one of these sources,
# optionally followed by a colon and who or what ("manual:ana@firm.example",
# "document_upload:4711"). "schedule" is the nightly run's, "admin" the admin's buttons',
# "command" manage.py refresh_compliance's.
TRIGGER_SOURCES = (
    "manual",
    "schedule",
    "document_upload",
    "document_update",
    "filing_update",
    "client_update",
    "admin",
    "command",
)
TRIGGER_PATTERN = rf"^({'|'.join(TRIGGER_SOURCES)})(:[\s\S]*)?$"


class InvalidTrigger(jobs.JobError):
    pass


class InvalidRefreshRequest(jobs.JobError):
    """A refresh request with several bad arguments; ``errors`` names each (Python names)."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


def triggered_by_problem(triggered_by: object) -> str | None:
    """What is wrong with a refresh's ``triggered_by`` (None: nothing)."""
    if not isinstance(triggered_by, str) or not triggered_by.strip() or len(triggered_by) > TRIGGERED_BY_MAX:
        return f"must be a non-empty string of at most {TRIGGERED_BY_MAX} characters"
    if not re.match(TRIGGER_PATTERN, triggered_by):
        return (
            f"must be one of {', '.join(TRIGGER_SOURCES)}, optionally followed by ':' and who or what "
            f"(manual:ana@firm.example), got {triggered_by!r}"
        )
    return None


def compliance_refresh_problems(*, triggered_by: object, priority: object) -> dict[str, str]:
    """Every bad argument of a refresh request at once, by name (empty: none)."""
    problems = {"triggered_by": triggered_by_problem(triggered_by), "priority": jobs.priority_problem(priority)}
    return {name: problem for name, problem in problems.items() if problem is not None}


def _fan_out_job(task_name: str) -> int:
    """All tenants: one fan-out job, which defers one job per active tenant when it runs."""
    return jobs.job_defer(task_name=task_name, kwargs={})[0]


def enqueue_compliance_refresh(
    tenant_id: int | str | None = None, *, triggered_by: str = "manual", priority: int | None = None
) -> int:
    """Refresh one tenant's compliance scores (or every active tenant's); return the job id.

    ``tenant_id`` is the tenant's id or its slug, as everywhere in this module.
    A tenant that already has a refresh waiting gets that job's id back, not a second job.
    Priority as in BullMQ: 1 is the highest, larger is lower.
    """
    return compliance_refresh_defer(tenant_id, triggered_by=triggered_by, priority=priority)[0]


def compliance_refresh_defer(
    tenant_id: int | str | None = None, *, triggered_by: str = "manual", priority: int | None = None
) -> tuple[int, bool]:
    """``enqueue_compliance_refresh``, also saying whether the job is new (False: one was waiting)."""
    problems = compliance_refresh_problems(triggered_by=triggered_by, priority=priority)
    if len(problems) > 1:
        raise InvalidRefreshRequest(problems)
    if "triggered_by" in problems:
        raise InvalidTrigger(f"triggered_by {problems['triggered_by']}")
    jobs.priority_to_stored(priority)  # validate before touching the database
    if tenant_id is None:
        # The all-tenants fan-out has no queueing lock: each call is a new job.
        return jobs.job_defer(
            task_name="compliance.refresh_all",
            kwargs={"triggered_by": triggered_by, "priority": priority},
            priority=priority,
        )
    tenant = tenant_get(tenant_id)
    return jobs.job_defer(
        task_name=compliance_services.REFRESH_TASK,
        kwargs={"tenant_id": tenant.pk, "triggered_by": triggered_by},
        priority=priority,
        queueing_lock=compliance_services.REFRESH_LOCK.format(tenant_id=tenant.pk),
    )


def enqueue_expiry_check(tenant_id: int | str | None = None) -> int:
    """Check expiring documents for one tenant (or every active tenant); return the job id."""
    if tenant_id is None:
        return _fan_out_job("notifications.check_expiry_all")
    tenant = tenant_get(tenant_id)
    return jobs.job_defer(task_name=notification_services.EXPIRY_TASK, kwargs={"tenant_id": tenant.pk})[0]


def enqueue_filing_reminder(tenant_id: int | str | None = None) -> int:
    """Check upcoming filings for one tenant (or every active tenant); return the job id."""
    if tenant_id is None:
        return _fan_out_job("notifications.send_filing_reminders_all")
    tenant = tenant_get(tenant_id)
    return jobs.job_defer(task_name=notification_services.FILING_REMINDER_TASK, kwargs={"tenant_id": tenant.pk})[0]


def enqueue_email(
    *,
    recipient_email: str,
    recipient_name: str,
    subject: str,
    template: str,
    data: dict[str, Any],
    tenant_id: int,
    priority: str | None = None,
) -> int:
    """Queue one email (templates: document-expiry, filing-reminder, compliance-alert, custom);
    return its id (``get_email``, ``GET /api/v1/emails/{id}``, the outbound email admin).

    ``priority`` is ``urgent``, ``high``, ``normal`` (the default) or ``low``: urgent emails
    are sent before any other, and within a priority each firm gets its turn.
    """
    email = notification_services.email_enqueue(
        tenant_id=tenant_id,
        recipient_email=recipient_email,
        recipient_name=recipient_name,
        subject=subject,
        template=template,
        data=data,
        priority=priority,
    )
    return email.pk


def get_email(email_id: int) -> dict[str, Any]:
    """Where one queued email stands: its status, attempts, last error, whether its delivery is
    unknown, and when it was queued and sent. Raises ``UnknownEmail`` (a ``ValueError``)."""
    return notification_services.email_describe(email_id)


def get_queue_stats(name: str) -> dict[str, int]:
    """One queue's counts in BullMQ's shape (waiting, active, delayed, completed, failed, paused, cancelled)."""
    return jobs.get_queue_stats(name).as_dict()


def queue_state(name: str) -> dict[str, int | bool]:
    """One queue's counts in BullMQ's shape plus ``is_paused`` (BullMQ's ``queue.isPaused()``)."""
    stats = jobs.get_queue_stats(name)
    return {**stats.as_dict(), "is_paused": stats.is_paused}


def all_queue_states() -> dict[str, dict[str, int | bool]]:
    """``queue_state`` of the four queues, keyed by queue name."""
    return {
        name: {**stats.as_dict(), "is_paused": stats.is_paused} for name, stats in jobs.get_all_queue_stats().items()
    }


def get_all_queue_stats() -> dict[str, dict[str, int]]:
    """The four queues' counts in BullMQ's shape, keyed by queue name."""
    return {name: stats.as_dict() for name, stats in jobs.get_all_queue_stats().items()}
