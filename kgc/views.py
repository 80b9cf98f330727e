from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up (no database access, so it answers even when PostgreSQL does not)."""
    return JsonResponse({"status": "ok"})
