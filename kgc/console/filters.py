"""The jobs list's filters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from procrastinate.contrib.django import app as procrastinate_app
from procrastinate.contrib.django.models import ProcrastinateEvent

from kgc.console import display
from kgc.console.job_rows import FINISHED_EVENTS
from kgc.queue.models import QueuePause
from kgc.queues import QUEUES


class QueueFilter(admin.SimpleListFilter):
    title = "queue"
    parameter_name = "queue_name"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in QUEUES]  # declared, so no DISTINCT over the jobs table

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(queue_name=self.value()) if self.value() else queryset


def state_filter(queryset: QuerySet, state: str, *, now: datetime) -> QuerySet:
    """Jobs in one of the dashboard's states (``display.job_state`` in SQL)."""
    paused = Q(queue_name__in=QueuePause.objects.values("queue_name"))
    due = Q(scheduled_at__isnull=True) | Q(scheduled_at__lte=now)
    conditions = {
        display.JobState.WAITING: Q(status="todo") & due & ~paused,
        display.JobState.PAUSED: Q(status="todo") & due & paused,
        display.JobState.DELAYED: Q(status="todo", scheduled_at__gt=now),
        display.JobState.ACTIVE: Q(status="doing"),
        display.JobState.COMPLETED: Q(status="succeeded"),
        display.JobState.FAILED: Q(status="failed"),
        display.JobState.CANCELLED: Q(status__in=["cancelled", "aborted"]),
    }
    return queryset.filter(conditions[display.JobState(state)])


class StateFilter(admin.SimpleListFilter):
    """The dashboard's states, under the ``status`` parameter its links use."""

    title = "state"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(display.JobState.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        if value not in display.JobState.values:
            messages.error(request, f"Unknown state {value!r}: one of {', '.join(display.JobState.values)}.")
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


def tenant_id_find(reference: str) -> int | None:
    """The id of the tenant with this slug, or this id (a slug first, as everywhere), or None."""
    from compliance.models import Tenant

    found = Tenant.objects.filter(slug=reference).values_list("pk", flat=True).first()
    if found is None and reference.isdigit() and len(reference) < 19:
        found = Tenant.objects.filter(pk=int(reference)).values_list("pk", flat=True).first()
    return found


class TenantFilter(admin.SimpleListFilter):
    """A tenant typed in a box, by id or slug (a thousand tenants make no list of links): the
    domain lists' filter on their ``tenant`` (``field``)."""

    title = "tenant"
    parameter_name = "tenant"
    template = "admin/kgc/input_filter.html"
    field = "tenant_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return []

    def has_output(self) -> bool:
        return True

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = (self.value() or "").strip()
        if not value:
            return queryset
        tenant_id = tenant_id_find(value)
        if tenant_id is None and value.isdigit() and len(value) < 19:
            tenant_id = int(value)  # a tenant deleted since: its jobs still name it
        if tenant_id is None:
            messages.error(request, f"No tenant with id or slug {value!r}.")
            return queryset.none()
        return queryset.filter(**{self.field: tenant_id})

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        yield {
            "placeholder": "id or slug",
            "value": self.value() or "",
            "parameter_name": self.parameter_name,
            "other_params": [
                (key, value) for key, value in changelist.get_filters_params().items() if key != self.parameter_name
            ],
            "clear_url": changelist.get_query_string(remove=[self.parameter_name]),
        }


class JobTenantFilter(TenantFilter):
    """The jobs list's: jobs whose arguments name the tenant."""

    field = "args__tenant_id"


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
                bounds[lookup] = display.range_bound_parse(raw, end=end)
            except display.BadRange as exc:
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
