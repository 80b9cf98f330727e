"""The admin site of the jobs console: its names, and its index with the console's links."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest


class ConsoleAdminConfig(AdminConfig):
    """Django's admin, with the jobs console's site (named in INSTALLED_APPS)."""

    default_site = "kgc.console.admin_site.ConsoleAdminSite"


class ConsoleAdminSite(admin.AdminSite):
    site_header = "KGC Compliance Cloud: jobs console"
    site_title = "KGC jobs console"
    index_template = "admin/kgc/index.html"
    # The navigation sidebar takes a quarter of a 1280-pixel screen from every list (beside the
    # filters); the index and the breadcrumbs lead everywhere it does.
    enable_nav_sidebar = False

    def each_context(self, request: HttpRequest) -> dict[str, Any]:
        """ "View site" opens the web app (``KGC_APP_URL``); without one there is no site to view (this
        service serves only the admin, the API and the email links), so there is no such link."""
        context = super().each_context(request)
        context["site_url"] = settings.KGC_APP_URL or None
        return context

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        """procrastinate's job model is listed as "Jobs" (its own name is "Procrastinate jobs", and a
        model's names are part of its migration state, so they are renamed here rather than there)."""
        app_list = super().get_app_list(request, app_label)
        for app in app_list:
            for model in app["models"]:
                if model["object_name"] == "ProcrastinateJob":
                    model["name"] = "Jobs"
        return app_list
