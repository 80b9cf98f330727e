"""Escalate overdue filings now, or show who would be told (``--dry-run``)."""

from __future__ import annotations

from collections.abc import Callable

from notifications import reminders
from notifications.management.commands.check_expiry import ReminderCommand


class Command(ReminderCommand):
    help = (
        "Tell admins and managers of each filing past its effective due date and not filed: on its first overdue "
        "day, then every KGC_ESCALATION_EVERY_DAYS days; each once. --dry-run prints who would be told what and "
        "writes nothing."
    )
    what = "overdue filing escalations"
    step = "escalation of day {threshold} overdue"
    plan: Callable[..., reminders.ReminderPlan] = staticmethod(reminders.filing_escalations_plan)
    send: Callable[..., reminders.ReminderResult] = staticmethod(reminders.filing_escalations_send)
