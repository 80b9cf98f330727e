"""The compliance app's errors. Each is also the standard exception it resembles, so
callers that only know Python's ``ValueError`` or ``LookupError`` still catch it."""


class ComplianceError(Exception):
    """Base of the compliance app's errors."""


class UnknownTenant(ComplianceError, LookupError, ValueError):
    """No tenant answers to this id or slug, or the one that does is inactive (``inactive``)."""

    def __init__(self, tenant: object, *, inactive: bool = False) -> None:
        self.tenant = tenant
        self.inactive = inactive
        super().__init__(unknown_tenant_text(tenant, inactive=inactive))


def unknown_tenant_text(tenant: object, *, inactive: bool) -> str:
    """What is wrong with a tenant reference, in its own terms (an id, a slug or either)."""
    if inactive:
        return f"tenant {tenant!r} is inactive"
    if isinstance(tenant, int) and not isinstance(tenant, bool):
        return f"no tenant with id {tenant}"
    if isinstance(tenant, str):
        return f"no tenant with slug or id {tenant!r}" if tenant.isdigit() else f"no tenant with slug {tenant!r}"
    return f"no tenant {tenant!r}"
