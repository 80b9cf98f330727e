"""The jobs list.

Jobs replace procrastinate's read-only screen: the dashboard's state names, filters and
search that stay fast on a table of millions (counts stop at 10,000 and estimate
beyond), each attempt's exception and traceback opened at the project's own frames,
the return value, the event timeline, and the retry and cancel actions.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any, cast

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from procrastinate.contrib.django import app as procrastinate_app
from procrastinate.contrib.django.models import ProcrastinateJob

from kgc.console import display
from kgc.console.filters import FinishedFilter, JobTenantFilter, QueueFilter, StateFilter, TaskFilter
from kgc.console.job_page import JobPage
from kgc.console.job_rows import _moment, _state_of, _times, jobs_annotated, jobs_described, tenant_cell, worker_text
from kgc.texts import counted

# --- Jobs -------------------------------------------------------------------------------------


class EstimatedCount(int):
    """A row count past the exact limit: PostgreSQL's estimate, shown as "about 850,000"."""

    def __str__(self) -> str:
        return f"about {int(self):,}"


class EstimatedCountPaginator(Paginator):
    """Never counts a big table in full. Up to ``EXACT_UP_TO`` rows the count is exact (a
    count that stops one row past the limit); beyond, it is PostgreSQL's estimate: the
    table's row estimate (``pg_class.reltuples``) unfiltered, the planner's estimate of the
    filtered query otherwise."""

    EXACT_UP_TO = 10_000

    @cached_property
    def count(self) -> int:
        queryset = cast(QuerySet, self.object_list)
        if not queryset.query.where:
            estimate = _table_estimate(queryset.model._meta.db_table)
            if estimate > self.EXACT_UP_TO:
                return EstimatedCount(estimate)
        # Newest first, as the list shows them: a filter on recent activity matches at once
        # that way, where a scan from the oldest jobs would read most of the table first.
        found = queryset.order_by("-pk").values("pk")[: self.EXACT_UP_TO + 1].count()
        if found <= self.EXACT_UP_TO:
            return found
        return EstimatedCount(max(_plan_estimate(queryset), self.EXACT_UP_TO + 1))


def _table_estimate(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
        row = cursor.fetchone()
    return int(row[0]) if row else -1


def _plan_estimate(queryset: QuerySet) -> int:
    """The planner's estimate of how many rows the query returns (EXPLAIN, not running it)."""
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


admin.site.unregister(ProcrastinateJob)


class JobChangeList(ChangeList):
    """The jobs list, whose page alone gets ``jobs_annotated``'s columns.

    PostgreSQL computes a row's columns before an OFFSET skips it: annotating the list's
    query made page 50 look up the times and errors of 5,000 jobs to show 100.
    """

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        page_ids = list(self.result_list.values_list("pk", flat=True))
        rows = list(jobs_annotated(self.model._default_manager.filter(pk__in=page_ids)).order_by("-pk"))
        jobs_described(rows)  # tenants' names, workers' hosts: two queries for the page
        self.result_list = rows


@admin.register(ProcrastinateJob)
class JobAdmin(JobPage):
    # Fits a 1280-pixel screen beside the filters: the queue (and attempts past the first)
    # under the task, the worker under the state, the run's duration under its start.
    list_display = [
        "id",
        "task",
        "state",
        "tenant",
        "queued",
        "started",
        "finished",
        "last_error",
    ]
    list_display_links = ["id", "task"]
    # Always newest first: sorting a table of millions by another column would scan it all.
    sortable_by = ()
    list_filter = [QueueFilter, StateFilter, TaskFilter, JobTenantFilter, FinishedFilter]
    search_fields = ["task_name"]
    search_help_text = "A job id, or part of a task name."
    ordering = ["-id"]
    list_per_page = 100
    list_max_show_all = 100  # never "show all" of an unknown number of rows
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    actions = ["retry_jobs", "cancel_jobs"]
    change_list_template = "admin/kgc/job_list.html"

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return JobChangeList

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # procrastinate's model is "procrastinate job"; its names are part of its migration state.
        return super().changelist_view(request, {"title": "Jobs", "module_name": "jobs", **(extra_context or {})})

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Paginator:
        return EstimatedCountPaginator(queryset, per_page, orphans, allow_empty_first_page)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        """A job id, or part of a task name: matched against the declared tasks first, so the
        query is an equality on task_name rather than a substring scan of every row."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.isdigit():
            return queryset.filter(pk=int(term)), False
        names = [name for name in procrastinate_app.tasks if term.lower() in name.lower()]
        if names:
            return queryset.filter(task_name__in=names), False
        return queryset.filter(task_name__icontains=term), False

    # --- Columns --------------------------------------------------------------------------

    @admin.display(description="state and worker")
    def state(self, job: ProcrastinateJob) -> SafeString:
        # The worker that runs or ran it under its state, on a second line (no column more).
        state = _state_of(job)
        worker = getattr(job, "worker_shown", None)
        if worker is None:
            return format_html('<span class="kgc-state kgc-state-{}">{}</span>', state, state)
        return format_html(
            '<span class="kgc-state kgc-state-{}">{}</span><br>'
            '<span class="kgc-muted kgc-small kgc-nowrap" title="{}">worker {}</span>',
            state,
            state,
            worker_text(worker),
            worker.id,
        )

    @admin.display(description="task and queue")
    def task(self, job: ProcrastinateJob) -> SafeString:
        queue = job.queue_name if job.attempts < 2 else f"{job.queue_name} · {counted(job.attempts, 'attempt')}"
        return format_html(
            '{}<br><span class="kgc-muted kgc-small">{}</span>', display.truncated(job.task_name, 28), queue
        )

    @admin.display(description="tenant")
    def tenant(self, job: ProcrastinateJob) -> SafeString | str:
        return tenant_cell(getattr(job, "tenant_shown", None), width=22)

    @admin.display(description="queued")
    def queued(self, job: ProcrastinateJob) -> SafeString | str:
        return _moment(_times(job).queued_at)

    @admin.display(description="started")
    def started(self, job: ProcrastinateJob) -> SafeString | str:
        times = _times(job)
        if times.duration_seconds is None:
            return _moment(times.started_at)
        took = display.duration_format(times.duration_seconds)
        return format_html('{}<br><span class="kgc-muted kgc-small">ran {}</span>', _moment(times.started_at), took)

    @admin.display(description="finished")
    def finished(self, job: ProcrastinateJob) -> SafeString | str:
        return _moment(_times(job).finished_at)

    @admin.display(description="last error")
    def last_error(self, job: ProcrastinateJob) -> SafeString | str:
        kind = getattr(job, "last_error_type", None)
        if not kind:
            return "-"
        return display.truncated(f"{kind.rsplit('.', 1)[-1]}: {getattr(job, 'last_error_message', '')}", 26)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
