"""A firm's own reminder settings: its reminder thresholds and its holiday calendar.

Thresholds are days before the date (an expiry or a due date) at which a reminder goes:
30/14/7 for documents and 14/7/3 for filings unless the firm sets its own. The rules
are pure (``reminder_days_errors``, ``reminder_days_normalize``); the admin's form and
the API's ``PUT`` both go through ``tenant_reminder_settings_set``, so both refuse the
same values with the same words, field by field, and save nothing on any error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from compliance.calendars import calendar_errors
from compliance.exceptions import ComplianceError
from compliance.models import Tenant

EXPIRY_DAYS_DEFAULT: tuple[int, ...] = (30, 14, 7)
FILING_DAYS_DEFAULT: tuple[int, ...] = (14, 7, 3)
DAYS_MAX = 365
COUNT_MAX = 6
FIELDS = ("expiry_reminder_days", "filing_reminder_days", "holiday_country", "holiday_subdivision")


class InvalidReminderSettings(ComplianceError, ValueError):
    """Settings that cannot be saved; ``errors`` maps each bad field to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))


def reminder_days_errors(value: object) -> str | None:
    """What is wrong with a list of thresholds, or None. ``None`` (the default) is fine."""
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        return "must be a list of whole numbers of days, such as 30, 14, 7"
    if not value:
        return "must hold at least one number of days (leave it empty for the default)"
    if len(value) > COUNT_MAX:
        return f"may hold at most {COUNT_MAX} numbers of days, got {len(value)}"
    for day in value:
        if isinstance(day, bool) or not isinstance(day, int):
            return f"must hold whole numbers of days, got {day!r}"
        if not 0 <= day <= DAYS_MAX:
            return f"each number of days must be from 0 to {DAYS_MAX}, got {day}"
    if len(set(value)) != len(value):
        return "must not repeat a number of days"
    return None


def reminder_days_normalize(value: list[int] | tuple[int, ...] | None) -> list[int] | None:
    """Largest first, as the rules and the admin show them; None stays None (the default)."""
    return None if value is None else sorted(set(value), reverse=True)


def expiry_days(tenant: Tenant) -> tuple[int, ...]:
    """The tenant's document-expiry thresholds (its own, or the default 30/14/7)."""
    return _valid_or(tenant.expiry_reminder_days, EXPIRY_DAYS_DEFAULT)


def filing_days(tenant: Tenant) -> tuple[int, ...]:
    """The tenant's filing thresholds (its own, or the default 14/7/3)."""
    return _valid_or(tenant.filing_reminder_days, FILING_DAYS_DEFAULT)


def _valid_or(value: list[int] | None, default: tuple[int, ...]) -> tuple[int, ...]:
    # The database's check constraint and the forms keep bad values out; a row written
    # around both still never breaks a morning run: it gets the default.
    if value is None or reminder_days_errors(list(value)) is not None:
        return default
    return tuple(sorted(set(value), reverse=True))


def reminder_settings_errors(values: Mapping[str, Any]) -> dict[str, str]:
    """What is wrong with a complete set of a firm's settings, by field (empty when it is fine)."""
    errors = {
        field: problem
        for field in ("expiry_reminder_days", "filing_reminder_days")
        if (problem := reminder_days_errors(values.get(field))) is not None
    }
    country, subdivision = values.get("holiday_country"), values.get("holiday_subdivision")
    for field, value in (("holiday_country", country), ("holiday_subdivision", subdivision)):
        if not isinstance(value, str):
            errors[field] = "must be a string (empty: none)"
    if "holiday_country" not in errors and "holiday_subdivision" not in errors:
        found = calendar_errors(country=str(country), subdivision=str(subdivision))
        errors.update({f"holiday_{field}": message for field, message in found.items()})
    return errors


@dataclass(frozen=True)
class ReminderSettings:
    tenant_id: int
    expiry_reminder_days: list[int] | None
    filing_reminder_days: list[int] | None
    holiday_country: str
    holiday_subdivision: str

    @property
    def effective(self) -> dict[str, list[int]]:
        return {
            "expiry_reminder_days": list(self.expiry_reminder_days or EXPIRY_DAYS_DEFAULT),
            "filing_reminder_days": list(self.filing_reminder_days or FILING_DAYS_DEFAULT),
        }


def tenant_reminder_settings_get(*, tenant: Tenant) -> ReminderSettings:
    return ReminderSettings(
        tenant_id=tenant.pk,
        expiry_reminder_days=tenant.expiry_reminder_days,
        filing_reminder_days=tenant.filing_reminder_days,
        holiday_country=tenant.holiday_country,
        holiday_subdivision=tenant.holiday_subdivision,
    )


def tenant_reminder_settings_set(*, tenant: Tenant, changes: Mapping[str, Any]) -> ReminderSettings:
    """Change the fields named in ``changes`` (others keep theirs); all or nothing.

    Country and subdivision codes are taken in upper case. Raises ``InvalidReminderSettings``
    (a ValueError naming each bad field) and saves nothing when any value is wrong. New
    thresholds apply from the next morning's run; the once-only key of a reminder already
    sent still holds.
    """
    unknown = {field: "unknown field" for field in changes if field not in FIELDS}
    if unknown:
        raise InvalidReminderSettings(unknown)
    values: dict[str, Any] = {field: getattr(tenant, field) for field in FIELDS}
    values.update(changes)
    for field in ("holiday_country", "holiday_subdivision"):
        if values[field] is None:
            values[field] = ""
        if isinstance(values[field], str):
            values[field] = values[field].strip().upper()
    errors = reminder_settings_errors(values)
    if errors:
        raise InvalidReminderSettings(errors)
    for field in ("expiry_reminder_days", "filing_reminder_days"):
        values[field] = reminder_days_normalize(values[field])
    with transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk).update(**values)
    for field, value in values.items():
        setattr(tenant, field, value)
    return tenant_reminder_settings_get(tenant=tenant)
