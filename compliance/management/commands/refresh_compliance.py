"""Refresh compliance scores now: queue the jobs (default) or run them here (``--sync``)."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from compliance import services
from compliance.exceptions import UnknownTenant
from compliance.models import ScoreLevel, Tenant
from compliance.selectors import tenant_get, tenant_local_date
from kgc.commands import ProjectCommand, iso_date
from kgc.job_helpers import compliance_refresh_defer
from kgc.texts import counted

logger = logging.getLogger("compliance")

TRIGGERED_BY = "command"


class Command(ProjectCommand):
    help = (
        "Refresh compliance scores of one tenant or every active tenant. By default queues the jobs "
        "for the workers; --sync scores here, with a progress bar, and prints what it did."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="tenant id or slug (default: every active tenant)")
        parser.add_argument("--as-of", type=iso_date, help="YYYY-MM-DD to score for (default: each tenant's today)")
        parser.add_argument("--sync", action="store_true", help="run in this process instead of queueing jobs")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = tenant_get(options["tenant"]) if options["tenant"] is not None else None
        except UnknownTenant as exc:
            raise CommandError(str(exc), returncode=2) from None
        as_of: date | None = options["as_of"]
        if options["sync"]:
            self._run(tenant, as_of, show_progress=options["verbosity"] > 0)
        else:
            self._enqueue(tenant, as_of)

    def _enqueue(self, tenant: Tenant | None, as_of: date | None) -> None:
        scope = f"tenant {tenant.slug}" if tenant else "every active tenant"
        if as_of is None:
            job_id, created = compliance_refresh_defer(tenant.pk if tenant else None, triggered_by=TRIGGERED_BY)
            if created:
                self.stdout.write(f"Queued the compliance refresh of {scope}: job {job_id}")
            else:
                self.stdout.write(f"A compliance refresh of {scope} was already waiting: job {job_id}; nothing queued")
            return
        tenants = [tenant] if tenant else list(Tenant.objects.filter(is_active=True).order_by("pk"))
        job_ids = services.compliance_refresh_for_day_fan_out(tenants=tenants, as_of=as_of, triggered_by=TRIGGERED_BY)
        self.stdout.write(f"Queued {counted(len(job_ids), 'compliance refresh job')} of {scope} for {as_of}")

    def _run(self, tenant: Tenant | None, as_of: date | None, *, show_progress: bool) -> None:
        tenants = [tenant] if tenant else list(Tenant.objects.filter(is_active=True).order_by("pk"))
        now = timezone.now()
        scored, dropped, alerts, failed = 0, 0, 0, 0
        levels: Counter[str] = Counter()
        for each in tqdm(tenants, unit="tenant", disable=not show_progress or len(tenants) < 2):
            day = as_of or tenant_local_date(each, now)
            try:
                result = services.refresh_tenant_compliance(tenant=each, as_of=day, triggered_by=TRIGGERED_BY)
            except Exception as exc:  # one tenant's failure must not stop the others, as with the jobs
                failed += 1
                logger.exception("compliance refresh failed", extra={"tenant_id": each.pk})
                self.stderr.write(f"tenant {each.slug}: {type(exc).__name__}: {exc}")
                continue
            scored += result.clients_scored
            dropped += result.clients_dropped
            alerts += result.alerts
            levels.update(result.levels)
        per_level = ", ".join(f"{level} {levels.get(level, 0)}" for level in ScoreLevel.values)
        day_text = str(as_of) if as_of else "each tenant's today"
        self.stdout.write(
            f"Scored {counted(scored, 'client')} of {counted(len(tenants) - failed, 'tenant')} for {day_text}: "
            f"{per_level}; "
            f"{counted(dropped, 'level drop')}, {counted(alerts, 'alert')} raised"
        )
        if failed:
            raise CommandError(f"{counted(failed, 'tenant')} failed; see above", returncode=1)
