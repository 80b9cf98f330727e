"""Notifications and outbound emails in the admin: find failed ones, read why, resend them or
retry them now; people's email preferences (also on the user screen), the daily digests with
their items, and the suppressed addresses, which operators add and lift.

Notifications, outbound emails, their provider events and digests are records of what
happened: read-only here (``RecordAdmin``), never added, edited or deleted; what an operator
may do to them is an action, confirmed and logged.

Built for big tables: no full-table counts (a capped paginator, no full result
count), related rows selected in the same query, raw id widgets for foreign keys.
Lists fit a 1280-pixel screen: long text is cut, with the whole of it on hover.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, cast

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.options import ActionLocation
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from compliance.models import Tenant
from kgc.console.display import date_cell, truncated
from kgc.console.filters import TenantFilter
from kgc.queues import EMAIL, queue_get
from kgc.texts import counted
from notifications.delivery import emails_resend
from notifications.models import (
    Digest,
    EmailEvent,
    Notification,
    NotificationEmailStatus,
    NotificationPreference,
    OutboundEmail,
    OutboundStatus,
    Suppression,
)
from notifications.outbox import emails_retry_now
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


NO_PUBLIC_URL = (
    "KGC_PUBLIC_URL is not set: emails carry no List-Unsubscribe header (no one-click unsubscribe in mail "
    "clients) and no link to the preferences page. Set it to the address this service is reached at from "
    "the internet, such as https://jobs.example.com."
)
NO_APP_URL = (
    "KGC_APP_URL is not set: emails carry no links to the documents, filings and clients they are about. "
    "Set it to the web app's address, such as https://app.example.com (routes: KGC_APP_*_ROUTE)."
)


def public_url_warn(request: HttpRequest) -> None:
    """Say on the page why emails have no unsubscribe or item links, when they have none."""
    if not settings.KGC_PUBLIC_URL:
        messages.warning(request, NO_PUBLIC_URL)
    if not settings.KGC_APP_URL:
        messages.warning(request, NO_APP_URL)


def pretty_json(value: Any) -> SafeString:
    return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


class RecordAdmin(admin.ModelAdmin):
    """A record of what happened: shown, never added, edited or deleted in the admin.

    What an operator may do to one is an action of its own (``has_resend_permission``:
    the model's change permission), each asking for confirmation and logged."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_resend_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")


# --- What an email's state means to an operator (pure) ------------------------------------------


def email_status_text(
    *, status: str, attempts: int, max_attempts: int, delivery_unknown: bool, available_at: datetime | None = None
) -> str:
    """An outbound email's state in words: a retry says so, with the attempt that comes next and
    when; a failure says whether the message may have reached the recipient."""
    next_attempt = f"attempt {attempts + 1} of {max_attempts}"
    if status == OutboundStatus.RETRYING:
        due = f", due {available_at:%Y-%m-%d %H:%M} UTC" if available_at else ""
        return f"Waiting to retry ({next_attempt}{due})"
    if status == OutboundStatus.QUEUED and attempts:
        return f"Queued to retry ({next_attempt})"
    if status == OutboundStatus.SENDING:
        return f"Sending (attempt {attempts} of {max_attempts})"
    if status == OutboundStatus.FAILED and delivery_unknown:
        return "Failed: delivery unknown (it may have reached the recipient)"
    return OutboundStatus(status).label


def email_status_short(*, status: str, delivery_unknown: bool) -> str:
    """The same in a list cell's few words."""
    if status == OutboundStatus.FAILED and delivery_unknown:
        return "failed: unknown"
    if status == OutboundStatus.SUPPRESSED:
        return "suppressed"
    return OutboundStatus(status).label.lower()


def notification_email_text(*, email_status: str, email_of_it: str | None) -> str:
    """A notification's email status, told by its email while that email is still on its way
    (the notification says "queued" until its email ends: retried, being sent...)."""
    if email_status == NotificationEmailStatus.QUEUED and email_of_it in (
        OutboundStatus.RETRYING,
        OutboundStatus.SENDING,
    ):
        return OutboundStatus(email_of_it).label
    return NotificationEmailStatus(email_status).label


def _max_attempts() -> int:
    return queue_get(EMAIL).retry.max_attempts


@admin.register(Notification)
class NotificationAdmin(RecordAdmin):
    """In-app notifications, as they were made; their email is an outbound email's record."""

    list_display = (
        "id",
        "short_title",
        "kind",
        "urgency",
        "email_state",
        "tenant_name",
        "recipient_name",
        "created",
        "read",
    )
    list_filter = ("email_status", "kind", "urgency", TenantFilter)
    search_fields = ("=id", "title", "dedupe_key", "recipient__email")
    list_select_related = ("tenant", "recipient")
    fields = (
        "tenant",
        "recipient",
        "kind",
        "urgency",
        "title",
        "body",
        "email_state",
        "emails",
        "digest",
        "readable_data",
        "dedupe_key",
        "created_at",
        "read_at",
    )
    readonly_fields = fields
    show_full_result_count = False
    paginator = CappedCountPaginator
    date_hierarchy = None

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        # Its email's own state, in the list's query (no query per row).
        latest = OutboundEmail.objects.filter(notification=OuterRef("pk")).order_by("-pk")
        return super().get_queryset(request).annotate(email_of_it=Subquery(latest.values("status")[:1]))

    @admin.display(description="email", ordering="email_status")
    def email_state(self, obj: Notification) -> str:
        return notification_email_text(email_status=obj.email_status, email_of_it=getattr(obj, "email_of_it", None))

    @admin.display(description="its emails")
    def emails(self, obj: Notification) -> SafeString | str:
        links = [
            format_html(
                '<a href="{}">#{} {}</a>',
                reverse("admin:notifications_outboundemail_change", args=[email.pk]),
                email.pk,
                email_status_short(status=email.status, delivery_unknown=email.delivery_unknown),
            )
            for email in obj.emails.order_by("pk")
        ]
        return format_html_join(", ", "{}", ((link,) for link in links)) if links else "—"

    @admin.display(description="data")
    def readable_data(self, obj: Notification) -> SafeString:
        return pretty_json(obj.data)

    @admin.display(description="title", ordering="title")
    def short_title(self, obj: Notification) -> SafeString | str:
        return truncated(obj.title, 28)

    @admin.display(description="tenant")
    def tenant_name(self, obj: Notification) -> SafeString | str:
        return truncated(obj.tenant.name, 16)

    @admin.display(description="recipient")
    def recipient_name(self, obj: Notification) -> SafeString | str:
        return truncated(obj.recipient.email or obj.recipient.get_username(), 22)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Notification) -> SafeString | str:
        return date_cell(obj.created_at)

    @admin.display(description="read", ordering="read_at")
    def read(self, obj: Notification) -> SafeString | str:
        return date_cell(obj.read_at)


class EmailEventInline(admin.TabularInline):
    """The provider's events about an email, as they came: a record, never edited."""

    model = EmailEvent
    fields = ("event_type", "provider", "recipient", "description", "occurred_at", "received_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(OutboundEmail)
class OutboundEmailAdmin(RecordAdmin):
    """Outbound emails, the outbox's rows: records of what was (to be) sent. An operator resends
    failed ones (the confirmation warns about those whose delivery is unknown) and brings
    forward the retry of those waiting for one."""

    # Fits a 1280-pixel screen beside the filters: the recipient under the subject, the attempts
    # and the provider's latest word under the status.
    list_display = (
        "id",
        "subject_and_recipient",
        "template",
        "status_cell",
        "error",
        "sent",
        "tenant_name",
    )
    list_filter = ("status", "delivery_unknown", "template", TenantFilter)
    search_fields = ("=id", "=to_email", "subject", "=message_id", "idempotency_key")
    list_select_related = ("tenant",)
    fields = (
        "tenant",
        "notification",
        "to_email",
        "to_name",
        "subject",
        "template",
        "state",
        "delivery_unknown_text",
        "last_error",
        "priority",
        "message_id",
        "idempotency_key",
        "created_at",
        "claimed_by",
        "claimed_at",
        "sent_at",
        "finished_at",
        "readable_context",
    )
    readonly_fields = fields
    inlines = (EmailEventInline,)
    actions = ("resend_failed", "retry_now")
    show_full_result_count = False
    paginator = CappedCountPaginator
    change_form_template = "notifications/email/admin/outboundemail_change_form.html"

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<int:email_id>/resend/",
                self.admin_site.admin_view(self.resend_one_view),
                name="notifications_outboundemail_resend",
            ),
            *super().get_urls(),
        ]

    def resend_one_view(self, request: HttpRequest, email_id: int) -> HttpResponse:
        """Resend one failed email, even one whose delivery is unknown: the operator has
        checked with the recipient, and this page says what is at stake first."""
        if not self.has_resend_permission(request):
            raise PermissionDenied
        email = OutboundEmail.objects.filter(pk=email_id).select_related("tenant").first()
        if email is None:
            raise Http404(f"no outbound email with id {email_id}")
        change_url = reverse("admin:notifications_outboundemail_change", args=[email.pk])
        if request.method == "POST":
            result = emails_resend(email_ids=[email.pk], user_id=request.user.pk, include_delivery_unknown=True)
            if result.resent:
                self.message_user(request, f"Queued email #{email.pk} again; the email workers will send it.")
            else:
                self.message_user(
                    request, "Nothing resent: only a failed email that did not bounce can be.", messages.WARNING
                )
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Resend email #{email.pk}?",
            "opts": self.model._meta,
            "email": email,
            "resendable": email.status == OutboundStatus.FAILED
            and not email.events.filter(event_type__in=DO_NOT_RESEND).exists(),
            "cancel_url": change_url,
        }
        return TemplateResponse(request, "notifications/email/admin/resend_one_confirmation.html", context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {"may_resend": self.has_resend_permission(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        public_url_warn(request)
        return super().changelist_view(request, extra_context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutboundEmail]:
        # The latest provider event, in the list's own query (no query per row).
        latest = EmailEvent.objects.filter(outbound_email=OuterRef("pk")).order_by("-received_at", "-pk")
        return super().get_queryset(request).annotate(latest_event=Subquery(latest.values("event_type")[:1]))

    @admin.display(description="subject and recipient", ordering="subject")
    def subject_and_recipient(self, obj: OutboundEmail) -> SafeString:
        return format_html(
            '{}<br><span class="kgc-muted kgc-small kgc-nowrap">to {}</span>',
            truncated(obj.subject, 46),
            truncated(obj.to_email, 46),
        )

    @admin.display(description="status", ordering="status")
    def status_cell(self, obj: OutboundEmail) -> SafeString:
        full = self.state(obj)
        short = email_status_short(status=obj.status, delivery_unknown=obj.delivery_unknown)
        event = getattr(obj, "latest_event", None)
        details = counted(obj.attempts, "attempt") + (f" · {event}" if event else "")
        return format_html(
            '<span class="kgc-nowrap" title="{}">{}</span><br><span class="kgc-muted kgc-small">{}</span>',
            full,
            short,
            details,
        )

    @admin.display(description="status")
    def state(self, obj: OutboundEmail) -> str:
        return email_status_text(
            status=obj.status,
            attempts=obj.attempts,
            max_attempts=_max_attempts(),
            delivery_unknown=obj.delivery_unknown,
            available_at=obj.available_at,
        )

    @admin.display(description="delivery unknown")
    def delivery_unknown_text(self, obj: OutboundEmail) -> str:
        if obj.delivery_unknown:
            return "yes: the message may have reached the recipient; check before resending it"
        return "no"

    @admin.display(description="last error")
    def error(self, obj: OutboundEmail) -> SafeString | str:
        return truncated(obj.last_error, 16)

    @admin.display(description="sent", ordering="sent_at")
    def sent(self, obj: OutboundEmail) -> SafeString | str:
        return date_cell(obj.sent_at)

    @admin.display(description="tenant")
    def tenant_name(self, obj: OutboundEmail) -> SafeString | str:
        return truncated(obj.tenant.name, 14)

    @admin.display(description="context (template data)")
    def readable_context(self, obj: OutboundEmail) -> SafeString:
        return pretty_json(obj.context)

    @admin.action(description="Resend selected failed emails", permissions=["resend"])
    def resend_failed(self, request: HttpRequest, queryset: QuerySet[OutboundEmail]) -> HttpResponse | None:
        selected = list(queryset.values_list("pk", flat=True))
        if request.POST.get("confirm") != "yes":
            return self._resend_confirmation(request, queryset, selected)
        result = emails_resend(email_ids=selected, user_id=request.user.pk)
        if result.resent:
            self.message_user(
                request,
                f"Queued {counted(len(result.resent), 'failed email')} again; the email workers will send them."
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
        failed = queryset.filter(status=OutboundStatus.FAILED).exclude(events__event_type__in=DO_NOT_RESEND)
        # Left out of a bulk resend: each may already have reached its recipient.
        unknown = failed.filter(delivery_unknown=True).count()
        eligible = failed.exclude(delivery_unknown=True)
        listed = list(eligible.order_by("pk")[: CONFIRM_LISTED + 1])
        total = len(listed) if len(listed) <= CONFIRM_LISTED else eligible.count()
        context = {
            **self.admin_site.each_context(request),
            "title": "Resend failed emails",
            "opts": self.model._meta,
            "eligible": listed[:CONFIRM_LISTED],
            "total": total,
            "more": max(total - CONFIRM_LISTED, 0),
            "skipped": len(selected) - total - unknown,
            "unknown": unknown,
            "selected": selected,
        }
        return TemplateResponse(request, "notifications/email/admin/resend_confirmation.html", context)

    @admin.action(description="Retry selected emails waiting to retry now", permissions=["resend"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[OutboundEmail]) -> HttpResponse | None:
        """Emails waiting out their backoff go back in line now, in their old place (an
        operator who fixed the cause need not wait); the others are left alone."""
        waiting = queryset.filter(status=OutboundStatus.RETRYING)
        if request.POST.get("confirm") != "yes":
            listed = list(waiting.order_by("pk")[: CONFIRM_LISTED + 1])
            total = len(listed) if len(listed) <= CONFIRM_LISTED else waiting.count()
            context = {
                **self.admin_site.each_context(request),
                "title": "Retry emails now",
                "opts": self.model._meta,
                "waiting": listed[:CONFIRM_LISTED],
                "total": total,
                "more": max(total - CONFIRM_LISTED, 0),
                "skipped": queryset.count() - total,
                "selected": list(queryset.values_list("pk", flat=True)),
            }
            return TemplateResponse(request, "notifications/email/admin/retry_now_confirmation.html", context)
        with transaction.atomic():
            retried = emails_retry_now(email_ids=list(waiting.values_list("pk", flat=True)))
            if retried:
                LogEntry.objects.log_actions(
                    user_id=cast(int, request.user.pk),  # admin views run for a logged-in staff user only
                    queryset=OutboundEmail.objects.filter(pk__in=retried),
                    action_flag=CHANGE,
                    change_message="Retried now: status waiting to retry → queued",
                )
        if retried:
            self.message_user(
                request, f"{counted(len(retried), 'email')} back in line now; the email workers will send them."
            )
        else:
            self.message_user(request, "Nothing retried: none of the selected emails waits to retry.", messages.WARNING)
        return None


# --- Preferences -------------------------------------------------------------------------------


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    list_display = ("user_name", "tenant_name", "kind", "email", "updated")
    list_filter = ("kind", "email", TenantFilter)
    search_fields = ("user__email", "user__username", "tenant__slug", "tenant__name")
    list_select_related = ("tenant", "user")
    # Found by name as they are typed (the tenant and user screens' own searches), never by id.
    autocomplete_fields = ("tenant", "user")
    show_full_result_count = False
    paginator = CappedCountPaginator

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        public_url_warn(request)
        return super().changelist_view(request, extra_context)

    @admin.display(description="user", ordering="user__username")
    def user_name(self, obj: NotificationPreference) -> SafeString | str:
        return truncated(obj.user.get_username(), 36)

    @admin.display(description="tenant", ordering="tenant__name")
    def tenant_name(self, obj: NotificationPreference) -> SafeString | str:
        return truncated(obj.tenant.name, 36)

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, obj: NotificationPreference) -> SafeString | str:
        return date_cell(obj.updated_at)


class NotificationPreferenceInline(admin.TabularInline):
    """A user's choices in each tenant they belong to (without a row: the tenant's default).

    The tenant is chosen by name among the user's own tenants (a person belongs to a few),
    never typed in as an id. The tenant's page links here (``PREFERENCES_ANCHOR``)."""

    model = NotificationPreference
    fields = ("tenant", "kind", "email", "updated_at")
    readonly_fields = ("updated_at",)
    extra = 0
    verbose_name_plural = "notification email preferences (kinds without one follow the tenant's default)"

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        tenant = formset.form.base_fields.get("tenant")
        if tenant is not None:
            # The form class is made for this request: narrowing its field touches no other.
            members_of = Tenant.objects.filter(memberships__user=obj) if obj is not None else Tenant.objects.none()
            tenant.queryset = members_of.order_by("name")  # type: ignore[attr-defined]
        return formset


def user_admin_with_preferences() -> None:
    """Add the preferences inline to the user screen, whichever user admin is registered (this
    app's admin loads after the others', so a project's own user admin keeps everything else)."""
    user_model = get_user_model()
    if not admin.site.is_registered(user_model):
        admin.site.register(user_model, UserAdmin)
    user_admin = admin.site.get_model_admin(user_model)
    if NotificationPreferenceInline not in user_admin.inlines:
        # The registered instance's own list: its class, maybe Django's UserAdmin, stays as it is.
        user_admin.inlines = [*user_admin.inlines, NotificationPreferenceInline]  # type: ignore[misc]


user_admin_with_preferences()


# --- Digests -----------------------------------------------------------------------------------


class DigestItemInline(admin.TabularInline):
    model = Notification
    fk_name = "digest"
    fields = ("title", "kind", "urgency", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name = "item"
    verbose_name_plural = "items"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Digest)
class DigestAdmin(RecordAdmin):
    """Each person's daily digest: its day, what it carried and the email that carried it (made
    by the digest run only; resent, if need be, from that email's page)."""

    list_display = ("local_date", "recipient_name", "tenant_name", "items_count", "email_status", "created")
    list_filter = ("local_date", TenantFilter)
    search_fields = ("recipient__email", "recipient__username", "tenant__slug")
    list_select_related = ("tenant", "recipient", "outbound_email")
    fields = ("tenant", "recipient", "local_date", "cutoff", "items_count", "outbound_email", "created_at")
    readonly_fields = fields
    inlines = (DigestItemInline,)
    show_full_result_count = False
    paginator = CappedCountPaginator

    @admin.display(description="recipient", ordering="recipient__username")
    def recipient_name(self, obj: Digest) -> SafeString | str:
        return truncated(obj.recipient.email or obj.recipient.get_username(), 36)

    @admin.display(description="tenant", ordering="tenant__name")
    def tenant_name(self, obj: Digest) -> SafeString | str:
        return truncated(obj.tenant.name, 36)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Digest) -> SafeString | str:
        return date_cell(obj.created_at)

    @admin.display(description="email")
    def email_status(self, obj: Digest) -> str:
        email = obj.outbound_email
        if email is None:
            return "—"
        return email_status_short(status=email.status, delivery_unknown=email.delivery_unknown)


# --- Suppressions ------------------------------------------------------------------------------


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    """Addresses no email goes to. Add one by hand (reason "manual"); lift one to send to it again."""

    list_display = ("email", "reason", "scope", "created_at", "short_description")
    list_filter = ("reason",)
    search_fields = ("email",)
    list_select_related = ("tenant",)
    raw_id_fields = ("tenant",)
    readonly_fields = ("created_at",)
    actions = ("lift",)
    show_full_result_count = False
    paginator = CappedCountPaginator

    @admin.display(description="for")
    def scope(self, obj: Suppression) -> str:
        return str(obj.tenant) if obj.tenant_id else "every tenant"

    @admin.display(description="what happened")
    def short_description(self, obj: Suppression) -> str:
        return (obj.description[:120] + "…") if len(obj.description) > 120 else obj.description or "—"

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"reason": "manual", **super().get_changeform_initial_data(request)}

    @admin.action(
        description="Lift selected suppressions (emails to these addresses are sent again)", permissions=["delete"]
    )
    def lift(self, request: HttpRequest, queryset: QuerySet[Suppression]) -> HttpResponse | None:
        # Django's own delete action: a confirmation page, then the rows go, logged with the user.
        return delete_selected(self, request, queryset)

    def get_actions(self, request: HttpRequest, action_location: Any = ActionLocation.CHANGE_LIST) -> Any:
        actions = super().get_actions(request, action_location)
        actions.pop("delete_selected", None)  # "lift" says what deleting a suppression means
        return actions
