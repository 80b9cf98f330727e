from __future__ import annotations

import hmac
import ipaddress
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from kgc import metrics


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up (no database access, so it answers even when PostgreSQL does not)."""
    return JsonResponse({"status": "ok"})


def readiness_checks(*, now: datetime) -> dict[str, str]:
    """Each check's verdict, "ok" or what is wrong; the others are skipped once the database fails."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return {"database": f"unreachable: {type(exc).__name__}", "migrations": "skipped", "workers": "skipped"}
    return {"database": "ok", "migrations": _migrations_verdict(), "workers": _workers_verdict(now)}


def _migrations_verdict() -> str:
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if not pending:
        return "ok"
    first = pending[0][0]
    return f"{len(pending)} migration(s) not applied, starting with {first.app_label}.{first.name}"


def _workers_verdict(now: datetime) -> str:
    latest = metrics.latest_heartbeat()
    if latest is not None and now - latest <= metrics.HEARTBEAT_FRESH:
        return "ok"
    return f"no worker heartbeat in the last {int(metrics.HEARTBEAT_FRESH.total_seconds())} s"


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to serve: the database answers, every migration is applied and a worker is alive."""
    checks = readiness_checks(now=timezone.now())
    ready = all(verdict == "ok" for verdict in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def _metrics_allowed(request: HttpRequest) -> bool:
    token = getattr(settings, "KGC_METRICS_TOKEN", "")
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    # Without a token only a scraper on the same machine may read (REMOTE_ADDR: behind a
    # proxy on the same host, set a token instead).
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The queues, jobs, workers and emails in Prometheus' text format."""
    if not _metrics_allowed(request):
        response: Any = HttpResponse("forbidden\n", status=403, content_type="text/plain")
        if getattr(settings, "KGC_METRICS_TOKEN", ""):
            response.status_code = 401
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body = metrics.metrics_render(now=timezone.now())
    return HttpResponse(body, content_type="text/plain; version=0.0.4; charset=utf-8")
