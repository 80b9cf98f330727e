"""The operator console: the queue dashboard and the jobs screens, in the Django admin.

The dashboard is the changelist of ``QueuePause`` (one row per paused queue, so the
model the pause and resume buttons write): per queue its counts, oldest waiting job,
pause flag, concurrency, rate-limit use, throughput and failure rate, refreshed every
few seconds from a JSON endpoint; a chart of jobs finished over the last day (one
series per queue on request); the workers with their process, duties, lease and
running jobs; the periodic schedules. Every action asks for confirmation on a page of
its own, reports what it did and leaves an entry in the admin log with the user who
did it.

Jobs replace procrastinate's read-only screen: the dashboard's state names, filters and
search that stay fast on a table of millions (counts stop at 10,000 and estimate
beyond), each attempt's exception and traceback opened at the project's own frames,
the return value, the event timeline, and the retry and cancel actions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.admin.views.main import ChangeList
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection, models, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from procrastinate.contrib.django import app as procrastinate_app
from procrastinate.contrib.django.models import ProcrastinateEvent, ProcrastinateJob

from kgc.commands import age as parse_age
from kgc.console import display as console
from kgc.console import metrics, selectors
from kgc.queue import health, jobs
from kgc.queue.models import JobFailure, JobResult, QueuePause
from kgc.queues import QUEUES, UnknownQueue, product_queues, queue_get

AUTO_REFRESH_SECONDS = 5
CHART_WIDTH = 864  # 288 five-minute buckets, 3 units each; the drawing stretches to the page's width
CHART_HEIGHT = 140
JOBS_CHANGELIST = "admin:procrastinate_procrastinatejob_changelist"


# --- Pure helpers -------------------------------------------------------------------------


@dataclass(frozen=True)
class ChartBar:
    x: int
    completed_y: float
    completed_height: float
    failed_y: float
    failed_height: float
    label: str


def chart_bars(buckets: Sequence[metrics.FinishedBucket], *, width: int, height: int) -> list[ChartBar]:
    """One stacked bar per bucket (completed below, failed above), scaled to the busiest bucket."""
    if not buckets:
        return []
    step = width // len(buckets)
    peak = max((b.completed + b.failed for b in buckets), default=0) or 1
    bars = []
    for index, bucket in enumerate(buckets):
        completed = round(bucket.completed * height / peak, 2)
        failed = round(bucket.failed * height / peak, 2)
        bars.append(
            ChartBar(
                x=index * step,
                completed_y=round(height - completed, 2),
                completed_height=completed,
                failed_y=round(height - completed - failed, 2),
                failed_height=failed,
                label=f"{bucket.start:%H:%M} UTC: {bucket.completed} completed, {bucket.failed} failed",
            )
        )
    return bars


def chart_ticks(buckets: Sequence[metrics.FinishedBucket], *, width: int, every: int = 36) -> list[tuple[int, str]]:
    """An hour label every ``every`` buckets (3 hours of 5 minutes)."""
    step = width // max(len(buckets), 1)
    return [(index * step, f"{bucket.start:%H:%M}") for index, bucket in enumerate(buckets) if index % every == 0]


def activity_as_dict(activity: selectors.QueueActivity) -> dict[str, Any]:
    """A queue's capacity and throughput as the dashboard shows them (the poll's fields)."""
    return {
        "concurrency": activity.concurrency,
        "rate_limit": activity.rate_limit_text,
        "rate_limit_used": round(activity.window_used_ratio, 3),
        "per_minute_5": console.rate_format(activity.per_minute_5),
        "per_minute_60": console.rate_format(activity.per_minute_60),
        "failure_rate": console.percent_format(activity.failure_rate),
    }


def dashboard_data(*, now: datetime) -> dict[str, Any]:
    """What the dashboard's poll refreshes: queues and workers."""
    activity = selectors.queue_activity(now=now)
    return {
        "now": now.isoformat(timespec="seconds"),
        "queues": {
            queue.name: {
                **metrics.overview_as_dict(queue),
                "oldest_waiting": metrics.age_format(queue.oldest_waiting_seconds),
                **activity_as_dict(activity[queue.name]),
            }
            for queue in metrics.queues_overview(now=now)
        },
        "workers_alive": len(health.cluster_read().alive()),
    }


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


# --- The queue dashboard --------------------------------------------------------------------


@admin.register(QueuePause)
class QueueDashboardAdmin(admin.ModelAdmin):
    """The queue dashboard, at the changelist URL of the pause flags."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_operate(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _may_operate(self, request: HttpRequest) -> bool:
        """Pausing, resuming, cleaning up and retrying need the pause flags' change permission."""
        return request.user.has_perm("kgc.change_queuepause")

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("data/", wrap(self.data_view), name="kgc_dashboard_data"),
            path("pause-all/", wrap(self.pause_all_view), name="kgc_queue_pause_all"),
            path("resume-all/", wrap(self.resume_all_view), name="kgc_queue_resume_all"),
            path("<str:name>/pause/", wrap(self.pause_view), name="kgc_queue_pause"),
            path("<str:name>/resume/", wrap(self.resume_view), name="kgc_queue_resume"),
            path("<str:name>/retry-failed/", wrap(self.retry_failed_view), name="kgc_queue_retry_failed"),
            path("cleanup/", wrap(self.cleanup_view), name="kgc_queue_cleanup"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        now = timezone.now()
        overview = metrics.queues_overview(now=now)
        activity = selectors.queue_activity(now=now)
        workers = selectors.workers_overview(now=now)
        context = {
            **self.admin_site.each_context(request),
            "title": "Queue dashboard",
            "opts": self.opts,
            "now": now,
            "queues": [(queue, activity[queue.name], activity_as_dict(activity[queue.name])) for queue in overview],
            "all_paused": all(queue.is_paused for queue in overview),
            "none_paused": not any(queue.is_paused for queue in overview),
            "may_operate": self._may_operate(request),
            "chart": self._chart(now=now, by_queue=request.GET.get("chart") == "queues"),
            "workers": workers,
            "workers_alive": sum(worker.alive for worker in workers),
            "leaders": [worker for worker in workers if worker.leases],
            "schedules": metrics.schedules_next(now=now),
            "queue_names": [queue.name for queue in product_queues()],
            "jobs_url": reverse(JOBS_CHANGELIST),
            "refresh_seconds": AUTO_REFRESH_SECONDS,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/kgc/dashboard.html", context)

    def _chart(self, *, now: datetime, by_queue: bool) -> dict[str, Any]:
        buckets = metrics.jobs_finished_series(now=now)
        chart: dict[str, Any] = {
            "bars": chart_bars(buckets, width=CHART_WIDTH, height=CHART_HEIGHT),
            "ticks": console.tick_positions([f"{b.start:%H:%M}" for b in buckets], every=36),
            "width": CHART_WIDTH,
            "height": CHART_HEIGHT,
            "completed": sum(b.completed for b in buckets),
            "failed": sum(b.failed for b in buckets),
            "by_queue": by_queue,
        }
        if by_queue:
            series = selectors.jobs_finished_by_queue(now=now)
            chart["series"] = console.series_lines(series.counts, width=CHART_WIDTH, height=CHART_HEIGHT)
            chart["covered_since"] = series.covered_since
        return chart

    def data_view(self, request: HttpRequest) -> JsonResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return JsonResponse(dashboard_data(now=timezone.now()))

    def _queue_or_404(self, name: str) -> str:
        try:
            return queue_get(name).name
        except UnknownQueue:
            raise Http404(f"unknown queue {name!r}") from None

    def _confirm(
        self, request: HttpRequest, *, title: str, lines: list[str], button: str, fields: dict[str, str] | None = None
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "lines": lines,
            "button": button,
            "fields": fields or {},
            "cancel_url": reverse("admin:kgc_queuepause_changelist"),
        }
        return TemplateResponse(request, "admin/kgc/confirm.html", context)

    def _done(self, request: HttpRequest, message: str, level: int = messages.SUCCESS) -> HttpResponseRedirect:
        self.message_user(request, message, level)
        return HttpResponseRedirect(reverse("admin:kgc_queuepause_changelist"))

    def pause_view(self, request: HttpRequest, name: str) -> HttpResponse:
        return self._pause_or_resume(request, name, pause=True)

    def resume_view(self, request: HttpRequest, name: str) -> HttpResponse:
        return self._pause_or_resume(request, name, pause=False)

    def _pause_or_resume(self, request: HttpRequest, name: str, *, pause: bool) -> HttpResponse:
        if not self._may_operate(request):
            raise PermissionDenied
        name = self._queue_or_404(name)
        verb, done = ("pause", "Paused") if pause else ("resume", "Resumed")
        if request.method != "POST":
            lines = (
                ["Workers will start none of its jobs until it is resumed.", "Jobs already running finish normally."]
                if pause
                else ["Workers start its waiting jobs again at once."]
            )
            return self._confirm(
                request, title=f"{verb.capitalize()} the {name} queue?", lines=lines, button=f"Yes, {verb} {name}"
            )
        with transaction.atomic():
            changed = jobs.pause_queue(name, by=request.user.get_username()) if pause else jobs.resume_queue(name)
            if changed:
                _log(
                    request,
                    model=QueuePause,
                    object_id=name,
                    text=f"{name} (paused)",
                    flag=ADDITION if pause else DELETION,
                    message=f"{done} the queue",
                )
        if changed:
            return self._done(request, f"{done} the {name} queue.")
        return self._done(request, f"The {name} queue was {'already paused' if pause else 'not paused'}.")

    def pause_all_view(self, request: HttpRequest) -> HttpResponse:
        return self._pause_or_resume_all(request, pause=True)

    def resume_all_view(self, request: HttpRequest) -> HttpResponse:
        return self._pause_or_resume_all(request, pause=False)

    def _pause_or_resume_all(self, request: HttpRequest, *, pause: bool) -> HttpResponse:
        """Every product queue at once (the internal maintenance queue keeps running)."""
        if not self._may_operate(request):
            raise PermissionDenied
        names = [queue.name for queue in product_queues()]
        verb, done = ("pause", "Paused") if pause else ("resume", "Resumed")
        if request.method != "POST":
            lines = (
                [
                    f"Workers will start no job of {', '.join(names)} until they are resumed.",
                    "Jobs already running finish normally; the scheduler and retention keep running.",
                ]
                if pause
                else [f"Workers start the waiting jobs of {', '.join(names)} again at once."]
            )
            return self._confirm(
                request, title=f"{verb.capitalize()} every queue?", lines=lines, button=f"Yes, {verb} them all"
            )
        with transaction.atomic():
            changed = [
                name
                for name in names
                if (jobs.pause_queue(name, by=request.user.get_username()) if pause else jobs.resume_queue(name))
            ]
            for name in changed:
                _log(
                    request,
                    model=QueuePause,
                    object_id=name,
                    text=f"{name} (paused)",
                    flag=ADDITION if pause else DELETION,
                    message=f"{done} the queue (all queues)",
                )
        if not changed:
            return self._done(request, f"Every queue was {'already paused' if pause else 'running already'}.")
        return self._done(request, f"{done} {len(changed)} queue(s): {', '.join(changed)}.")

    def retry_failed_view(self, request: HttpRequest, name: str) -> HttpResponse:
        if not self._may_operate(request):
            raise PermissionDenied
        name = self._queue_or_404(name)
        if request.method != "POST":
            failed = jobs.get_queue_stats(name).failed
            held = jobs.failed_held_count(name)
            lines = [
                f"{failed - sum(held.values())} failed job(s) go back to waiting, each with a fresh set of attempts."
            ]
            lines += [f"{count} left out: {_hold_description(hold)}." for hold, count in held.items() if count]
            return self._confirm(
                request, title=f"Retry every failed job of the {name} queue?", lines=lines, button="Yes, retry them"
            )
        with transaction.atomic():
            result = jobs.failed_jobs_retry(name)
            _log(
                request,
                model=ProcrastinateJob,
                object_id="",
                text=f"failed jobs of {name}",
                flag=CHANGE,
                message=f"Retried {result.retried} failed job(s) of the {name} queue",
            )
        message = f"Put {result.retried} failed job(s) of the {name} queue back in the queue."
        message += "".join(f" {count} left out: {_hold_description(h)}." for h, count in result.held.items() if count)
        return self._done(request, message)

    def cleanup_view(self, request: HttpRequest) -> HttpResponse:
        if not self._may_operate(request):
            raise PermissionDenied
        data = request.POST if request.method == "POST" else request.GET
        try:
            name, completed_age, failed_age = cleanup_request_parse(data)
        except ValueError as exc:
            return self._done(request, f"Cleanup not started: {exc}", messages.ERROR)
        described = cleanup_describe(completed_age, failed_age)
        if request.method != "POST" or data.get("confirm") != "yes":
            return self._confirm(
                request,
                title=f"Clean up the {name} queue?",
                lines=[f"Delete {described}, with their events and failure records.", "This cannot be undone."],
                button="Yes, delete them",
                fields={
                    "queue": name,
                    "completed_age": data.get("completed_age", ""),
                    "failed_age": data.get("failed_age", ""),
                    "confirm": "yes",
                },
            )
        result = jobs.cleanup_queue(name, completed_age=completed_age, failed_age=failed_age, now=timezone.now())
        message = (
            f"Deleted {result.completed} completed and {result.failed} failed job(s) of the {name} queue ({described})."
        )
        _log(
            request,
            model=ProcrastinateJob,
            object_id="",
            text=f"finished jobs of {name}",
            flag=DELETION,
            message=message,
        )
        return self._done(request, message)


def _hold_description(name: str) -> str:
    return next((hold.description for hold in jobs.retry_holds() if hold.name == name), name)


class CleanupRequestError(ValueError):
    pass


def cleanup_request_parse(data: Any) -> tuple[str, timedelta | None, timedelta | None]:
    """The cleanup form's queue and ages (``7d``, ``12h``; blank keeps those jobs)."""
    try:
        name = queue_get(data.get("queue", "")).name
    except UnknownQueue as exc:
        raise CleanupRequestError(str(exc)) from None
    ages = []
    for field in ("completed_age", "failed_age"):
        raw = (data.get(field) or "").strip()
        try:
            ages.append(parse_age(raw) if raw else None)
        except Exception as exc:  # argparse.ArgumentTypeError carries the message
            raise CleanupRequestError(f"{field.replace('_', ' ')}: {exc}") from None
    if ages == [None, None]:
        raise CleanupRequestError("give a completed age, a failed age or both (such as 7d or 12h)")
    return name, ages[0], ages[1]


def cleanup_describe(completed_age: timedelta | None, failed_age: timedelta | None) -> str:
    parts = []
    if completed_age is not None:
        parts.append(f"completed jobs finished more than {metrics.age_format(completed_age.total_seconds())} ago")
    if failed_age is not None:
        parts.append(f"failed jobs that failed more than {metrics.age_format(failed_age.total_seconds())} ago")
    return " and ".join(parts)


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


class QueueFilter(admin.SimpleListFilter):
    title = "queue"
    parameter_name = "queue_name"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in QUEUES]  # declared, so no DISTINCT over the jobs table

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(queue_name=self.value()) if self.value() else queryset


def state_filter(queryset: QuerySet, state: str, *, now: datetime) -> QuerySet:
    """Jobs in one of the dashboard's states (``console.job_state`` in SQL)."""
    paused = Q(queue_name__in=QueuePause.objects.values("queue_name"))
    due = Q(scheduled_at__isnull=True) | Q(scheduled_at__lte=now)
    conditions = {
        console.JobState.WAITING: Q(status="todo") & due & ~paused,
        console.JobState.PAUSED: Q(status="todo") & due & paused,
        console.JobState.DELAYED: Q(status="todo", scheduled_at__gt=now),
        console.JobState.ACTIVE: Q(status="doing"),
        console.JobState.COMPLETED: Q(status="succeeded"),
        console.JobState.FAILED: Q(status="failed"),
        console.JobState.CANCELLED: Q(status__in=["cancelled", "aborted"]),
    }
    return queryset.filter(conditions[console.JobState(state)])


class StateFilter(admin.SimpleListFilter):
    """The dashboard's states, under the ``status`` parameter its links use."""

    title = "state"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(console.JobState.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        if value not in console.JobState.values:
            messages.error(request, f"Unknown state {value!r}: one of {', '.join(console.JobState.values)}.")
            return queryset.none()
        return state_filter(queryset, value, now=timezone.now())


class TaskFilter(admin.SimpleListFilter):
    title = "task"
    parameter_name = "task_name"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = sorted(name for name in procrastinate_app.tasks if not name.startswith("builtin:"))
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(task_name=self.value()) if self.value() else queryset


class TenantFilter(admin.SimpleListFilter):
    """A tenant id typed in a box (a thousand tenants make no list of links)."""

    title = "tenant id"
    parameter_name = "tenant"
    template = "admin/kgc/input_filter.html"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return []

    def has_output(self) -> bool:
        return True

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = (self.value() or "").strip()
        if not value:
            return queryset
        if not value.isdigit():
            return queryset.none()
        return queryset.filter(args__tenant_id=int(value))

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        yield {
            "value": self.value() or "",
            "parameter_name": self.parameter_name,
            "other_params": [
                (key, value) for key, value in changelist.get_filters_params().items() if key != self.parameter_name
            ],
            "clear_url": changelist.get_query_string(remove=[self.parameter_name]),
        }


FINISHED_EVENTS = ["succeeded", "failed", "cancelled", "aborted"]
QUICK_RANGES = [("in the last hour", timedelta(hours=1)), ("in the last 24 hours", timedelta(days=1)),
                ("in the last 7 days", timedelta(days=7))]  # fmt: skip


class FinishedFilter(admin.ListFilter):
    """Jobs that ended between two dates (``finished_from``, ``finished_to``; either may be left out).

    Read from the finishing events through their (at, job_id) index, so a range of an hour
    reads that hour's events only.
    """

    title = "finished"
    template = "admin/kgc/range_filter.html"
    parameters = ("finished_from", "finished_to")

    def __init__(self, request: HttpRequest, params: dict[str, Any], model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        for name in self.parameters:
            if name in params:
                value = params.pop(name)
                self.used_parameters[name] = value[-1] if isinstance(value, list) else value

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return list(self.parameters)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        raw_from = str(self.used_parameters.get("finished_from") or "").strip()
        raw_to = str(self.used_parameters.get("finished_to") or "").strip()
        if not raw_from and not raw_to:
            return queryset
        bounds = {}
        for lookup, label, raw, end in (("at__gte", "from", raw_from, False), ("at__lt", "to", raw_to, True)):
            if not raw:
                continue
            try:
                bounds[lookup] = console.range_bound_parse(raw, end=end)
            except console.BadRange as exc:
                messages.error(request, f"Finished {label}: {exc}")
                return queryset.none()
        ended = ProcrastinateEvent.objects.filter(type__in=FINISHED_EVENTS, **bounds).values("job_id")
        return queryset.filter(pk__in=ended)

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        now = timezone.now().replace(microsecond=0)
        others = [(k, v) for k, v in changelist.get_filters_params().items() if k not in self.parameters]
        yield {
            "from": self.used_parameters.get("finished_from", ""),
            "to": self.used_parameters.get("finished_to", ""),
            "other_params": others,
            "clear_url": changelist.get_query_string(remove=list(self.parameters)),
            "quick": [
                (label, changelist.get_query_string({"finished_from": f"{now - span:%Y-%m-%d %H:%M}"}, ["finished_to"]))
                for label, span in QUICK_RANGES
            ],
        }


admin.site.unregister(ProcrastinateJob)


def _events_at(types: list[str], *, first: bool) -> Subquery:
    events = ProcrastinateEvent.objects.filter(job_id=OuterRef("pk"), type__in=types)
    return Subquery(events.order_by("at" if first else "-at").values("at")[:1])


def jobs_annotated(queryset: QuerySet) -> QuerySet:
    """Each job with its times, last error and its queue's pause flag: a few index lookups per
    job (events by job, failures by job). For a page of rows, never for a whole table."""
    failures = JobFailure.objects.filter(job_id=OuterRef("pk")).order_by("-failed_at", "-id")
    return queryset.annotate(
        queued_at=_events_at(["deferred"], first=True),
        started_at=_events_at(["started"], first=False),
        finished_at=_events_at(FINISHED_EVENTS, first=False),
        last_error_type=Subquery(failures.values("exception_type")[:1]),
        last_error_message=Subquery(failures.values("message")[:1]),
        queue_paused=Exists(QueuePause.objects.filter(queue_name=OuterRef("queue_name"))),
    )


class JobChangeList(ChangeList):
    """The jobs list, whose page alone gets ``jobs_annotated``'s columns.

    PostgreSQL computes a row's columns before an OFFSET skips it: annotating the list's
    query made page 50 look up the times and errors of 5,000 jobs to show 100.
    """

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        page_ids = list(self.result_list.values_list("pk", flat=True))
        self.result_list = jobs_annotated(self.model._default_manager.filter(pk__in=page_ids)).order_by("-pk")


@admin.register(ProcrastinateJob)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "task",
        "state",
        "tenant",
        "queued",
        "started",
        "finished",
        "duration",
        "attempts",
        "last_error",
    ]
    list_display_links = ["id", "task"]
    # Always newest first: sorting a table of millions by another column would scan it all.
    sortable_by = ()
    list_filter = [QueueFilter, StateFilter, TaskFilter, TenantFilter, FinishedFilter]
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

    @admin.display(description="state")
    def state(self, job: ProcrastinateJob) -> SafeString:
        state = _state_of(job)
        return format_html('<span class="kgc-state kgc-state-{}">{}</span>', state, state)

    @admin.display(description="task and queue")
    def task(self, job: ProcrastinateJob) -> SafeString:
        # The queue under the task, on a second line: one column fewer keeps the list within 1280 px.
        return format_html(
            '{}<br><span class="kgc-muted kgc-small">{}</span>', console.truncated(job.task_name, 28), job.queue_name
        )

    @admin.display(description="tenant")
    def tenant(self, job: ProcrastinateJob) -> Any:
        return (job.args or {}).get("tenant_id", "-")

    @admin.display(description="queued")
    def queued(self, job: ProcrastinateJob) -> SafeString | str:
        return _moment(_times(job).queued_at)

    @admin.display(description="started")
    def started(self, job: ProcrastinateJob) -> SafeString | str:
        return _moment(_times(job).started_at)

    @admin.display(description="finished")
    def finished(self, job: ProcrastinateJob) -> SafeString | str:
        return _moment(_times(job).finished_at)

    @admin.display(description="duration")
    def duration(self, job: ProcrastinateJob) -> str:
        return console.duration_format(_times(job).duration_seconds)

    @admin.display(description="last error")
    def last_error(self, job: ProcrastinateJob) -> SafeString | str:
        kind = getattr(job, "last_error_type", None)
        if not kind:
            return "-"
        return console.truncated(f"{kind.rsplit('.', 1)[-1]}: {getattr(job, 'last_error_message', '')}", 28)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # --- Detail -------------------------------------------------------------------------

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
        failures = list(JobFailure.objects.filter(job_id=job.pk).order_by("failed_at", "id"))
        numbered = console.attempts_numbered([failure.will_retry for failure in failures])
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
            "duration": console.duration_format(_times(job).duration_seconds),
            "priority": jobs.priority_from_stored(job.priority),
            "default_priority": jobs.DEFAULT_PRIORITY,
            "args_json": json.dumps(job.args, indent=2, sort_keys=True),
            "result": result,
            "result_json": json.dumps(result.value, indent=2, sort_keys=True) if result else None,
            "attempts": [
                (view, failure, console.traceback_blocks(failure.traceback))
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

    # --- Actions ------------------------------------------------------------------------

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
            f"{verb} {len(job_ids)} {only} job(s): {shown}.",
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


def _times(job: Any) -> console.JobTimes:
    return console.job_times(
        queued_at=getattr(job, "queued_at", None),
        started_at=getattr(job, "started_at", None),
        finished_at=getattr(job, "finished_at", None),
    )


def _state_of(job: Any) -> str:
    return console.job_state(
        status=job.status,
        scheduled_at=job.scheduled_at,
        queue_paused=bool(getattr(job, "queue_paused", False)),
        now=timezone.now(),
    )


def _moment(at: datetime | None) -> SafeString | str:
    """A time in a column: short (hours and minutes today, the date otherwise), exact on hover."""
    if at is None:
        return "-"
    at = timezone.localtime(at)
    short = f"{at:%H:%M:%S}" if at.date() == timezone.localdate() else f"{at:%Y-%m-%d %H:%M}"
    return format_html('<span class="kgc-nowrap" title="{} UTC">{}</span>', f"{at:%Y-%m-%d %H:%M:%S.%f}"[:-3], short)
