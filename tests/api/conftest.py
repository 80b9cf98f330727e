from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client
from procrastinate.contrib.django.models import ProcrastinateJob

TOKEN = "test-token-current"
OLD_TOKEN = "test-token-previous"
HERE = Path(__file__).parent


@pytest.fixture
def api_tokens(settings):
    settings.KGC_API_TOKENS = [OLD_TOKEN, TOKEN]
    return settings.KGC_API_TOKENS


@pytest.fixture
def api(db, api_tokens):
    """A test client that sends the bearer token and JSON bodies: ``api.post(path, {...})``."""
    return ApiClient(TOKEN)


class ApiClient:
    def __init__(self, token: str | None) -> None:
        self.client = Client(headers={"Authorization": f"Bearer {token}"} if token else {})

    def get(self, path: str, **extra):
        return self.client.get(f"/api/v1/{path}", **extra)

    def post(self, path: str, body=None, **extra):
        data = body if isinstance(body, bytes | str) else json.dumps({} if body is None else body)
        return self.client.post(f"/api/v1/{path}", data=data, content_type="application/json", **extra)


@pytest.fixture
def jobs_table():
    """Every job's id, status and args now: compare before and after a refused request."""

    def snapshot():
        return list(ProcrastinateJob.objects.order_by("id").values_list("id", "status", "args", "priority"))

    return snapshot
