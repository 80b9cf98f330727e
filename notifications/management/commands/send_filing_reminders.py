"""Send filing reminders now, or show who would get them (``--dry-run``)."""

from __future__ import annotations

from collections.abc import Callable

from notifications import reminders
from notifications.management.commands.check_expiry import ReminderCommand


class Command(ReminderCommand):
    help = (
        "Remind staff and assignees of draft or prepared filings crossing the firm's thresholds before they are "
        "effectively due (default 14, 7 and 3 days); each reminder once. --dry-run prints who would be told what "
        "and writes nothing."
    )
    what = "filing reminders"
    plan: Callable[..., reminders.ReminderPlan] = staticmethod(reminders.filing_reminders_plan)
    send: Callable[..., reminders.ReminderResult] = staticmethod(reminders.filing_reminders_send)
