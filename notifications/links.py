"""Links from an email to the item's page in the web app (``KGC_APP_URL`` and its route templates).

The web app, not this service, shows documents, filings and clients, so an item links
there: ``KGC_APP_URL`` plus the route of its kind (``KGC_APP_DOCUMENT_ROUTE``,
``KGC_APP_FILING_ROUTE``, ``KGC_APP_CLIENT_ROUTE``). Without ``KGC_APP_URL``, or without
the ids a route needs, there is no link at all: no link beats one that answers 404.
The unsubscribe and preferences links are this service's own (``KGC_PUBLIC_URL``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from notifications.models import NotificationKind

# Each kind's route setting, and the data keys (camelCase) that fill its placeholders.
ROUTE_OF_KIND: dict[str, str] = {
    NotificationKind.DOCUMENT_EXPIRY: "document",
    NotificationKind.FILING_REMINDER: "filing",
    NotificationKind.FILING_ESCALATION: "filing",
    NotificationKind.COMPLIANCE_ALERT: "client",
}
DATA_KEYS = {"client_id": "clientId", "document_id": "documentId", "filing_id": "filingId", "tenant_id": "tenantId"}


@dataclass(frozen=True)
class AppRoutes:
    """The web app's base URL (empty: no links) and its route templates by route name."""

    base: str
    document: str = "/clients/{client_id}/documents/{document_id}"
    filing: str = "/filings/{filing_id}"
    client: str = "/clients/{client_id}"


def app_routes() -> AppRoutes:
    """The routes in force (settings read once at start-up)."""
    return AppRoutes(
        base=settings.KGC_APP_URL,
        document=settings.KGC_APP_DOCUMENT_ROUTE,
        filing=settings.KGC_APP_FILING_ROUTE,
        client=settings.KGC_APP_CLIENT_ROUTE,
    )


def item_url(*, routes: AppRoutes, kind: str, data: dict[str, Any], tenant_id: int | None = None) -> str:
    """The item's page in the web app, or "" without an app URL or the ids its route needs (pure)."""
    route_name = ROUTE_OF_KIND.get(kind)
    if not routes.base or route_name is None:
        return ""
    values = {**data, **({"tenantId": tenant_id} if tenant_id is not None else {})}
    try:
        ids = {name: int(values[key]) for name, key in DATA_KEYS.items() if key in values}
        path = getattr(routes, route_name).format(**ids)
    except (KeyError, TypeError, ValueError):
        return ""
    return routes.base.rstrip("/") + path
