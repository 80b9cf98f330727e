"""Reads of the compliance domain."""

from __future__ import annotations

from datetime import UTC, date, datetime

from compliance.exceptions import UnknownTenant
from compliance.models import Tenant


def tenant_get(reference: int | str, *, active_only: bool = True) -> Tenant:
    """A tenant by id (an int, or digits) or slug; ``UnknownTenant`` if there is none."""
    tenants = Tenant.objects.filter(is_active=True) if active_only else Tenant.objects.all()
    if isinstance(reference, bool):
        raise UnknownTenant(reference)
    if isinstance(reference, int) or (isinstance(reference, str) and reference.isdigit()):
        found = tenants.filter(pk=int(reference)).first()
    elif isinstance(reference, str):
        found = tenants.filter(slug=reference).first()
    else:
        found = None
    if found is None:
        raise UnknownTenant(reference)
    return found


def tenant_ids_active() -> list[int]:
    return list(Tenant.objects.filter(is_active=True).order_by("pk").values_list("pk", flat=True))


def tenant_local_date(tenant: Tenant, at: datetime) -> date:
    """The calendar date at ``at`` in the tenant's own time zone (what "today" means to its staff)."""
    return at.astimezone(tenant.zone).date()


def tick_time(timestamp: int | None, now: datetime) -> datetime:
    """A periodic job's scheduled instant (procrastinate passes it), else ``now``."""
    return datetime.fromtimestamp(timestamp, tz=UTC) if timestamp is not None else now
