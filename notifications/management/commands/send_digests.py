"""Queue the daily digests now, or show what they would hold (``--dry-run``)."""

from __future__ import annotations

from argparse import ArgumentTypeError
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from compliance.exceptions import UnknownTenant
from compliance.models import Tenant
from compliance.selectors import tenant_get, tenant_local_date
from kgc.commands import iso_date
from kgc.texts import counted
from notifications import digests


class Command(BaseCommand):
    help = (
        "Queue each member's daily digest of the items waiting for it (at most one per person and tenant-local "
        "day), and list them. --as-of is the tenant-local day whose digest is due (default: each tenant's today). "
        "--dry-run lists what would be sent and writes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="tenant id or slug (default: every active tenant)")
        parser.add_argument("--as-of", help="YYYY-MM-DD: the tenant-local day of the digest (default: today there)")
        parser.add_argument("--dry-run", action="store_true", help="list what would be sent; write nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = tenant_get(options["tenant"]) if options["tenant"] is not None else None
        except UnknownTenant as exc:
            raise CommandError(str(exc), returncode=2) from None
        try:
            as_of = iso_date(options["as_of"]) if options["as_of"] is not None else None
        except ArgumentTypeError as exc:
            raise CommandError(f"--as-of: {exc}", returncode=2) from None
        tenants = [tenant] if tenant else list(Tenant.objects.filter(is_active=True).order_by("pk"))
        now = timezone.now()
        dry_run = options["dry_run"]
        count = items = later = held = 0
        for each in tenants:
            day = as_of or tenant_local_date(each, now)
            result = (
                digests.digests_plan(tenant=each, as_of=day)
                if dry_run
                else digests.digests_send(tenant=each, as_of=day)
            )
            for digest in result.digests:
                self.stdout.write(f"{each.slug} {day}: {digest.name} <{digest.email}> ← {digest.subject}")
            count += len(result.digests)
            items += result.items
            later += result.waiting_later
            held += result.waiting_held
        verb = "would be queued; nothing was written" if dry_run else "queued"
        line = f"{counted(count, 'digest')} with {counted(items, 'item')} for {counted(len(tenants), 'tenant')} {verb}"
        self.stdout.write(line)
        if later:
            self.stdout.write(
                f"{counted(later, 'item')} {'waits' if later == 1 else 'wait'} for a later day's digest: made after "
                f"that day's digest hour ({settings.KGC_DIGEST_HOUR:02d}:00 in each tenant's time)"
            )
        if held:
            self.stdout.write(
                f"{counted(held, 'item')} of members who get no digest (inactive, or without an email address) "
                f"{'waits' if held == 1 else 'wait'}: {'it expires' if held == 1 else 'they expire'} after "
                f"{counted(settings.KGC_DIGEST_MAX_WAIT_DAYS, 'day')}"
            )
