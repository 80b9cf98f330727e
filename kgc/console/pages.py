"""Small pages outside the admin and the API."""

from __future__ import annotations

import functools
from pathlib import Path

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

FAVICON = Path(__file__).resolve().parent / "static" / "kgc" / "favicon.ico"


@functools.cache
def _favicon() -> bytes:
    return FAVICON.read_bytes()


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """``/favicon.ico``, which every browser asks for whatever the page says: served, not a 404."""
    response = HttpResponse(_favicon(), content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response
