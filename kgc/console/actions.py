"""What the console's actions share: the admin log, and the retry and cancel of jobs (from the
jobs list and from a job's page).
"""

from __future__ import annotations

from typing import cast

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from procrastinate.contrib.django import app as procrastinate_app
from procrastinate.contrib.django.models import ProcrastinateJob

from kgc.console.job_rows import _state_of, jobs_annotated
from kgc.queue import jobs
from kgc.texts import counted


def _user_id(request: HttpRequest) -> int:
    return cast(int, request.user.pk)  # admin views only run for a logged-in staff user


def _log(
    request: HttpRequest, *, model: type[models.Model], object_id: str, text: str, flag: int, message: str
) -> None:
    """An admin-log entry for an action on something that is not (or no longer) one row."""
    LogEntry.objects.create(
        user_id=_user_id(request),
        content_type=ContentType.objects.get_for_model(model, for_concrete_model=False),
        object_id=object_id,
        object_repr=text[:200],
        action_flag=flag,
        change_message=message,
    )


class JobActions(admin.ModelAdmin):
    """The jobs' retry and cancel actions: the jobs list's bulk actions, and the job page's buttons."""

    @admin.action(description="Retry selected failed jobs", permissions=["change"])
    def retry_jobs(
        self, request: HttpRequest, queryset: QuerySet, confirmed: bool = False, single: bool = False
    ) -> HttpResponse | None:
        if not (confirmed or request.POST.get("confirm") == "yes"):
            return self._action_confirm(request, queryset, "retry")
        retried = []
        failed = list(queryset.filter(status="failed").values_list("pk", flat=True))
        # A bulk retry leaves out what a hold keeps back (a send job whose email may have
        # reached its recipient); the job's own page retries it on purpose.
        held = set() if single else jobs.retry_held_job_ids(failed)
        for job_id in (job_id for job_id in failed if job_id not in held):
            try:
                with transaction.atomic():
                    retried.append(jobs.retry_job(job_id))
            except jobs.JobError:  # retried or deleted since the page was shown
                continue
        self._report(request, retried, verb="Retried", only="failed")
        if held:
            self.message_user(
                request,
                f"{len(held)} left out: {' / '.join(h.description for h in jobs.retry_holds())}.",
                messages.WARNING,
            )
        return None

    @admin.action(description="Cancel selected waiting jobs", permissions=["change"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet, confirmed: bool = False) -> HttpResponse | None:
        if not (confirmed or request.POST.get("confirm") == "yes"):
            return self._action_confirm(request, queryset, "cancel")
        # procrastinate's own cancel: only a job still waiting ('todo') is cancelled.
        cancelled = [
            job_id
            for job_id in queryset.filter(status="todo").values_list("pk", flat=True)
            if procrastinate_app.job_manager.cancel_job_by_id(job_id)
        ]
        self._report(request, cancelled, verb="Cancelled", only="waiting")
        return None

    def _report(self, request: HttpRequest, job_ids: list[int], *, verb: str, only: str) -> None:
        """Say what was done and record it in the admin log, one entry per job."""
        if not job_ids:
            self.message_user(request, f"Nothing {verb.lower()}: only {only} jobs can be.", messages.WARNING)
            return
        LogEntry.objects.log_actions(
            user_id=_user_id(request),
            queryset=ProcrastinateJob.objects.filter(pk__in=job_ids),
            action_flag=CHANGE,
            change_message=f"{verb} from the jobs console",
        )
        shown = ", ".join(str(job_id) for job_id in job_ids[:20]) + (", …" if len(job_ids) > 20 else "")
        self.message_user(
            request,
            f"{verb} {counted(len(job_ids), only + ' job')}: {shown}.",
            messages.SUCCESS,
        )

    def _action_confirm(
        self, request: HttpRequest, queryset: QuerySet, verb: str, *, single: bool = False
    ) -> TemplateResponse:
        eligible_status = "failed" if verb == "retry" else "todo"
        selected = list(jobs_annotated(queryset).order_by("-pk")[:101])
        eligible = [job for job in selected if job.status == eligible_status]
        context = {
            **self.admin_site.each_context(request),
            "title": f"{verb.capitalize()} jobs?",
            "opts": self.opts,
            "verb": verb,
            "single": single,
            "jobs": [(job, _state_of(job)) for job in selected[:100]],
            "more": len(selected) > 100,
            "eligible_count": len(eligible),
            "eligible_status": "failed" if verb == "retry" else "waiting",
            "selected_ids": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action": request.POST.get("action", ""),
            "query_string": request.GET.urlencode(),
        }
        return TemplateResponse(request, "admin/kgc/job_action_confirm.html", context)
