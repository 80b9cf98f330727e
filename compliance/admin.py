"""The compliance domain in the admin: tenants and their staff, clients with their latest
score, documents, filings, tasks, requirements and the scores themselves; and the manual
triggers: refresh compliance, check expiries and send filing reminders now.

Built for the big tables (a million documents, a hundred thousand clients, a score per
client per day): every list pages with a bounded count (``CappedCountPaginator``), skips
the full-table count, selects its related rows in the same query, and uses raw id
widgets for foreign keys so no page lists a whole table in a ``<select>``. Lists fit a
1280-pixel screen: long names are cut, with the whole name on hover.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django.contrib import admin
from django.contrib.postgres.expressions import ArraySubquery
from django.core.paginator import Paginator
from django.db.models import OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Concat
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from compliance import conf, selectors  # conf: registers the scoring settings' system check
from compliance.calendars import due_phrase
from compliance.models import (
    Client,
    ComplianceScore,
    Document,
    DocumentType,
    Filing,
    FilingStatus,
    FilingTask,
    Membership,
    Requirement,
    ScoreLevel,
    Tenant,
)
from compliance.scoring import OVERDUE_STATUSES, UPCOMING_STATUSES, DeductionReason
from kgc.console import triggers
from kgc.console.display import date_cell, truncated
from kgc.console.filters import TenantFilter
from notifications.models import NotificationPreference

COUNT_CAP = 10_000
LEVEL_COLOURS: dict[str, str] = {ScoreLevel.GREEN: "#1e7e34", ScoreLevel.AMBER: "#b36b00", ScoreLevel.RED: "#b02a37"}


class CappedCount(int):
    """A row count that stopped at the cap: shows as "10000+" and computes as the cap."""

    def __str__(self) -> str:
        return f"{int(self)}+"


class CappedCountPaginator(Paginator):
    """Counts at most ``COUNT_CAP + 1`` rows, so a list over a million rows never counts them all.

    The count runs without ordering or annotations (a client's latest score, say), which
    it does not need; past the cap the admin shows "10000+" and pages up to the cap.
    """

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return len(queryset)
        found = queryset.order_by().values("pk")[: COUNT_CAP + 1].count()
        return CappedCount(COUNT_CAP) if found > COUNT_CAP else found


class BigTableAdmin(admin.ModelAdmin):
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50


def level_badge(level: str | None) -> SafeString | str:
    if not level:
        return "—"
    return format_html(
        '<span style="color:#fff;background:{};padding:1px 6px;border-radius:3px">{}</span>',
        LEVEL_COLOURS.get(level, "#555"),
        ScoreLevel(level).label,
    )


def _today() -> date:
    # The admin's "today" is the server's (UTC); each tenant's own date only matters to the jobs.
    return timezone.localdate()


# --- Tenants ---------------------------------------------------------------------------------


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ("user",)
    fields = ("user", "role", "email_preferences", "created_at")
    readonly_fields = ("email_preferences", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        # Each member's email choices in the same query (no query per member).
        choices = NotificationPreference.objects.filter(tenant_id=OuterRef("tenant_id"), user_id=OuterRef("user_id"))
        return (
            super()
            .get_queryset(request)
            .select_related("user")
            .annotate(
                email_choices=ArraySubquery(choices.order_by("kind").values_list(Concat("kind", Value(": "), "email")))
            )
        )

    @admin.display(description="email preferences")
    def email_preferences(self, membership: Membership) -> SafeString | str:
        """The member's choices per kind (the others follow the tenant's default), linked to edit them."""
        if membership.pk is None:
            return "—"
        choices = getattr(membership, "email_choices", None) or []
        text = "; ".join(choice.replace("_", " ") for choice in choices) or "the tenant's default for every kind"
        # Straight to the preferences on the user's page (the inline's own id), not its top.
        url = reverse("admin:auth_user_change", args=[membership.user_id]) + "#notification_preferences-group"
        return format_html('{} (<a href="{}">change</a>)', text, url)


@admin.register(Tenant)
class TenantAdmin(BigTableAdmin):
    list_display = ("name", "short_slug", "zone", "calendar", "notification_email_default", "is_active", "created")
    list_filter = ("is_active", "notification_email_default")
    fieldsets = (
        (None, {"fields": ("name", "slug", "timezone", "is_active", "notification_email_default")}),
        (
            "Reminders and business days",
            {
                "fields": ("expiry_reminder_days", "filing_reminder_days", "holiday_country", "holiday_subdivision"),
                "description": (
                    "Thresholds are days before the date, comma-separated (30,14,7); empty: the default. With a "
                    "holiday calendar, a due date on a weekend or a holiday moves to the next business day."
                ),
            },
        ),
    )

    @admin.display(description="slug", ordering="slug")
    def short_slug(self, obj: Tenant) -> SafeString | str:
        return truncated(obj.slug, 24)

    @admin.display(description="time zone", ordering="timezone")
    def zone(self, obj: Tenant) -> SafeString | str:
        return truncated(obj.timezone, 20)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Tenant) -> SafeString | str:
        return date_cell(obj.created_at)

    @admin.display(description="holiday calendar")
    def calendar(self, obj: Tenant) -> str:
        if not obj.holiday_country:
            return "—"
        return f"{obj.holiday_country}-{obj.holiday_subdivision}" if obj.holiday_subdivision else obj.holiday_country

    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MembershipInline]
    actions = ("refresh_compliance_now", "check_expiries_now", "send_filing_reminders_now")

    # Deferring jobs changes no tenant row: the queue dashboard's operators may run them.
    def has_trigger_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("kgc.change_queuepause")

    @admin.action(description=triggers.REFRESH.label, permissions=["trigger"])
    def refresh_compliance_now(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> TemplateResponse | None:
        return triggers.trigger_action(self, request, trigger=triggers.REFRESH, tenants=list(queryset))

    @admin.action(description=triggers.EXPIRY_CHECK.label, permissions=["trigger"])
    def check_expiries_now(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> TemplateResponse | None:
        return triggers.trigger_action(self, request, trigger=triggers.EXPIRY_CHECK, tenants=list(queryset))

    @admin.action(description=triggers.FILING_REMINDERS.label, permissions=["trigger"])
    def send_filing_reminders_now(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> TemplateResponse | None:
        return triggers.trigger_action(self, request, trigger=triggers.FILING_REMINDERS, tenants=list(queryset))


# --- Clients and their scores ----------------------------------------------------------------


class RequirementInline(admin.TabularInline):
    model = Requirement
    extra = 0
    fields = ("document_type",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Requirement]:
        return super().get_queryset(request).select_related("document_type")


def _latest_score() -> QuerySet[ComplianceScore]:
    # An index lookup per listed client: a backward scan of the (client, calculated_on) unique index.
    return ComplianceScore.objects.filter(client_id=OuterRef("pk")).order_by("-calculated_on")


@admin.register(Client)
class ClientAdmin(BigTableAdmin):
    list_display = ("client_name", "tenant_name", "is_active", "latest_score", "latest_level", "latest_on")
    list_filter = ("is_active", TenantFilter)
    actions = ("refresh_compliance_now",)
    list_select_related = ("tenant",)
    search_fields = ("name",)
    raw_id_fields = ("tenant",)
    ordering = ("-pk",)
    readonly_fields = ("score_chart", "latest_breakdown")
    fields = ("tenant", "name", "is_active", "score_chart", "latest_breakdown")
    inlines = [RequirementInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Client]:
        latest = _latest_score()
        return (
            super()
            .get_queryset(request)
            .annotate(
                latest_score_value=Subquery(latest.values("score")[:1]),
                latest_level_value=Subquery(latest.values("level")[:1]),
                latest_on_value=Subquery(latest.values("calculated_on")[:1]),
            )
        )

    @admin.display(description="client", ordering="name")
    def client_name(self, obj: Client) -> SafeString | str:
        return truncated(obj.name, 40)

    @admin.display(description="tenant")
    def tenant_name(self, obj: Client) -> SafeString | str:
        return truncated(obj.tenant.name, 30)

    def has_trigger_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("kgc.change_queuepause")

    @admin.action(description=triggers.REFRESH.label, permissions=["trigger"])
    def refresh_compliance_now(self, request: HttpRequest, queryset: QuerySet[Client]) -> TemplateResponse | None:
        """A refresh scores a whole tenant: the selected clients' tenants are refreshed."""
        tenants = list(Tenant.objects.filter(pk__in=queryset.values("tenant_id")).order_by("name"))
        return triggers.trigger_action(
            self,
            request,
            trigger=triggers.REFRESH,
            tenants=tenants,
            note="A refresh scores every client of its tenant: the selected clients' tenants are refreshed.",
        )

    # Not sortable: ordering by the latest score would compute it for every client in the table.
    @admin.display(description="score")
    def latest_score(self, obj: Client) -> int | str:
        value = getattr(obj, "latest_score_value", None)
        return "—" if value is None else value

    @admin.display(description="level")
    def latest_level(self, obj: Client) -> SafeString | str:
        return level_badge(getattr(obj, "latest_level_value", None))

    @admin.display(description="scored on")
    def latest_on(self, obj: Client) -> SafeString | str:
        return date_cell(getattr(obj, "latest_on_value", None))

    @admin.display(description="score over time")
    def score_chart(self, obj: Client) -> SafeString | str:
        if obj.pk is None:
            return "—"
        history = selectors.client_score_history(client=obj)
        if not history:
            return "No score yet."
        points = [(s.calculated_on, s.score, s.level) for s in history]
        policy = conf.scoring_policy()
        return mark_safe(render_to_string("compliance/admin/score_chart.svg", score_chart_context(points, policy)))  # noqa: S308 - the template escapes every value

    @admin.display(description="latest breakdown")
    def latest_breakdown(self, obj: Client) -> SafeString | str:
        if obj.pk is None:
            return "—"
        latest = ComplianceScore.objects.filter(tenant_id=obj.tenant_id, client=obj).order_by("-calculated_on").first()
        return breakdown_html(latest) if latest else "No score yet."


CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 480, 140, 28


def score_chart_context(points: list[tuple[date, int, str]], policy: conf.ScoringPolicy) -> dict[str, Any]:
    """Coordinates for the score chart: scores 0-100 up the y axis, one point per day scored."""
    inner_w, inner_h = CHART_WIDTH - 2 * CHART_PAD, CHART_HEIGHT - 2 * CHART_PAD

    def y(score: float) -> float:
        return round(CHART_PAD + inner_h * (1 - score / 100), 1)

    first, last = points[0][0], points[-1][0]
    span = max((last - first).days, 1)
    dots = [
        {
            "x": round(CHART_PAD + inner_w * ((day - first).days / span if len(points) > 1 else 0.5), 1),
            "y": y(score),
            "day": day,
            "score": score,
            "colour": LEVEL_COLOURS.get(level, "#555"),
        }
        for day, score, level in points
    ]
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "pad": CHART_PAD,
        "right": CHART_WIDTH - CHART_PAD,
        "inner_width": inner_w,
        "bottom": CHART_HEIGHT - CHART_PAD,
        "dots": dots,
        "polyline": " ".join(f"{d['x']},{d['y']}" for d in dots),
        "bands": [
            {"y": y(top), "h": round(y(bottom) - y(top), 1), "colour": colour}
            for top, bottom, colour in (
                (100, policy.green_from, LEVEL_COLOURS[ScoreLevel.GREEN]),
                (policy.green_from, policy.amber_from, "#e0a800"),
                (policy.amber_from, 0, LEVEL_COLOURS[ScoreLevel.RED]),
            )
        ],
        "ticks": [{"y": y(v), "label": v} for v in (0, policy.amber_from, policy.green_from, 100)],
        "first": first,
        "last": last,
        "latest": points[-1][1],
    }


def _admin_link(model: str, pk: int | None) -> str | None:
    if pk is None:
        return None
    try:
        return reverse(f"admin:compliance_{model}_change", args=[pk])
    except NoReverseMatch:
        return None


def breakdown_html(score: ComplianceScore) -> SafeString:
    rows = []
    for item in score.breakdown or []:
        reason = item.get("reason", "")
        target = (
            _admin_link("filing", item.get("filing_id"))
            if reason in (DeductionReason.OVERDUE, DeductionReason.UPCOMING)
            else _admin_link("document", item.get("document_id"))
        )
        rows.append(
            {
                "reason": DeductionReason(reason).label if reason in DeductionReason.values else reason,
                "points": item.get("points"),
                "issue": item.get("issue", ""),
                "recommendation": item.get("recommendation", ""),
                "link": target,
            }
        )
    return mark_safe(  # noqa: S308 - the template escapes every value
        render_to_string(
            "compliance/admin/breakdown.html", {"score": score, "rows": rows, "level_badge": level_badge(score.level)}
        )
    )


# --- Documents, filings, tasks ---------------------------------------------------------------


class ExpiringSoonFilter(admin.SimpleListFilter):
    title = "expiry"
    parameter_name = "expiry"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("expired", "Expired"),
            ("7", "Expiring within 7 days"),
            ("30", "Expiring within 30 days"),
            ("never", "Never expires"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        today = _today()
        value = self.value()
        if value == "expired":
            return queryset.filter(expires_on__lt=today)
        if value in ("7", "30"):
            return queryset.filter(expires_on__range=(today, today + timedelta(days=int(value))))
        if value == "never":
            return queryset.filter(expires_on__isnull=True)
        return None


@admin.register(Document)
class DocumentAdmin(BigTableAdmin):
    list_display = ("document_title", "client_name", "tenant_name", "type_name", "expires", "uploaded")
    list_filter = (ExpiringSoonFilter, "document_type", TenantFilter)
    list_select_related = ("client", "tenant", "document_type")
    raw_id_fields = ("tenant", "client")
    search_fields = ("title",)
    ordering = ("-pk",)

    @admin.display(description="title", ordering="title")
    def document_title(self, obj: Document) -> SafeString | str:
        return truncated(obj.title, 32)

    @admin.display(description="client")
    def client_name(self, obj: Document) -> SafeString | str:
        return truncated(obj.client.name, 26)

    @admin.display(description="tenant")
    def tenant_name(self, obj: Document) -> SafeString | str:
        return truncated(obj.tenant.name, 20)

    @admin.display(description="document type", ordering="document_type__name")
    def type_name(self, obj: Document) -> SafeString | str:
        return truncated(obj.document_type.name, 20)

    @admin.display(description="expires on", ordering="expires_on")
    def expires(self, obj: Document) -> SafeString | str:
        return date_cell(obj.expires_on)

    @admin.display(description="uploaded", ordering="uploaded_at")
    def uploaded(self, obj: Document) -> SafeString | str:
        return date_cell(obj.uploaded_at)


class DueSoonFilter(admin.SimpleListFilter):
    title = "due"
    parameter_name = "due"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("overdue", "Overdue"), ("7", "Due within 7 days"), ("14", "Due within 14 days")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        today = _today()
        value = self.value()
        if value == "overdue":
            return queryset.filter(due_date__lt=today, status__in=OVERDUE_STATUSES)
        if value in ("7", "14"):
            open_statuses = UPCOMING_STATUSES | {FilingStatus.PREPARED}
            return queryset.filter(
                due_date__range=(today, today + timedelta(days=int(value))), status__in=open_statuses
            )
        return None


class FilingTaskInline(admin.TabularInline):
    model = FilingTask
    extra = 0
    raw_id_fields = ("assignee",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[FilingTask]:
        return super().get_queryset(request).select_related("assignee")


@admin.register(Filing)
class FilingAdmin(BigTableAdmin):
    list_display = ("filing_type", "period", "client_name", "tenant_name", "due", "status")
    list_filter = (DueSoonFilter, "status", TenantFilter)
    list_select_related = ("client", "tenant")
    raw_id_fields = ("tenant", "client")
    search_fields = ("filing_type", "period")
    ordering = ("-pk",)
    inlines = [FilingTaskInline]
    readonly_fields = ("effective_due_date",)

    @admin.display(description="effectively due")
    def effective_due_date(self, obj: Filing) -> str:
        """The business day it is due under its calendar (its own, else its tenant's)."""
        if obj.pk is None:
            return "—"
        return due_phrase(obj.due())

    @admin.display(description="client")
    def client_name(self, obj: Filing) -> SafeString | str:
        return truncated(obj.client.name, 36)

    @admin.display(description="tenant")
    def tenant_name(self, obj: Filing) -> SafeString | str:
        return truncated(obj.tenant.name, 28)

    @admin.display(description="due", ordering="due_date")
    def due(self, obj: Filing) -> SafeString | str:
        return date_cell(obj.due_date)


@admin.register(FilingTask)
class FilingTaskAdmin(BigTableAdmin):
    list_display = ("task_title", "filing_name", "assignee_name", "is_done")
    list_filter = ("is_done",)
    list_select_related = ("filing", "filing__client", "assignee")
    raw_id_fields = ("filing", "assignee")
    search_fields = ("title",)
    ordering = ("-pk",)

    @admin.display(description="title", ordering="title")
    def task_title(self, obj: FilingTask) -> SafeString | str:
        return truncated(obj.title, 40)

    @admin.display(description="filing")
    def filing_name(self, obj: FilingTask) -> SafeString | str:
        return truncated(str(obj.filing), 48)

    @admin.display(description="assignee")
    def assignee_name(self, obj: FilingTask) -> SafeString | str:
        return truncated(obj.assignee.get_username() if obj.assignee else "", 30)


@admin.register(DocumentType)
class DocumentTypeAdmin(admin.ModelAdmin):
    list_display = ("name", "code")
    search_fields = ("name", "code")


@admin.register(Requirement)
class RequirementAdmin(BigTableAdmin):
    list_display = ("client", "document_type")
    list_filter = ("document_type",)
    list_select_related = ("client", "document_type")
    raw_id_fields = ("client",)
    ordering = ("-pk",)


# --- Scores ----------------------------------------------------------------------------------


@admin.register(ComplianceScore)
class ComplianceScoreAdmin(BigTableAdmin):
    """Scores are computed by the refresh: read-only here (deleting one is allowed)."""

    list_display = ("client_name", "tenant_name", "scored_on", "score", "level_display", "deductions", "trigger")
    list_filter = ("level", "calculated_on", TenantFilter)
    list_select_related = ("client", "tenant")
    raw_id_fields = ("tenant", "client")
    ordering = ("-pk",)
    fields = ("tenant", "client", "calculated_on", "score", "level", "breakdown_display", "calculated_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="client")
    def client_name(self, obj: ComplianceScore) -> SafeString | str:
        return truncated(obj.client.name, 34)

    @admin.display(description="tenant")
    def tenant_name(self, obj: ComplianceScore) -> SafeString | str:
        return truncated(obj.tenant.name, 24)

    @admin.display(description="scored on", ordering="calculated_on")
    def scored_on(self, obj: ComplianceScore) -> SafeString | str:
        return date_cell(obj.calculated_on)

    @admin.display(description="level", ordering="level")
    def level_display(self, obj: ComplianceScore) -> SafeString | str:
        return level_badge(obj.level)

    @admin.display(description="triggered by", ordering="triggered_by")
    def trigger(self, obj: ComplianceScore) -> SafeString | str:
        return truncated(obj.triggered_by, 24)

    @admin.display(description="deductions")
    def deductions(self, obj: ComplianceScore) -> int:
        return len(obj.breakdown or [])

    @admin.display(description="breakdown")
    def breakdown_display(self, obj: ComplianceScore) -> SafeString:
        return breakdown_html(obj)
