"""A firm's reminder settings over the JSON API: its thresholds and its holiday calendar.

``GET`` and ``PUT /api/v1/tenants/{tenantId}/reminder-settings``, camelCase like the rest of
the API, through the same ``endpoint`` (bearer token, body, errors, one transaction). The
service is ``compliance.firm_settings.tenant_reminder_settings_set``, which the admin's
form uses too: both refuse the same values, field by field, and save nothing on any error.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from compliance import firm_settings
from compliance.models import Tenant
from compliance.selectors import tenant_get
from kgc.api import parsing
from kgc.api.views import endpoint, problem

BY_API_NAME = {parsing.camel_case(field): field for field in firm_settings.FIELDS}
API_NAMES = {field: name for name, field in BY_API_NAME.items()}


class UnknownApiTenant(LookupError, ValueError):
    pass


def reminder_settings_update_args(body: dict[str, Any]) -> dict[str, Any]:
    """``{expiryReminderDays?, filingReminderDays?, holidayCountry?, holidaySubdivision?}`` → the
    service's changes (shape only: what the values mean is the service's to say)."""
    if not body:
        raise parsing.InvalidRequest(f"name at least one of {', '.join(BY_API_NAME)}")
    errors = {name: "unknown field" for name in body if name not in BY_API_NAME}
    if errors:
        raise parsing.InvalidRequest.from_errors(errors)
    return {BY_API_NAME[name]: value for name, value in body.items()}


def _describe(settings: firm_settings.ReminderSettings) -> dict[str, Any]:
    return {
        "tenantId": settings.tenant_id,
        "expiryReminderDays": settings.expiry_reminder_days,
        "filingReminderDays": settings.filing_reminder_days,
        "holidayCountry": settings.holiday_country,
        "holidaySubdivision": settings.holiday_subdivision,
        "effective": {parsing.camel_case(field): days for field, days in settings.effective.items()},
    }


def _tenant(tenant_id: int) -> Tenant:
    if tenant_id > parsing.MAX_ID:  # no such row; and no DataError on a bigint
        raise UnknownApiTenant(f"no tenant with id {tenant_id}")
    return tenant_get(tenant_id)


@endpoint("GET")
def _get(request: HttpRequest, tenant_id: int) -> JsonResponse:
    return JsonResponse(_describe(firm_settings.tenant_reminder_settings_get(tenant=_tenant(tenant_id))))


@endpoint("PUT")
def _put(request: HttpRequest, tenant_id: int, body: dict[str, Any]) -> JsonResponse:
    changes = reminder_settings_update_args(body)
    tenant = _tenant(tenant_id)
    try:
        saved = firm_settings.tenant_reminder_settings_set(tenant=tenant, changes=changes)
    except firm_settings.InvalidReminderSettings as exc:
        errors = {API_NAMES.get(field, field): message for field, message in exc.errors.items()}
        raise parsing.InvalidRequest.from_errors(errors) from None
    return JsonResponse(_describe(saved))


@csrf_exempt  # bearer tokens, not cookies (as every API route)
def reminder_settings(request: HttpRequest, tenant_id: int) -> JsonResponse:
    """``GET`` reads a firm's reminder settings, ``PUT`` changes the fields it names (others keep theirs)."""
    if request.method == "PUT":
        return _put(request, tenant_id=tenant_id)
    if request.method == "GET":
        return _get(request, tenant_id=tenant_id)
    return problem(405, f"{request.method} is not allowed here; use GET or PUT", Allow="GET, PUT")
