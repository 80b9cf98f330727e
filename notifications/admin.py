"""Notifications and outbound emails in the admin: find failed ones, read why, resend.

Built for big tables: no full-table counts (a capped paginator, no full result
count), related rows selected in the same query, raw id widgets for foreign keys.
Lists fit a 1280-pixel screen: long text is cut, with the whole of it on hover.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString

from kgc.console import date_cell, truncated
from notifications.delivery import emails_resend
from notifications.models import EmailEvent, Notification, OutboundEmail, OutboundStatus
from notifications.tracking import DO_NOT_RESEND

COUNT_CAP = 10_000
CONFIRM_LISTED = 50  # emails listed by name on the confirmation page


class CappedCountPaginator(Paginator):
    """Counts at most ``COUNT_CAP + 1`` rows, so a filter over millions of emails stays fast."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return len(queryset)
        return min(queryset.order_by().values("pk")[: COUNT_CAP + 1].count(), COUNT_CAP)


def pretty_json(value: Any) -> SafeString:
    return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "short_title",
        "kind",
        "urgency",
        "email_status",
        "tenant_name",
        "recipient_name",
        "created",
        "read",
    )
    list_filter = ("email_status", "kind", "urgency")
    search_fields = ("=id", "title", "dedupe_key", "recipient__email")
    list_select_related = ("tenant", "recipient")
    raw_id_fields = ("tenant", "recipient")
    readonly_fields = ("readable_data", "dedupe_key", "created_at")
    exclude = ("data",)
    show_full_result_count = False
    paginator = CappedCountPaginator
    date_hierarchy = None

    @admin.display(description="data")
    def readable_data(self, obj: Notification) -> SafeString:
        return pretty_json(obj.data)

    @admin.display(description="title", ordering="title")
    def short_title(self, obj: Notification) -> SafeString | str:
        return truncated(obj.title, 26)

    @admin.display(description="tenant")
    def tenant_name(self, obj: Notification) -> SafeString | str:
        return truncated(obj.tenant.name, 14)

    @admin.display(description="recipient")
    def recipient_name(self, obj: Notification) -> SafeString | str:
        return truncated(obj.recipient.email or obj.recipient.get_username(), 18)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Notification) -> SafeString | str:
        return date_cell(obj.created_at)

    @admin.display(description="read", ordering="read_at")
    def read(self, obj: Notification) -> SafeString | str:
        return date_cell(obj.read_at)


class EmailEventInline(admin.TabularInline):
    model = EmailEvent
    fields = ("event_type", "provider", "recipient", "description", "occurred_at", "received_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(OutboundEmail)
class OutboundEmailAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "short_subject",
        "recipient",
        "template",
        "status",
        "delivery",
        "attempts",
        "error",
        "sent",
        "tenant_name",
    )
    list_filter = ("status", "template")
    search_fields = ("=id", "=to_email", "subject", "=message_id", "idempotency_key")
    list_select_related = ("tenant",)
    raw_id_fields = ("tenant", "notification")
    readonly_fields = (
        "status",
        "attempts",
        "last_error",
        "message_id",
        "idempotency_key",
        "created_at",
        "sent_at",
        "readable_context",
    )
    exclude = ("context",)
    inlines = (EmailEventInline,)
    actions = ("resend_failed",)
    show_full_result_count = False
    paginator = CappedCountPaginator

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutboundEmail]:
        # The latest provider event, in the list's own query (no query per row).
        latest = EmailEvent.objects.filter(outbound_email=OuterRef("pk")).order_by("-received_at", "-pk")
        return super().get_queryset(request).annotate(latest_event=Subquery(latest.values("event_type")[:1]))

    @admin.display(description="delivery")
    def delivery(self, obj: OutboundEmail) -> str:
        return getattr(obj, "latest_event", None) or "—"

    @admin.display(description="last error")
    def error(self, obj: OutboundEmail) -> SafeString | str:
        return truncated(obj.last_error, 20)

    @admin.display(description="subject", ordering="subject")
    def short_subject(self, obj: OutboundEmail) -> SafeString | str:
        return truncated(obj.subject, 22)

    @admin.display(description="to", ordering="to_email")
    def recipient(self, obj: OutboundEmail) -> SafeString | str:
        return truncated(obj.to_email, 20)

    @admin.display(description="sent", ordering="sent_at")
    def sent(self, obj: OutboundEmail) -> SafeString | str:
        return date_cell(obj.sent_at)

    @admin.display(description="tenant")
    def tenant_name(self, obj: OutboundEmail) -> SafeString | str:
        return truncated(obj.tenant.name, 14)

    @admin.display(description="context (template data)")
    def readable_context(self, obj: OutboundEmail) -> SafeString:
        return pretty_json(obj.context)

    @admin.action(description="Resend selected failed emails", permissions=["change"])
    def resend_failed(self, request: HttpRequest, queryset: QuerySet[OutboundEmail]) -> HttpResponse | None:
        selected = list(queryset.values_list("pk", flat=True))
        if request.POST.get("confirm") != "yes":
            return self._resend_confirmation(request, queryset, selected)
        result = emails_resend(email_ids=selected, user_id=request.user.pk)
        if result.resent:
            self.message_user(
                request,
                f"Queued {len(result.resent)} failed email(s) again; the email workers will send them."
                + (
                    f" {result.skipped} left alone (not failed, or bounced/rejected/complained)."
                    if result.skipped
                    else ""
                ),
                messages.SUCCESS,
            )
        else:
            self.message_user(request, "Nothing resent: none of the selected emails can be resent.", messages.WARNING)
        return None

    def _resend_confirmation(
        self, request: HttpRequest, queryset: QuerySet[OutboundEmail], selected: list[int]
    ) -> TemplateResponse:
        eligible = queryset.filter(status=OutboundStatus.FAILED).exclude(events__event_type__in=DO_NOT_RESEND)
        listed = list(eligible.order_by("pk")[: CONFIRM_LISTED + 1])
        total = len(listed) if len(listed) <= CONFIRM_LISTED else eligible.count()
        context = {
            **self.admin_site.each_context(request),
            "title": "Resend failed emails",
            "opts": self.model._meta,
            "eligible": listed[:CONFIRM_LISTED],
            "total": total,
            "more": max(total - CONFIRM_LISTED, 0),
            "skipped": len(selected) - total,
            "selected": selected,
        }
        return TemplateResponse(request, "notifications/email/admin/resend_confirmation.html", context)
