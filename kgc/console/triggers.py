"""Manual triggers in the admin: run a job for each selected tenant now.

"Refresh compliance now", "Check expiries now", "Send filing reminders now" on tenants (and
the refresh on clients, through their tenants). Each goes through ``kgc/job_helpers.py``
like any other caller, asks for confirmation first, and reports the jobs with a link to
them in the jobs list. Each tenant is deferred on its own: one that cannot be (inactive
since the page was shown) is reported and the others still go.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from compliance.models import Tenant
from kgc import job_helpers
from kgc.texts import counted

CONFIRM_LISTED = 100
JOBS_CHANGELIST = "admin:procrastinate_procrastinatejob_changelist"


@dataclass(frozen=True)
class Trigger:
    label: str  # the action's name: "Refresh compliance now"
    job: str  # what each tenant gets: "a compliance refresh"
    explains: str  # what the job does, for the confirmation page
    defer: Callable[[int, str], tuple[int, bool]]  # (tenant id, who) → (job id, created)


def _refresh(tenant_id: int, who: str) -> tuple[int, bool]:
    # Priority 1: a refresh asked for by hand starts before the nightly fan-out's jobs.
    return job_helpers.compliance_refresh_defer(tenant_id, triggered_by=who, priority=1)


REFRESH = Trigger(
    label="Refresh compliance now",
    job="a compliance refresh",
    explains="Each tenant's clients are scored again by the compliance workers, before the nightly refresh's jobs.",
    defer=_refresh,
)
EXPIRY_CHECK = Trigger(
    label="Check expiries now",
    job="an expiry check",
    explains="Each tenant's documents expiring within 30 days are checked; reminders already sent are not repeated.",
    defer=lambda tenant_id, who: (job_helpers.enqueue_expiry_check(tenant_id), True),
)
FILING_REMINDERS = Trigger(
    label="Send filing reminders now",
    job="a filing-reminder run",
    explains="Each tenant's filings due within 14 days are checked; reminders already sent are not repeated.",
    defer=lambda tenant_id, who: (job_helpers.enqueue_filing_reminder(tenant_id), True),
)


@dataclass
class TriggerResult:
    created: list[int] = field(default_factory=list)
    already_waiting: list[int] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # tenant → why

    @property
    def job_ids(self) -> list[int]:
        return [*self.created, *self.already_waiting]


def triggers_run(*, trigger: Trigger, tenants: Iterable[Tenant], who: str) -> TriggerResult:
    """Defer ``trigger``'s job for each tenant, each in its own transaction."""
    result = TriggerResult()
    for tenant in tenants:
        try:
            with transaction.atomic():
                job_id, created = trigger.defer(tenant.pk, who)
        except ValueError as exc:  # the job helpers' errors: an inactive or unknown tenant
            result.refused[tenant.slug] = str(exc)
            continue
        (result.created if created else result.already_waiting).append(job_id)
    return result


def trigger_action(
    model_admin: Any,
    request: HttpRequest,
    *,
    trigger: Trigger,
    tenants: list[Tenant],
    note: str = "",
) -> TemplateResponse | None:
    """An admin action: the confirmation page first, then the jobs and a message linking to them."""
    if request.POST.get("confirm") != "yes":
        return _confirmation(model_admin, request, trigger=trigger, tenants=tenants, note=note)
    who = f"admin:{request.user.get_username()}"[: job_helpers.TRIGGERED_BY_MAX]
    result = triggers_run(trigger=trigger, tenants=tenants, who=who)
    if result.job_ids:
        LogEntry.objects.log_actions(
            user_id=request.user.pk,  # type: ignore[arg-type]  # admin actions run for a logged-in user
            queryset=Tenant.objects.filter(pk__in=[t.pk for t in tenants]).exclude(slug__in=result.refused),
            action_flag=CHANGE,
            change_message=f"{trigger.label} (jobs {', '.join(map(str, result.job_ids))})",
        )
        model_admin.message_user(request, _report(trigger, result), messages.SUCCESS)
    for slug, reason in result.refused.items():
        model_admin.message_user(request, f"{trigger.label}: tenant {slug} skipped: {reason}", messages.WARNING)
    return None


def _report(trigger: Trigger, result: TriggerResult) -> str:
    url = reverse(JOBS_CHANGELIST) + "?id__in=" + ",".join(map(str, result.job_ids))
    waiting = (
        f"; {counted(len(result.already_waiting), 'tenant')} had one waiting already" if result.already_waiting else ""
    )
    return format_html(
        '{}: queued {} for {}{}. <a href="{}">See the jobs</a>.',
        trigger.label,
        trigger.job,
        counted(len(result.created), "tenant"),
        waiting,
        url,
    )


def _confirmation(
    model_admin: Any, request: HttpRequest, *, trigger: Trigger, tenants: list[Tenant], note: str
) -> TemplateResponse:
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"{trigger.label}?",
        "opts": model_admin.opts,
        "trigger": trigger,
        "tenants": tenants[:CONFIRM_LISTED],
        "more": max(len(tenants) - CONFIRM_LISTED, 0),
        "count": len(tenants),
        "note": note,
        "selected_ids": request.POST.getlist(ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "action": request.POST.get("action", ""),
        "cancel_url": request.get_full_path(),
    }
    return TemplateResponse(request, "admin/kgc/trigger_confirm.html", context)
