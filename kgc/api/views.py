"""The JSON API: ``kgc/job_helpers.py`` over HTTP, with the seed's camelCase names.

Each view parses its body, calls one service, and answers. What every view shares
(method, bearer token, body size, JSON, error translation, one transaction) lives
in ``endpoint``: a request that fails any of it changes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from kgc import job_helpers
from kgc.api import auth, openapi, parsing, services
from kgc.queue import jobs
from kgc.queues import EMAIL, QUEUES, product_queues
from notifications.exceptions import InvalidEmailRequest
from notifications.services import SEND_EMAIL_TASK

Handler = Callable[..., JsonResponse]

REALM = 'Bearer realm="kgc-jobs"'
# The services' errors about one argument, by the argument's API name and the name
# their message starts with.
FIELD_ERRORS: dict[type[ValueError], tuple[str, str]] = {
    jobs.InvalidPriority: ("priority", "priority"),
    job_helpers.InvalidTrigger: ("triggeredBy", "triggered_by"),
}


class UnknownApiQueue(LookupError, ValueError):
    """Not one of the product queues (the internal maintenance queue is not served)."""

    def __init__(self, name: str) -> None:
        known = ", ".join(queue.name for queue in product_queues())
        super().__init__(f"unknown queue {name!r}; known queues: {known}")


def problem(status: int, message: str, errors: dict[str, str] | None = None, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": message, "errors": errors or {}}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _refusal(request: HttpRequest) -> JsonResponse | None:
    """A 401 unless the request carries one of the configured tokens."""
    tokens = auth.api_tokens()
    if not tokens:
        return problem(
            401,
            "no API tokens are configured on the server (KGC_API_TOKENS): every request is refused",
            WWW_Authenticate=REALM,
        )
    token = auth.bearer_token(request.headers.get("Authorization", ""))
    if token is None:
        return problem(401, "an Authorization: Bearer <token> header is required", WWW_Authenticate=REALM)
    if not auth.token_valid(token, tokens):
        return problem(401, "the bearer token is not valid", WWW_Authenticate=f'{REALM}, error="invalid_token"')
    return None


def _body(request: HttpRequest) -> dict[str, Any]:
    raw = parsing.body_read(
        request.read,
        content_length=request.META.get("CONTENT_LENGTH") or "",
        transfer_encoding=request.headers.get("Transfer-Encoding", ""),
    )
    return parsing.body_parse(raw)


def _error(exc: ValueError) -> JsonResponse:
    """A service's ``ValueError`` as 404 (unknown queue or tenant) or 400 (per field where known)."""
    if isinstance(exc, LookupError):
        return problem(404, str(exc))
    if isinstance(exc, parsing.InvalidRequest):
        return problem(400, str(exc), exc.errors)
    if isinstance(exc, InvalidEmailRequest | job_helpers.InvalidRefreshRequest):
        errors = {parsing.camel_case(name): message for name, message in exc.errors.items()}
        return problem(400, "; ".join(f"{name}: {message}" for name, message in errors.items()), errors)
    for error_type, (field, prefix) in FIELD_ERRORS.items():
        if isinstance(exc, error_type):
            message = str(exc).removeprefix(f"{prefix} ")
            return problem(400, f"{field}: {message}", {field: message})
    return problem(400, str(exc))


def endpoint(method: str, *, authenticated: bool = True, atomic: bool = True) -> Callable[[Handler], Handler]:
    """Wrap a view: method, token, body (POST), errors, and one transaction around the service.

    ``atomic=False`` is for a service that commits in batches of its own (cleanup).
    """

    def decorate(view: Handler) -> Handler:
        @csrf_exempt  # bearer tokens, not cookies: there is no session to forge requests with
        @functools.wraps(view)
        def wrapper(request: HttpRequest, **kwargs: Any) -> JsonResponse:
            if request.method != method:
                return problem(405, f"{request.method} is not allowed here; use {method}", Allow=method)
            if authenticated and (refusal := _refusal(request)) is not None:
                return refusal
            try:
                if method in ("POST", "PUT"):
                    kwargs["body"] = _body(request)
                if not atomic:
                    return view(request, **kwargs)
                with transaction.atomic():
                    return view(request, **kwargs)
            except parsing.BodyTooLarge:
                return problem(413, f"the body must be at most {parsing.MAX_BODY_BYTES} bytes")
            except parsing.LengthRequired:
                return problem(411, "a Content-Length header is required")
            except ValueError as exc:
                return _error(exc)

        return wrapper

    return decorate


def _queue_name(name: str) -> str:
    if name not in QUEUES or QUEUES[name].internal:
        raise UnknownApiQueue(name)
    return name


def _enqueued(job_id: int, *, created: bool = True) -> JsonResponse:
    return JsonResponse(services.job_describe(job_id), status=201 if created else 200)


# --- Enqueueing ---------------------------------------------------------------------------


@endpoint("POST")
def compliance_refresh(request: HttpRequest, body: dict[str, Any]) -> JsonResponse:
    job_id, created = job_helpers.compliance_refresh_defer(**parsing.compliance_refresh_args(body))
    return _enqueued(job_id, created=created)


@endpoint("POST")
def expiry_check(request: HttpRequest, body: dict[str, Any]) -> JsonResponse:
    return _enqueued(job_helpers.enqueue_expiry_check(**parsing.tenant_args(body)))


@endpoint("POST")
def filing_reminder(request: HttpRequest, body: dict[str, Any]) -> JsonResponse:
    return _enqueued(job_helpers.enqueue_filing_reminder(**parsing.tenant_args(body)))


@endpoint("POST")
def email(request: HttpRequest, body: dict[str, Any]) -> JsonResponse:
    # The id is the email's (the outbox's row), which GET /api/v1/emails/{id} looks up.
    email_id = job_helpers.enqueue_email(**parsing.email_args(body))
    return JsonResponse({"id": email_id, "queue": EMAIL, "name": SEND_EMAIL_TASK}, status=201)


@endpoint("GET")
def email_state(request: HttpRequest, email_id: int) -> JsonResponse:
    return JsonResponse({parsing.camel_case(key): value for key, value in job_helpers.get_email(email_id).items()})


# --- Queues ------------------------------------------------------------------------------


def _state_json(state: dict[str, int | bool]) -> dict[str, int | bool]:
    return {parsing.camel_case(key): value for key, value in state.items()}


@endpoint("GET")
def queues(request: HttpRequest) -> JsonResponse:
    return JsonResponse({name: _state_json(state) for name, state in job_helpers.all_queue_states().items()})


@endpoint("GET")
def queue_stats(request: HttpRequest, name: str) -> JsonResponse:
    return JsonResponse(_state_json(job_helpers.queue_state(_queue_name(name))))


@endpoint("POST")
def queue_pause(request: HttpRequest, name: str, body: dict[str, Any]) -> JsonResponse:
    parsing.no_args(body)
    changed = job_helpers.pause_queue(_queue_name(name), by="api")
    return JsonResponse({"queue": name, "paused": True, "changed": changed})


@endpoint("POST")
def queue_resume(request: HttpRequest, name: str, body: dict[str, Any]) -> JsonResponse:
    parsing.no_args(body)
    changed = job_helpers.resume_queue(_queue_name(name))
    return JsonResponse({"queue": name, "paused": False, "changed": changed})


# Each cleanup batch is its own short transaction (kgc.queue.jobs.cleanup_queue); one around
# them all would hold every deleted row's lock until the end.
@endpoint("POST", atomic=False)
def queue_cleanup(request: HttpRequest, name: str, body: dict[str, Any]) -> JsonResponse:
    args = parsing.cleanup_args(body)
    result = job_helpers.cleanup_queue(_queue_name(name), **args)
    return JsonResponse({"queue": name, "completed": result.completed, "failed": result.failed})


# --- The description and everything else -------------------------------------------------------


@endpoint("GET", authenticated=False, atomic=False)
def openapi_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi.SPEC)


@csrf_exempt
def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    return problem(404, f"no such API route: /api/v1/{path}")
