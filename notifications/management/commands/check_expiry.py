"""Send document-expiry notifications now, or show who would get them (``--dry-run``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from compliance.exceptions import UnknownTenant
from compliance.models import Tenant
from compliance.selectors import tenant_get, tenant_local_date
from kgc.commands import ProjectCommand, iso_date
from kgc.texts import counted
from notifications import reminders


class ReminderCommand(ProjectCommand):
    """One reminder service over one tenant or every active tenant (shared by both reminder commands)."""

    what = "document-expiry notifications"
    step = "{threshold}-day reminder"
    plan: Callable[..., reminders.ReminderPlan] = staticmethod(reminders.expiry_reminders_plan)
    send: Callable[..., reminders.ReminderResult] = staticmethod(reminders.expiry_reminders_send)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="tenant id or slug (default: every active tenant)")
        parser.add_argument("--as-of", type=iso_date, help="YYYY-MM-DD to check for (default: each tenant's today)")
        parser.add_argument("--dry-run", action="store_true", help="print who would be told what; write nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = tenant_get(options["tenant"]) if options["tenant"] is not None else None
        except UnknownTenant as exc:
            raise CommandError(str(exc), returncode=2) from None
        as_of: date | None = options["as_of"]
        tenants = [tenant] if tenant else list(Tenant.objects.filter(is_active=True).order_by("pk"))
        now = timezone.now()
        progress = tqdm(tenants, unit="tenant", disable=options["verbosity"] == 0 or len(tenants) < 2)
        if options["dry_run"]:
            self._dry_run(progress, as_of, now)
        else:
            self._send(progress, as_of, now)

    def _dry_run(self, tenants: Any, as_of: date | None, now: Any) -> None:
        due = sent = to_send = 0
        for tenant in tenants:
            plan = type(self).plan(tenant=tenant, as_of=as_of or tenant_local_date(tenant, now), explain=True)
            for reminder in plan.reminders:
                person = reminder.recipient
                self.stdout.write(
                    f"{tenant.slug} {plan.as_of}: {person.name} <{person.email}> ({person.role}) "
                    f"← [{reminder.urgency}] {reminder.title} ({self.step.format(threshold=reminder.threshold)})"
                )
            for skipped in plan.skipped_assignees:
                self.stdout.write(
                    f"{tenant.slug} {plan.as_of}: assignee user {skipped.user_id} of filing {skipped.filing_id} "
                    "skipped: not an active member of this tenant"
                )
            due += plan.due or 0
            sent += plan.already_sent or 0
            to_send += len(plan.reminders)
        self.stdout.write(
            f"Dry run: {due} {self.what} due, {sent} of them already sent, {to_send} to be sent; nothing was written"
        )

    def _send(self, tenants: Any, as_of: date | None, now: Any) -> None:
        count = notifications = emails = duplicates = skipped = 0
        for tenant in tenants:
            result = type(self).send(tenant=tenant, as_of=as_of or tenant_local_date(tenant, now))
            count += 1
            notifications += result.notifications
            emails += result.emails
            duplicates += result.duplicates
            skipped += result.skipped_assignees
        line = (
            f"{self.what.capitalize()} for {counted(count, 'tenant')} on {as_of or 'each tenant’s today'}: "
            f"{counted(notifications, 'notification')} and {counted(emails, 'email')} created, "
            f"{duplicates} already sent"
        )
        if skipped:
            line += f", {counted(skipped, 'assignee')} skipped (not active members)"
        self.stdout.write(line)


class Command(ReminderCommand):
    help = (
        "Notify admins, managers and compliance officers of documents crossing the firm's thresholds before expiry "
        "(default 30, 14 and 7 days); each reminder once. --dry-run prints who would be told what and writes nothing."
    )
