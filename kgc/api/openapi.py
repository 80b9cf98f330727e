"""The OpenAPI 3 description of the JSON API, served at ``/api/v1/openapi.json``.

Built from the same constants as the code (queues, templates, limits), and kept true
by tests/api/test_openapi.py, which checks every route against it.
"""

from __future__ import annotations

from typing import Any

from compliance import firm_settings
from compliance.models import NotificationEmailDefault
from kgc import job_helpers
from kgc.api import parsing
from kgc.queue import jobs
from kgc.queues import QUEUES, product_queues
from notifications.models import OutboundStatus
from notifications.preferences import CHOICES, KINDS
from notifications.services import EMAIL_TEMPLATES, PRIORITY_NAMES

PRODUCT_QUEUES = [queue.name for queue in product_queues()]
STAT_FIELDS = ("waiting", "active", "delayed", "completed", "failed", "paused", "cancelled")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    """Omitted and ``null`` mean the same: the default."""
    return {**schema, "nullable": True}


TENANT_ID = {"type": "integer", "format": "int64", "minimum": 1, "maximum": parsing.MAX_ID}
TENANT_REF = {
    "oneOf": [TENANT_ID, {"type": "string", "minLength": 1, "maxLength": parsing.MAX_SLUG}],
    "description": "The tenant's id, or its slug.",
}
AGE = {"type": "integer", "format": "int64", "minimum": 0, "maximum": parsing.MAX_AGE_MS}
ID_SCHEMA = {"type": "integer", "format": "int64", "minimum": 1, "maximum": parsing.MAX_ID}
ONE_LINE = "^[^\\r\\n]*$"

ERRORS = {
    400: _json(_ref("Error"), "The body is not JSON, or a field is wrong (``errors`` says which)."),
    401: {
        **_json(_ref("Error"), "No bearer token, or not one of the server's KGC_API_TOKENS."),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
    404: _json(
        _ref("Error"), "No such queue, or no tenant with that id or slug, or an inactive one (the message says which)."
    ),
    411: _json(_ref("Error"), "A body was sent without Content-Length."),
    413: _json(_ref("Error"), f"The body is over {parsing.MAX_BODY_BYTES} bytes."),
}


def _responses(ok: dict[int, dict[str, Any]], errors: tuple[int, ...]) -> dict[str, Any]:
    return {str(status): response for status, response in {**ok, **{code: ERRORS[code] for code in errors}}.items()}


def _post(
    operation_id: str, summary: str, body: str, ok: dict[int, dict[str, Any]], *, not_found: bool = True
) -> dict[str, Any]:
    errors = (400, 401, 404, 411, 413) if not_found else (400, 401, 411, 413)
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "requestBody": {"required": False, "content": {"application/json": {"schema": _ref(body)}}},
            "responses": _responses(ok, errors),
        }
    }


ENQUEUED = {
    201: _json(_ref("EnqueuedJob"), "The job was queued."),
}
QUEUE_PARAMETER = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "enum": PRODUCT_QUEUES},
}


def _queue_path(operation: dict[str, Any]) -> dict[str, Any]:
    return {"parameters": [QUEUE_PARAMETER], **operation}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "errors": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["error", "errors"],
    },
    "EnqueuedJob": _object(
        {
            "id": {"type": "integer", "format": "int64"},
            "queue": {"type": "string", "enum": list(QUEUES)},
            "name": {"type": "string", "description": "The task name, e.g. compliance.refresh_tenant."},
        },
        ("id", "queue", "name"),
    ),
    "ComplianceRefreshRequest": _object(
        {
            "tenantId": _optional(
                {**TENANT_REF, "description": "The tenant's id or slug. Omitted: every active tenant."}
            ),
            "triggeredBy": _optional(
                {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": job_helpers.TRIGGERED_BY_MAX,
                    "pattern": job_helpers.TRIGGER_PATTERN,
                    "default": "manual",
                    "description": (
                        "Why the refresh was asked for, kept on each score: one of "
                        + ", ".join(job_helpers.TRIGGER_SOURCES)
                        + ", optionally followed by ':' and who or what (manual:ana@firm.example)."
                    ),
                }
            ),
            "priority": _optional(
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": jobs.MAX_PRIORITY,
                    "description": "As in BullMQ: 1 is the highest. Omitted: the default priority.",
                }
            ),
        }
    ),
    "TenantRequest": _object(
        {"tenantId": _optional({**TENANT_REF, "description": "The tenant's id or slug. Omitted: every active tenant."})}
    ),
    "EmailRequest": _object(
        {
            "recipientEmail": {"type": "string", "format": "email", "maxLength": 254},
            "recipientName": {"type": "string", "maxLength": 200, "pattern": ONE_LINE},
            "subject": {"type": "string", "maxLength": 300, "pattern": "^[^\\r\\n]*\\S[^\\r\\n]*$"},
            "template": {"type": "string", "enum": list(EMAIL_TEMPLATES)},
            "data": {
                "type": "object",
                "description": "The template's variables: at most 32 KiB of JSON, strings without NUL characters.",
            },
            "tenantId": TENANT_ID,
            "priority": _optional(
                {
                    "type": "string",
                    "enum": list(PRIORITY_NAMES),
                    "default": "normal",
                    "description": "Urgent emails go before any other; within a priority, each firm in turn.",
                }
            ),
        },
        tuple(parsing.EMAIL_FIELDS),
    ),
    "EmailState": _object(
        {
            "id": {"type": "integer", "format": "int64"},
            "queue": {"type": "string", "enum": ["email"]},
            "tenantId": {"type": "integer", "format": "int64"},
            "status": {"type": "string", "enum": list(OutboundStatus.values)},
            "priority": {"type": "string", "enum": list(PRIORITY_NAMES)},
            "attempts": {"type": "integer", "minimum": 0},
            "lastError": {"type": "string"},
            "deliveryUnknown": {
                "type": "boolean",
                "description": "It may have reached the recipient; nothing sends it again on its own.",
            },
            "messageId": {"type": "string"},
            "createdAt": {"type": "string", "format": "date-time"},
            "sentAt": {"type": "string", "format": "date-time", "nullable": True},
        },
        (
            "id",
            "queue",
            "tenantId",
            "status",
            "priority",
            "attempts",
            "lastError",
            "deliveryUnknown",
            "messageId",
            "createdAt",
            "sentAt",
        ),  # fmt: skip
    ),
    "CleanupRequest": _object(
        {
            "completedAge": _optional({**AGE, "description": "Milliseconds. Omitted: completed jobs are kept."}),
            "failedAge": _optional({**AGE, "description": "Milliseconds. Omitted: failed jobs are kept."}),
        }
    ),
    "NoFields": _object({}),
    "QueueStats": _object(
        {
            **{field: {"type": "integer", "minimum": 0} for field in STAT_FIELDS},
            "isPaused": {"type": "boolean", "description": "True while the queue is paused (BullMQ's isPaused())."},
        },
        (*STAT_FIELDS, "isPaused"),
    ),
    "AllQueueStats": _object({name: _ref("QueueStats") for name in PRODUCT_QUEUES}, tuple(PRODUCT_QUEUES)),
    "QueueState": _object(
        {
            "queue": {"type": "string", "enum": PRODUCT_QUEUES},
            "paused": {"type": "boolean"},
            "changed": {"type": "boolean", "description": "False when the queue already was in that state."},
        },
        ("queue", "paused", "changed"),
    ),
    "CleanupResult": _object(
        {
            "queue": {"type": "string", "enum": PRODUCT_QUEUES},
            "completed": {"type": "integer", "minimum": 0},
            "failed": {"type": "integer", "minimum": 0},
        },
        ("queue", "completed", "failed"),
    ),
}

PATHS: dict[str, Any] = {
    "/api/v1/jobs/compliance-refresh": _post(
        "enqueueComplianceRefresh",
        "Refresh one tenant's compliance scores, or every active tenant's",
        "ComplianceRefreshRequest",
        {**ENQUEUED, 200: _json(_ref("EnqueuedJob"), "The tenant already had a refresh waiting: that job.")},
    ),
    "/api/v1/jobs/expiry-check": _post(
        "enqueueExpiryCheck", "Check expiring documents (one tenant or all)", "TenantRequest", ENQUEUED
    ),
    "/api/v1/jobs/filing-reminder": _post(
        "enqueueFilingReminder", "Check upcoming filings (one tenant or all)", "TenantRequest", ENQUEUED
    ),
    "/api/v1/jobs/email": _post(
        "enqueueEmail",
        "Queue one email (the answer's id is the email's: GET /api/v1/emails/{id})",
        "EmailRequest",
        ENQUEUED,
    ),
    "/api/v1/emails/{id}": {
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": ID_SCHEMA}],
        "get": {
            "operationId": "getEmail",
            "summary": "Where one queued email stands",
            "responses": _responses({200: _json(_ref("EmailState"), "The email.")}, (401, 404)),
        },
    },
    "/api/v1/queues": {
        "get": {
            "operationId": "getAllQueueStats",
            "summary": "Job counts of the four queues, keyed by queue name",
            "responses": _responses({200: _json(_ref("AllQueueStats"), "The counts.")}, (401,)),
        }
    },
    "/api/v1/queues/{name}": _queue_path(
        {
            "get": {
                "operationId": "getQueueStats",
                "summary": "One queue's job counts",
                "responses": _responses({200: _json(_ref("QueueStats"), "The counts.")}, (401, 404)),
            }
        }
    ),
    "/api/v1/queues/{name}/pause": _queue_path(
        _post(
            "pauseQueue",
            "Stop workers from starting this queue's jobs",
            "NoFields",
            {200: _json(_ref("QueueState"), "Paused.")},
        )
    ),
    "/api/v1/queues/{name}/resume": _queue_path(
        _post(
            "resumeQueue",
            "Let workers start this queue's jobs again",
            "NoFields",
            {200: _json(_ref("QueueState"), "Running.")},
        )
    ),
    "/api/v1/queues/{name}/cleanup": _queue_path(
        _post(
            "cleanupQueue",
            "Delete this queue's jobs that finished longer ago than the ages",
            "CleanupRequest",
            {200: _json(_ref("CleanupResult"), "How many jobs were deleted.")},
        )
    ),
    "/api/v1/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This description",
            "security": [],
            "responses": {
                "200": {"description": "OpenAPI 3", "content": {"application/json": {"schema": {"type": "object"}}}}
            },
        }
    },
}

# --- A member's notification email preferences (kgc/api/preferences.py) ----------------------

PREFERENCE_KINDS = [parsing.camel_case(kind) for kind in KINDS]
ID = {"type": "integer", "format": "int64", "minimum": 1, "maximum": parsing.MAX_ID}
EMAIL_CHOICE = {"type": "string", "enum": list(CHOICES)}
CHOICE_OR_DEFAULT = {
    "type": "string",
    "enum": [*CHOICES, None],
    "nullable": True,
    "description": "null: the tenant's default applies.",
}
SCHEMAS["NotificationPreferences"] = _object(
    {
        "tenantId": ID,
        "userId": ID,
        "tenantDefault": {"type": "string", "enum": list(NotificationEmailDefault.values)},
        "preferences": _object(dict.fromkeys(PREFERENCE_KINDS, CHOICE_OR_DEFAULT), tuple(PREFERENCE_KINDS)),
        "effective": _object(dict.fromkeys(PREFERENCE_KINDS, EMAIL_CHOICE), tuple(PREFERENCE_KINDS)),
    },
    ("tenantId", "userId", "tenantDefault", "preferences", "effective"),
)
SCHEMAS["NotificationPreferencesUpdate"] = _object(
    {"preferences": _object(dict.fromkeys(PREFERENCE_KINDS, CHOICE_OR_DEFAULT))}, ("preferences",)
)
NOT_A_MEMBER = {404: _json(_ref("Error"), "No active tenant with that id, or the user is not one of its members.")}
PREFERENCES_READ = {200: _json(_ref("NotificationPreferences"), "The member's choices and what applies.")}
PATHS["/api/v1/tenants/{tenantId}/users/{userId}/notification-preferences"] = {
    "parameters": [
        {"name": "tenantId", "in": "path", "required": True, "schema": ID},
        {"name": "userId", "in": "path", "required": True, "schema": ID},
    ],
    "get": {
        "operationId": "getNotificationPreferences",
        "summary": "A member's notification email choices, by kind",
        "responses": _responses({**PREFERENCES_READ, **NOT_A_MEMBER}, (401,)),
    },
    "put": {
        "operationId": "setNotificationPreferences",
        "summary": "Change a member's choices for the kinds given (null: the tenant's default); others keep theirs",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("NotificationPreferencesUpdate")}},
        },
        "responses": _responses({**PREFERENCES_READ, **NOT_A_MEMBER}, (400, 401, 411, 413)),
    },
}

# --- A firm's reminder settings (kgc/api/reminder_settings.py) ----------------------------------

DAYS = {
    "type": "array",
    "items": {"type": "integer", "minimum": 0, "maximum": firm_settings.DAYS_MAX},
    "minItems": 1,
    "maxItems": firm_settings.COUNT_MAX,
    "uniqueItems": True,
    "nullable": True,
    "description": "Days before the date to remind, largest first; null: the default.",
}
CODE = {"type": "string", "maxLength": 16, "description": "Empty: none."}
SCHEMAS["ReminderSettings"] = _object(
    {
        "tenantId": ID,
        "expiryReminderDays": DAYS,
        "filingReminderDays": DAYS,
        "holidayCountry": {
            **CODE,
            "maxLength": 2,
            "description": "ISO country code (US); empty: due dates never move.",
        },
        "holidaySubdivision": {**CODE, "description": "A subdivision of that country (DC); empty: the whole country."},
        "effective": _object(
            {
                "expiryReminderDays": {"type": "array", "items": {"type": "integer"}},
                "filingReminderDays": {"type": "array", "items": {"type": "integer"}},
            },
            ("expiryReminderDays", "filingReminderDays"),
        ),
    },
    ("tenantId", "expiryReminderDays", "filingReminderDays", "holidayCountry", "holidaySubdivision", "effective"),
)
SCHEMAS["ReminderSettingsUpdate"] = {
    **_object(
        {
            "expiryReminderDays": DAYS,
            "filingReminderDays": DAYS,
            "holidayCountry": {**CODE, "nullable": True},
            "holidaySubdivision": {**CODE, "nullable": True},
        }
    ),
    "minProperties": 1,
}
SETTINGS_READ = {200: _json(_ref("ReminderSettings"), "The firm's thresholds and holiday calendar.")}
NO_TENANT = {404: _json(_ref("Error"), "No active tenant with that id.")}
PATHS["/api/v1/tenants/{tenantId}/reminder-settings"] = {
    "parameters": [{"name": "tenantId", "in": "path", "required": True, "schema": ID}],
    "get": {
        "operationId": "getReminderSettings",
        "summary": "A firm's reminder thresholds and holiday calendar",
        "responses": _responses({**SETTINGS_READ, **NO_TENANT}, (401,)),
    },
    "put": {
        "operationId": "setReminderSettings",
        "summary": "Change the settings given (null: back to the default, or no calendar); others keep theirs",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ReminderSettingsUpdate")}}},
        "responses": _responses({**SETTINGS_READ, **NO_TENANT}, (400, 401, 411, 413)),
    },
}

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "KGC Compliance Cloud jobs API",
        "version": "1.0.0",
        "description": (
            "The enqueue contract of kgc/job_helpers.py over HTTP, with the seed's job-helpers.ts names. "
            "Errors answer {error, errors}; a request that fails enqueues nothing."
        ),
    },
    "servers": [{"url": "/"}],
    "security": [{"bearerAuth": []}],
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "One of KGC_API_TOKENS."}
        },
    },
}
