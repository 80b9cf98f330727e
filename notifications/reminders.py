"""Expiry notifications and filing reminders, one tenant at a time.

Each run loads what is due with a constant number of queries (``notifications.selectors``),
lets the pure rules (``notifications.rules``) decide who is told what, and hands the
result to ``notifications_deliver``, which writes every notification, its email and
the email's send job in one transaction, at most once per dedupe key. A second run,
or two workers running the same job at once, therefore add nothing; a run after a
missed day sends what the missed day would have.

The ``*_plan`` functions are the same reads and rules without the write (``--dry-run``).
Thresholds are the tenant's own (``compliance/firm_settings.py``); filings count to their
effective due date (``compliance/calendars.py``). Each notification's data carries the
tenant-local day it was made for (``asOf``, which puts it in that day's digest) and, with
``KGC_APP_URL``, the link to its page in the web app (``url``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.conf import settings

from compliance import firm_settings
from compliance.models import Tenant
from notifications import rules, selectors
from notifications.links import AppRoutes, app_routes, item_url
from notifications.models import NotificationKind
from notifications.services import NotificationDraft, notifications_deliver

logger = logging.getLogger("notifications.reminders")


@dataclass(frozen=True)
class ReminderPlan:
    """What a run would send: the reminders to send, and the assignees left out.

    ``due`` counts every (object, person) with a threshold crossed, those already sent
    included; it is only worked out when the plan is asked to ``explain`` (``--dry-run``).
    """

    tenant: Tenant
    kind: str
    as_of: date
    candidates: int = 0
    reminders: list[rules.Reminder] = field(default_factory=list)
    skipped_assignees: list[rules.SkippedAssignee] = field(default_factory=list)
    due: int | None = None

    @property
    def already_sent(self) -> int | None:
        return None if self.due is None else self.due - len(self.reminders)


@dataclass(frozen=True)
class ReminderResult:
    tenant_id: int
    kind: str
    as_of: date
    candidates: int = 0
    due: int = 0
    notifications: int = 0
    emails: int = 0  # emailed now, one each
    digest_pending: int = 0  # waiting for the person's daily digest
    opted_out: int = 0  # in-app only: the person turned this kind's email off
    suppressed: int = 0  # in-app only: the address bounced or complained
    duplicates: int = 0
    skipped_assignees: int = 0
    items_skipped: int = 0  # reminders the database refused (logged one by one)

    def summary(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "kind": str(self.kind),
            "as_of": self.as_of.isoformat(),
            "candidates": self.candidates,
            "due": self.due,
            "notifications": self.notifications,
            "emails": self.emails,
            "digest_pending": self.digest_pending,
            "opted_out": self.opted_out,
            "suppressed": self.suppressed,
            "duplicates": self.duplicates,
            "skipped_assignees": self.skipped_assignees,
            "items_skipped": self.items_skipped,
        }


def expiry_reminders_plan(*, tenant: Tenant, as_of: date, explain: bool = False) -> ReminderPlan:
    """The document-expiry reminders due for ``tenant`` on its local date ``as_of``; writes nothing.

    Three queries (members, documents, keys already sent); none for an inactive tenant.
    ``explain`` also counts the reminders due whether or not they were sent (a second,
    query-free pass of the rules).
    """
    kind = NotificationKind.DOCUMENT_EXPIRY
    if not tenant.is_active:
        return ReminderPlan(tenant=tenant, kind=kind, as_of=as_of)
    thresholds = firm_settings.expiry_days(tenant)
    members = rules.expiry_recipients(selectors.members_active(tenant=tenant))
    documents = selectors.documents_expiring(tenant=tenant, as_of=as_of, horizon=max(thresholds)) if members else []
    keys = rules.dedupe_keys_possible(
        kind=kind,
        objects=[(d.document_id, d.expires_on) for d in documents],
        thresholds=rules.thresholds_looked_up(thresholds, kind=kind),
        recipient_ids=[p.user_id for p in members],
    )
    sent_keys = selectors.dedupe_keys_sent(tenant=tenant, keys=keys)

    def due_with(sent: frozenset[str]) -> list[rules.Reminder]:
        return rules.expiry_reminders(
            documents=documents,
            members=members,
            sent_keys=sent,
            tenant_name=tenant.name,
            as_of=as_of,
            thresholds=thresholds,
        )

    reminders = due_with(sent_keys)
    due = len(due_with(frozenset())) if explain else None
    return ReminderPlan(tenant=tenant, kind=kind, as_of=as_of, candidates=len(documents), reminders=reminders, due=due)


def filing_reminders_plan(*, tenant: Tenant, as_of: date, explain: bool = False) -> ReminderPlan:
    """The filing reminders due for ``tenant`` on its local date ``as_of``; writes nothing.

    Four queries (members, filings, their tasks, keys already sent); none for an inactive tenant.
    ``explain`` as for ``expiry_reminders_plan``.
    """
    kind = NotificationKind.FILING_REMINDER
    if not tenant.is_active:
        return ReminderPlan(tenant=tenant, kind=kind, as_of=as_of)
    thresholds = firm_settings.filing_days(tenant)
    members = selectors.members_active(tenant=tenant)
    filings = selectors.filings_upcoming(tenant=tenant, as_of=as_of, horizon=max(thresholds))
    member_ids = {p.user_id for p in members}
    recipient_ids = {p.user_id for p in members if p.role in rules.FILING_ROLES}
    recipient_ids |= {a.user_id for f in filings for a in f.assignments if a.user_id in member_ids}
    keys = rules.dedupe_keys_possible(
        kind=kind,
        objects=[(f.filing_id, f.due_date) for f in filings],
        thresholds=rules.thresholds_looked_up(thresholds, kind=kind),
        recipient_ids=sorted(recipient_ids),
    )
    sent_keys = selectors.dedupe_keys_sent(tenant=tenant, keys=keys)

    def due_with(sent: frozenset[str]) -> tuple[list[rules.Reminder], list[rules.SkippedAssignee]]:
        return rules.filing_reminders(
            filings=filings,
            members=members,
            sent_keys=sent,
            tenant_name=tenant.name,
            as_of=as_of,
            thresholds=thresholds,
        )

    reminders, skipped = due_with(sent_keys)
    due = len(due_with(frozenset())[0]) if explain else None
    return ReminderPlan(
        tenant=tenant,
        kind=kind,
        as_of=as_of,
        candidates=len(filings),
        reminders=reminders,
        skipped_assignees=skipped,
        due=due,
    )


def filing_escalations_plan(*, tenant: Tenant, as_of: date, explain: bool = False) -> ReminderPlan:
    """The escalations of overdue, unfiled filings due for ``tenant`` on its local date ``as_of``;
    writes nothing. Four queries (members, filings, their assignees, keys already sent).
    """
    kind = NotificationKind.FILING_ESCALATION
    if not tenant.is_active:
        return ReminderPlan(tenant=tenant, kind=kind, as_of=as_of)
    every = settings.KGC_ESCALATION_EVERY_DAYS
    members = rules.escalation_recipients(selectors.members_active(tenant=tenant))
    filings = selectors.filings_overdue(tenant=tenant, as_of=as_of) if members else []
    keys = [
        rules.dedupe_key(kind=kind, object_id=f.filing_id, on=f.due.effective, threshold=step, recipient_id=p.user_id)
        for f in filings
        if (step := rules.escalation_step(days_overdue=(as_of - f.due.effective).days, every_days=every)) is not None
        for p in members
    ]
    sent_keys = selectors.dedupe_keys_sent(tenant=tenant, keys=keys)

    def due_with(sent: frozenset[str]) -> list[rules.Reminder]:
        return rules.filing_escalations(
            filings=filings, members=members, sent_keys=sent, tenant_name=tenant.name, as_of=as_of, every_days=every
        )

    reminders = due_with(sent_keys)
    due = len(due_with(frozenset())) if explain else None
    return ReminderPlan(tenant=tenant, kind=kind, as_of=as_of, candidates=len(filings), reminders=reminders, due=due)


def filing_escalations_send(*, tenant: Tenant, as_of: date) -> ReminderResult:
    """Tell the tenant's admins and managers about each filing past its effective due date and not
    filed: on its first overdue day, then every ``KGC_ESCALATION_EVERY_DAYS`` until it is filed.

    URGENT: emailed at once, never held for a digest, unless the person turned the kind off.
    Each (filing, step, person) once and only once; ``as_of`` is the tenant's local date.
    """
    return _send(filing_escalations_plan(tenant=tenant, as_of=as_of))


def expiry_reminders_send(*, tenant: Tenant, as_of: date) -> ReminderResult:
    """Notify the tenant's admins, managers and compliance officers of documents crossing 30, 14 or 7 days left.

    Each (document, threshold, person) is notified, and emailed, once and only once;
    ``as_of`` is the tenant's local date. Safe to run again or concurrently.
    """
    return _send(expiry_reminders_plan(tenant=tenant, as_of=as_of))


def filing_reminders_send(*, tenant: Tenant, as_of: date) -> ReminderResult:
    """Remind staff and assignees of draft or prepared filings crossing 14, 7 or 3 days before they are due.

    Each (filing, threshold, person) is notified, and emailed, once and only once;
    an assignee who is not an active member of the tenant is skipped and logged.
    ``as_of`` is the tenant's local date. Safe to run again or concurrently.
    """
    return _send(filing_reminders_plan(tenant=tenant, as_of=as_of))


def _send(plan: ReminderPlan) -> ReminderResult:
    for skipped in plan.skipped_assignees:
        logger.warning(
            "filing assignee is not an active member of the tenant: not notified",
            extra={
                "event": "reminder_assignee_skipped",
                "tenant_id": plan.tenant.pk,
                "filing_id": skipped.filing_id,
                "user_id": skipped.user_id,
            },
        )
    routes = app_routes()
    delivered = notifications_deliver(
        tenant=plan.tenant, drafts=[_draft(r, routes=routes, tenant_id=plan.tenant.pk) for r in plan.reminders]
    )
    result = ReminderResult(
        tenant_id=plan.tenant.pk,
        kind=plan.kind,
        as_of=plan.as_of,
        candidates=plan.candidates,
        due=len(plan.reminders),
        notifications=delivered.notifications,
        emails=delivered.emails,
        digest_pending=delivered.digest_pending,
        opted_out=delivered.opted_out,
        suppressed=delivered.suppressed,
        duplicates=delivered.duplicates,
        skipped_assignees=len(plan.skipped_assignees),
        items_skipped=len(delivered.skipped),
    )
    logger.debug("reminders sent", extra={"event": "reminders_sent", **result.summary()})
    return result


def _draft(reminder: rules.Reminder, *, routes: AppRoutes, tenant_id: int) -> NotificationDraft:
    url = item_url(routes=routes, kind=reminder.kind, data=reminder.data, tenant_id=tenant_id)
    return NotificationDraft(
        recipient_id=reminder.recipient.user_id,
        recipient_email=reminder.recipient.email,
        recipient_name=reminder.recipient.name,
        kind=reminder.kind,
        title=reminder.title,
        body=reminder.body,
        dedupe_key=reminder.dedupe_key,
        email_template=reminder.email_template,
        email_subject=reminder.email_subject,
        data={**reminder.data, "url": url} if url else reminder.data,
        urgency=reminder.urgency,
    )
