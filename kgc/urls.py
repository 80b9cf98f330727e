from django.contrib import admin
from django.urls import include, path

from kgc.console import pages, views

urlpatterns = [
    path("favicon.ico", pages.favicon, name="favicon"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics_view, name="metrics"),
    path("api/v1/", include("kgc.api.urls")),
    # The pages an email's unsubscribe and preferences links open (signed tokens, no login).
    path("notifications/", include("notifications.urls")),
    # Delivery tracking webhooks (basic auth with ANYMAIL["WEBHOOK_SECRET"]).
    path("anymail/", include("anymail.urls")),
    path("admin/", admin.site.urls),
]
