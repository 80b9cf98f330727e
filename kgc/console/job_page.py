"""A job's page: its attempts with their tracebacks, its return value and events, and its retry
and cancel buttons.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from procrastinate.contrib.django.models import ProcrastinateEvent, ProcrastinateJob

from kgc.console import display
from kgc.console.actions import JobActions
from kgc.console.job_rows import _state_of, _times, jobs_annotated, jobs_described, tenant_cell, worker_text
from kgc.queue import jobs
from kgc.queue.models import JobFailure, JobResult
from kgc.queues import QUEUES


class JobPage(JobActions):
    """A job's page, and the URLs of its retry and cancel buttons (``JobAdmin`` serves both screens)."""

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:job_id>/retry/", wrap(self.retry_view), name="kgc_job_retry"),
            path("<int:job_id>/cancel/", wrap(self.cancel_view), name="kgc_job_cancel"),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        job = jobs_annotated(self.get_queryset(request)).filter(pk=object_id).first() if object_id.isdigit() else None
        if job is None or not self.has_view_or_change_permission(request, job):
            raise Http404(f"no job with id {object_id}") if job is None else PermissionDenied
        jobs_described([job])
        failures = list(JobFailure.objects.filter(job_id=job.pk).order_by("failed_at", "id"))
        numbered = display.attempts_numbered([failure.will_retry for failure in failures])
        events = ProcrastinateEvent.objects.filter(job_id=job.pk).order_by("at", "id")
        result = JobResult.objects.filter(job_id=job.pk).first()
        context = {
            **self.admin_site.each_context(request),
            "title": f"Job {job.pk}: {job.task_name}",
            "opts": self.opts,
            "original": job,
            "job": job,
            "state": _state_of(job),
            "times": _times(job),
            "duration": display.duration_format(_times(job).duration_seconds),
            "priority": display.priority_text(job.priority),
            "tenant": tenant_cell(job.tenant_shown, width=80),
            "worker": worker_text(job.worker_shown),
            "default_priority": jobs.DEFAULT_PRIORITY,
            "args_json": json.dumps(job.args, indent=2, sort_keys=True),
            "result": result,
            "result_json": json.dumps(result.value, indent=2, sort_keys=True) if result else None,
            "attempts": [
                (view, failure, display.traceback_blocks(failure.traceback))
                for view, failure in zip(numbered, failures, strict=True)
            ],
            "events": events,
            "max_attempts": QUEUES[job.queue_name].retry.max_attempts if job.queue_name in QUEUES else None,
            "may_act": request.user.has_perm("procrastinate.change_procrastinatejob"),
        }
        return TemplateResponse(request, "admin/kgc/job_detail.html", context)

    def _job_or_404(self, job_id: int) -> ProcrastinateJob:
        job = ProcrastinateJob.objects.filter(pk=job_id).first()
        if job is None:
            raise Http404(f"no job with id {job_id}")
        return job

    def retry_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        return self._single_action(request, job_id, "retry")

    def cancel_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        return self._single_action(request, job_id, "cancel")

    def _single_action(self, request: HttpRequest, job_id: int, verb: str) -> HttpResponse:
        if not request.user.has_perm("procrastinate.change_procrastinatejob"):
            raise PermissionDenied
        job = self._job_or_404(job_id)
        queryset = ProcrastinateJob.objects.filter(pk=job.pk)
        if request.method == "POST":
            if verb == "retry":
                self.retry_jobs(request, queryset, confirmed=True, single=True)
            else:
                self.cancel_jobs(request, queryset, confirmed=True)
            return HttpResponseRedirect(reverse("admin:procrastinate_procrastinatejob_change", args=[job.pk]))
        return self._action_confirm(request, queryset, verb, single=True)
