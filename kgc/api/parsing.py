"""Request bodies of the JSON API: pure functions from bytes to the services' arguments.

Only the shape of the JSON is checked here (types, required and unknown fields); what
a value means (a priority's range, a trigger's length, an email address) stays with
the services, whose errors the views translate field by field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

MAX_BODY_BYTES = 64 * 1024
MAX_DEPTH = 32
MAX_ID = 2**63 - 1  # a PostgreSQL bigint
# Ages beyond a century would only overflow the date arithmetic; nothing is that old.
MAX_AGE_MS = 100 * 365 * 24 * 60 * 60 * 1000
MAX_SLUG = 100  # compliance.Tenant.slug
EMAIL_FIELDS = ("recipientEmail", "recipientName", "subject", "template", "data", "tenantId")
EMAIL_OPTIONAL = ("priority",)


class BodyTooLarge(Exception):
    pass


class LengthRequired(Exception):
    pass


def body_read(read: Callable[[int], bytes], *, content_length: str, transfer_encoding: str) -> bytes:
    """The raw body, at most ``MAX_BODY_BYTES``: by the declared length first, then by what arrives.

    Reading one byte past the limit tells a body that is too large without holding it all.
    """
    if content_length.isdigit() and int(content_length) > MAX_BODY_BYTES:
        raise BodyTooLarge
    if not content_length and "chunked" in transfer_encoding.lower():
        # Without a length, Django reads no body at all: refusing is safer than
        # enqueueing for every tenant what was meant for one.
        raise LengthRequired
    raw = read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise BodyTooLarge
    return raw


class InvalidRequest(ValueError):
    """A body the API cannot use; ``errors`` maps each bad field (camelCase) to what is wrong."""

    def __init__(self, message: str, errors: dict[str, str] | None = None) -> None:
        self.errors = errors or {}
        super().__init__(message)

    @classmethod
    def from_errors(cls, errors: dict[str, str]) -> InvalidRequest:
        return cls("; ".join(f"{field}: {message}" for field, message in errors.items()), errors)


def camel_case(name: str) -> str:
    """``recipient_email`` → ``recipientEmail`` (the seed's field names)."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def body_parse(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; an empty body is an empty object (every field omitted)."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidRequest("the body is not valid UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequest("the body must be a JSON object")
    errors = {name: problem for name, item in value.items() if (problem := value_problem(item))}
    if errors:
        raise InvalidRequest.from_errors(errors)
    return value


def value_problem(value: Any) -> str | None:
    """Why PostgreSQL's jsonb would refuse this value (NUL, lone surrogates, infinities, depth), or None.

    Checked here so that such a body is a 400 and never a failed insert.
    """
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            return f"must not nest deeper than {MAX_DEPTH} levels"
        if isinstance(item, str):
            if "\x00" in item:
                return "must not contain NUL characters"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "must not contain unpaired surrogates"
        elif isinstance(item, float) and not math.isfinite(item):
            return "must be a finite number"
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, dict):
            pending.extend((key, depth + 1) for key in item)
            pending.extend((child, depth + 1) for child in item.values())
    return None


class _Fields:
    """Reads fields off a body, collecting one error per field."""

    def __init__(self, body: dict[str, Any], allowed: tuple[str, ...]) -> None:
        self.body = body
        self.errors = {name: "unknown field" for name in body if name not in allowed}

    def integer(self, name: str, *, minimum: int, maximum: int, required: bool = False) -> int | None:
        value = self.body.get(name)
        if value is None:
            if required:
                self.errors[name] = "is required"
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.errors[name] = "must be an integer"
        elif not minimum <= value <= maximum:
            self.errors[name] = f"must be from {minimum} to {maximum}"
        else:
            return value
        return None

    def tenant(self, name: str) -> int | str | None:
        """A tenant's id (an integer) or slug (a string), as the commands' ``--tenant`` takes."""
        value = self.body.get(name)
        if isinstance(value, str):
            if not value.strip() or len(value) > MAX_SLUG:
                self.errors[name] = f"must be a tenant id or a slug of 1 to {MAX_SLUG} characters"
                return None
            return value
        return self.integer(name, minimum=1, maximum=MAX_ID)

    def string(self, name: str, *, default: str) -> str:
        value = self.body.get(name)
        if value is None:
            return default
        if not isinstance(value, str):
            self.errors[name] = "must be a string"
            return default
        return value

    def done(self) -> None:
        if self.errors:
            raise InvalidRequest.from_errors(self.errors)


def compliance_refresh_args(body: dict[str, Any]) -> dict[str, Any]:
    """``{tenantId?, triggeredBy?, priority?}``; ``tenantId`` is a tenant's id or its slug.

    What the values mean (priority's range, triggeredBy's sources) is the enqueue contract's
    rule (``kgc.job_helpers``), asked here too, so that every bad field is named at once."""
    from kgc.job_helpers import compliance_refresh_problems

    fields = _Fields(body, ("tenantId", "triggeredBy", "priority"))
    args = {
        "tenant_id": fields.tenant("tenantId"),
        "triggered_by": fields.string("triggeredBy", default="manual"),
        "priority": fields.integer("priority", minimum=-MAX_ID, maximum=MAX_ID),
    }
    problems = compliance_refresh_problems(triggered_by=args["triggered_by"], priority=args["priority"])
    for name, problem in problems.items():
        fields.errors.setdefault(camel_case(name), problem)
    fields.done()
    return args


def tenant_args(body: dict[str, Any]) -> dict[str, Any]:
    """``{tenantId?}``: one tenant (its id or slug), or every active tenant when omitted."""
    fields = _Fields(body, ("tenantId",))
    args = {"tenant_id": fields.tenant("tenantId")}
    fields.done()
    return args


def email_args(body: dict[str, Any]) -> dict[str, Any]:
    """``{recipientEmail, recipientName, subject, template, data, tenantId}``, all required,
    and ``priority`` (``urgent``, ``high``, ``normal``, ``low``) if wanted.

    The values go to the email service as they are: it says what is wrong with each.
    """
    fields = _Fields(body, (*EMAIL_FIELDS, *EMAIL_OPTIONAL))
    tenant_id = fields.integer("tenantId", minimum=1, maximum=MAX_ID, required=True)
    for name in EMAIL_FIELDS[:-1]:
        if name not in body or body[name] is None:
            fields.errors[name] = "is required"
    fields.done()
    return {
        "recipient_email": body["recipientEmail"],
        "recipient_name": body["recipientName"],
        "subject": body["subject"],
        "template": body["template"],
        "data": body["data"],
        "tenant_id": tenant_id,
        "priority": body.get("priority"),
    }


def cleanup_args(body: dict[str, Any]) -> dict[str, Any]:
    """``{completedAge?, failedAge?}`` in milliseconds, as the seed's ``cleanupQueue``; omitted keeps those jobs."""
    fields = _Fields(body, ("completedAge", "failedAge"))
    completed = fields.integer("completedAge", minimum=0, maximum=MAX_AGE_MS)
    failed = fields.integer("failedAge", minimum=0, maximum=MAX_AGE_MS)
    fields.done()
    return {
        "completed_age": None if completed is None else timedelta(milliseconds=completed),
        "failed_age": None if failed is None else timedelta(milliseconds=failed),
    }


def no_args(body: dict[str, Any]) -> dict[str, Any]:
    """Pause and resume take no fields (an empty body or ``{}``)."""
    _Fields(body, ()).done()
    return {}
