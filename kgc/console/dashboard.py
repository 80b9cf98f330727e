"""The queue dashboard.

The dashboard is the changelist of ``QueuePause`` (one row per paused queue, so the
model the pause and resume buttons write): per queue its counts, oldest waiting job,
pause flag, concurrency, rate-limit use, throughput and failure rate, refreshed every
few seconds from a JSON endpoint; a chart of jobs finished over the last day (one
series per queue on request); the workers with their process, duties, lease and
running jobs; the periodic schedules. Every action asks for confirmation on a page of
its own, reports what it did and leaves an entry in the admin log with the user who
did it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, DELETION
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob

from kgc.commands import age as parse_age
from kgc.console import display, metrics, selectors
from kgc.console.actions import _log
from kgc.queue import health, jobs
from kgc.queue.models import QueuePause
from kgc.queues import UnknownQueue, product_queues, queue_get
from kgc.texts import counted

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


def backlog_as_dict(queue: metrics.QueueOverview, activity: selectors.QueueActivity) -> dict[str, Any]:
    """How the oldest waiting job shows: in time, held back by the rate limit, or late."""
    limit = activity.rate_limit
    state = display.backlog_state(
        oldest_waiting_seconds=queue.oldest_waiting_seconds,
        window_used_ratio=activity.window_used_ratio if limit else None,
    )
    note = ""
    if state == "paced" and limit is not None:
        note = display.drain_note(waiting=queue.stats.waiting, limit=limit.limit, per_seconds=limit.per.total_seconds())
    elif state == "late":
        held = " (not held back by its rate limit)" if limit is not None else ""
        note = f"waiting longer than 15 minutes{held}: is the queue paused, stuck or short of workers?"
    return {"backlog": state, "backlog_note": note}


def activity_as_dict(activity: selectors.QueueActivity) -> dict[str, Any]:
    """A queue's capacity and throughput as the dashboard shows them (the poll's fields)."""
    return {
        "concurrency": activity.concurrency,
        "rate_limit": activity.rate_limit_text,
        "rate_limit_used": round(activity.window_used_ratio, 3),
        "per_minute_5": display.rate_format(activity.per_minute_5),
        "per_minute_60": display.rate_format(activity.per_minute_60),
        "failure_rate": display.percent_format(activity.failure_rate),
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
                **backlog_as_dict(queue, activity[queue.name]),
            }
            for queue in metrics.queues_overview(now=now)
        },
        "workers_alive": len(health.cluster_read().alive()),
    }


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

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """A queue's pause flag has no page of its own: its links (the admin log's) lead to the dashboard."""
        return HttpResponseRedirect(reverse("admin:kgc_queuepause_changelist"))

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
            "queues": [
                (
                    queue,
                    activity[queue.name],
                    {**activity_as_dict(activity[queue.name]), **backlog_as_dict(queue, activity[queue.name])},
                )
                for queue in overview
            ],
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
            "ticks": display.tick_positions([f"{b.start:%H:%M}" for b in buckets], every=36),
            "width": CHART_WIDTH,
            "height": CHART_HEIGHT,
            "completed": sum(b.completed for b in buckets),
            "failed": sum(b.failed for b in buckets),
            "by_queue": by_queue,
        }
        if by_queue:
            series = selectors.jobs_finished_by_queue(now=now)
            chart["series"] = display.series_lines(series.counts, width=CHART_WIDTH, height=CHART_HEIGHT)
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
                _queue_log(request, name, done=done, message=f"{done} the queue")
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
                _queue_log(request, name, done=done, message=f"{done} the queue (all queues)")
        if not changed:
            return self._done(request, f"Every queue was {'already paused' if pause else 'running already'}.")
        return self._done(request, f"{done} {counted(len(changed), 'queue')}: {', '.join(changed)}.")

    def retry_failed_view(self, request: HttpRequest, name: str) -> HttpResponse:
        if not self._may_operate(request):
            raise PermissionDenied
        name = self._queue_or_404(name)
        if request.method != "POST":
            failed = jobs.get_queue_stats(name).failed
            held = jobs.failed_held_count(name)
            back = failed - sum(held.values())
            verb = "goes" if back == 1 else "go"
            lines = [f"{counted(back, 'failed job')} {verb} back to waiting, each with a fresh set of attempts."]
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
                message=f"Retried {counted(result.retried, 'failed job')} of the {name} queue",
            )
        message = f"Put {counted(result.retried, 'failed job')} of the {name} queue back in the queue."
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
        deleted = counted(result.completed + result.failed, "finished job")
        message = f"Deleted {deleted} of the {name} queue ({result.completed} completed, {result.failed} failed): "
        message += f"{described}."
        _log(
            request,
            model=ProcrastinateJob,
            object_id="",
            text=f"finished jobs of {name}",
            flag=DELETION,
            message=message,
        )
        return self._done(request, message)


def _queue_log(request: HttpRequest, name: str, *, done: str, message: str) -> None:
    """Pausing and resuming change a queue: logged as changes (the admin's "Recent actions" shows
    a deletion as a red cross, which a resumed queue is not), linked to the dashboard."""
    _log(request, model=QueuePause, object_id=name, text=f"{name} queue: {done.lower()}", flag=CHANGE, message=message)


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
