"""Routes of the JSON API (included at ``/api/v1/``); see kgc/api/openapi.py for the contract."""

from django.urls import URLPattern, path, re_path

from kgc.api import preferences, reminder_settings, views

urlpatterns: list[URLPattern] = [
    path("jobs/compliance-refresh", views.compliance_refresh, name="api-compliance-refresh"),
    path("jobs/expiry-check", views.expiry_check, name="api-expiry-check"),
    path("jobs/filing-reminder", views.filing_reminder, name="api-filing-reminder"),
    path("jobs/email", views.email, name="api-email"),
    path("emails/<int:email_id>", views.email_state, name="api-email-state"),
    path("queues", views.queues, name="api-queues"),
    path("queues/<str:name>", views.queue_stats, name="api-queue-stats"),
    path("queues/<str:name>/pause", views.queue_pause, name="api-queue-pause"),
    path("queues/<str:name>/resume", views.queue_resume, name="api-queue-resume"),
    path("queues/<str:name>/cleanup", views.queue_cleanup, name="api-queue-cleanup"),
    path(
        "tenants/<int:tenant_id>/users/<int:user_id>/notification-preferences",
        preferences.notification_preferences,
        name="api-notification-preferences",
    ),
    path(
        "tenants/<int:tenant_id>/reminder-settings",
        reminder_settings.reminder_settings,
        name="api-reminder-settings",
    ),
    path("openapi.json", views.openapi_json, name="api-openapi"),
    # Anything else under /api/v1/ answers JSON too, not the HTML 404 page.
    re_path(r"^(?P<path>.*)$", views.not_found),
]
