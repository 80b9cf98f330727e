from __future__ import annotations

import hmac
import ipaddress
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from kgc.console import collector
from kgc.queue import health
from kgc.queues import product_queues


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up (no database access, so it answers even when PostgreSQL does not)."""
    return JsonResponse({"status": "ok"})


CLUSTER_CHECKS = ("workers", "scheduler", "duties")


def readiness_checks() -> dict[str, str]:
    """Each check's verdict, "ok" or what is wrong; the others are skipped once the database fails.
    Ages are measured on the database's clock, which stamps heartbeats and ticks.

    * database: it answers;
    * migrations: all applied;
    * workers: every product queue has a live worker (a heartbeat within KGC_WORKER_DEAD_AFTER);
    * scheduler: it checked its schedules recently (its period plus a leader's replacement);
    * duties: no live worker's duty (listener, heartbeat, fetch...) has been failing for
      longer than KGC_DUTY_FAILING_AFTER.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        skipped = dict.fromkeys(("migrations", *CLUSTER_CHECKS), "skipped")
        return {"database": f"unreachable: {type(exc).__name__}", **skipped}
    cluster = health.cluster_read()
    verdicts = health.readiness_verdicts(
        cluster,
        now=cluster.now,
        product_queues=[queue.name for queue in product_queues()],
        dead_after=health.worker_dead_after(),
        duty_failing_after=timedelta(seconds=settings.KGC_DUTY_FAILING_AFTER),
        scheduler_late_after=health.scheduler_late_after(leader_ttl=settings.KGC_LEADER_TTL),
    )
    return {"database": "ok", "migrations": _migrations_verdict(), **verdicts}


def _migrations_verdict() -> str:
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if not pending:
        return "ok"
    first = pending[0][0]
    return f"{len(pending)} migration(s) not applied, starting with {first.app_label}.{first.name}"


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready: the database answers, migrations are applied, and the workers, the scheduler and
    their duties are healthy (503 otherwise).

    Anyone gets the status and each check's name with "ok" or "failing"; what is wrong (host
    names, pids, the database's own errors) only a caller trusted with the metrics token.
    """
    checks = readiness_checks()
    ready = all(verdict == "ok" for verdict in checks.values())
    if not _trusted(request):
        checks = {name: "ok" if verdict == "ok" else "failing" for name, verdict in checks.items()}
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def _trusted(request: HttpRequest) -> bool:
    """A caller with ``Authorization: Bearer $KGC_METRICS_TOKEN``. Without a token configured:
    nobody outside DEBUG (a reverse proxy on the same host makes every client look local),
    and in DEBUG a caller on this machine."""
    token = getattr(settings, "KGC_METRICS_TOKEN", "")
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    if not settings.DEBUG:
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The queues, jobs, workers and emails, in Prometheus' text format or, when the ``Accept``
    header asks for it, OpenMetrics (``kgc/console/collector.py``)."""
    if not _trusted(request):
        if getattr(settings, "KGC_METRICS_TOKEN", ""):
            response: Any = HttpResponse("unauthorized\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        refusal = "forbidden" if settings.DEBUG else "forbidden: set KGC_METRICS_TOKEN and send it as a bearer token"
        return HttpResponse(refusal + "\n", status=403, content_type="text/plain")
    body, content_type = collector.metrics_exposition(accept=request.headers.get("Accept", ""), now=timezone.now())
    response = HttpResponse(body, content_type=content_type)
    patch_vary_headers(response, ["Accept"])
    return response
