"""The compliance app's errors. Each is also the standard exception it resembles, so
callers that only know Python's ``ValueError`` or ``LookupError`` still catch it."""


class ComplianceError(Exception):
    """Base of the compliance app's errors."""


class UnknownTenant(ComplianceError, LookupError, ValueError):
    def __init__(self, tenant: object) -> None:
        self.tenant = tenant
        super().__init__(f"no active tenant with id or slug {tenant!r}")
