"""A member's notification email preferences over the JSON API (the web app's settings screen).

``GET`` and ``PUT /api/v1/tenants/{tenantId}/users/{userId}/notification-preferences``,
camelCase like the rest of the API, through the same ``endpoint`` (bearer token, body,
errors, one transaction). Kinds are keyed by their camelCase names (``documentExpiry``);
a value is ``immediate``, ``daily_digest``, ``off``, or ``null`` for the tenant's default.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from compliance.models import Tenant
from compliance.selectors import tenant_get
from kgc.api import parsing
from kgc.api.views import endpoint, problem
from notifications import preferences
from notifications.exceptions import InvalidPreferences

BY_API_NAME = {parsing.camel_case(kind): kind for kind in preferences.KINDS}
API_NAMES = {kind: name for name, kind in BY_API_NAME.items()}
UPDATE_FIELDS = ("preferences",)


class UnknownApiMember(LookupError, ValueError):
    pass


def preferences_update_args(body: dict[str, Any]) -> dict[str, Any]:
    """``{preferences: {documentExpiry?: ..., ...}}`` → the service's changes by kind (shape only)."""
    errors = {name: "unknown field" for name in body if name not in UPDATE_FIELDS}
    given = body.get("preferences")
    if given is None:
        errors["preferences"] = "is required"
    elif not isinstance(given, dict):
        errors["preferences"] = "must be an object of kinds"
    else:
        for name, value in given.items():
            if name not in BY_API_NAME:
                errors[f"preferences.{name}"] = f"unknown kind; known: {', '.join(BY_API_NAME)}"
            elif value is not None and not isinstance(value, str):
                errors[f"preferences.{name}"] = "must be a string or null"
    if errors:
        raise parsing.InvalidRequest.from_errors(errors)
    return {BY_API_NAME[name]: value for name, value in (given or {}).items()}


def _describe(member: preferences.MemberPreferences) -> dict[str, Any]:
    return {
        "tenantId": member.tenant_id,
        "userId": member.user_id,
        "tenantDefault": member.tenant_default,
        "preferences": {API_NAMES[kind]: value for kind, value in member.chosen.items()},
        "effective": {API_NAMES[kind]: value for kind, value in member.effective.items()},
    }


def _tenant(tenant_id: int, user_id: int) -> Tenant:
    if tenant_id > parsing.MAX_ID or user_id > parsing.MAX_ID:  # no such row; and no DataError on a bigint
        raise UnknownApiMember(f"user {user_id} is not a member of tenant {tenant_id}")
    return tenant_get(tenant_id)


@endpoint("GET")
def _get(request: HttpRequest, tenant_id: int, user_id: int) -> JsonResponse:
    member = preferences.notification_preferences_get(tenant=_tenant(tenant_id, user_id), user_id=user_id)
    return JsonResponse(_describe(member))


@endpoint("PUT")
def _put(request: HttpRequest, tenant_id: int, user_id: int, body: dict[str, Any]) -> JsonResponse:
    changes = preferences_update_args(body)
    tenant = _tenant(tenant_id, user_id)
    try:
        member = preferences.notification_preferences_set(tenant=tenant, user_id=user_id, changes=changes)
    except InvalidPreferences as exc:
        errors = {f"preferences.{API_NAMES.get(kind, kind)}": message for kind, message in exc.errors.items()}
        raise parsing.InvalidRequest.from_errors(errors) from None
    return JsonResponse(_describe(member))


@csrf_exempt  # bearer tokens, not cookies (as every API route)
def notification_preferences(request: HttpRequest, tenant_id: int, user_id: int) -> JsonResponse:
    """``GET`` reads a member's choices, ``PUT`` changes the kinds it names (others keep theirs)."""
    if request.method == "PUT":
        return _put(request, tenant_id=tenant_id, user_id=user_id)
    if request.method == "GET":
        return _get(request, tenant_id=tenant_id, user_id=user_id)
    return problem(405, f"{request.method} is not allowed here; use GET or PUT", Allow="GET, PUT")
