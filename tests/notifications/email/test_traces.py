"""One trace from an API request to each email's send, through a real worker process.

The request is served here (Django's instrumentation, spans kept in memory); the job runs
and its emails are sent by ``runworkers`` in a subprocess with ``OTEL_TRACES_EXPORTER=console``,
its spans written to its standard output, one JSON object per line.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from compliance.selectors import tenant_local_date
from notifications.models import OutboundEmail
from tests.factories import ClientFactory, DocumentFactory, DocumentTypeFactory
from tests.helpers import ROOT, subprocess_env, wait_for

TOKEN = "trace-test-token"


def worker_spans(path: Path) -> list[dict[str, Any]]:
    """The spans a worker wrote (its standard output holds nothing else)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def hex_id(value: int, width: int) -> str:
    return f"0x{value:0{width}x}"


def in_memory(span: Any) -> dict[str, Any]:
    """A span of this process in the console exporter's shape, so both processes' spans compare."""
    return json.loads(span.to_json(indent=None))


def tree(spans: list[dict[str, Any]]) -> str:
    """The trace as an indented outline: name, kind, service, then the attributes worth reading."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    ids = {span["context"]["span_id"] for span in spans}
    for span in sorted(spans, key=lambda s: s["start_time"]):
        parent = span["parent_id"] if span["parent_id"] in ids else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            shown = {
                k: v
                for k, v in span["attributes"].items()
                if not k.startswith(("http.", "net.", "server.", "url.", "user_agent", "client."))
            }
            service = span["resource"]["attributes"].get("service.name")
            lines.append(f"{'  ' * depth}{span['name']} [{span['kind'].removeprefix('SpanKind.')}, {service}] {shown}")
            walk(span["context"]["span_id"], depth + 1)

    walk(None, 0)
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_one_trace_goes_from_the_api_request_to_each_emails_send(
    spans, settings, tenant, member_of, smtp_server, tmp_path
):
    settings.KGC_API_TOKENS = [TOKEN]
    for role in ("admin", "manager", "compliance_officer"):
        member_of(tenant, role)
    DocumentFactory(
        tenant=tenant,
        client=ClientFactory(tenant=tenant),
        document_type=DocumentTypeFactory(code="tin-certificate", name="TIN Certificate"),
        expires_on=tenant_local_date(tenant, timezone.now()) + timedelta(days=10),
    )
    response = Client(headers={"Authorization": f"Bearer {TOKEN}"}).post(
        "/api/v1/jobs/expiry-check", data=json.dumps({"tenantId": tenant.pk}), content_type="application/json"
    )
    assert response.status_code in (200, 201, 202), response.content
    job_id = response.json()["id"]

    out, err = tmp_path / "worker.out", tmp_path / "worker.err"
    env = subprocess_env(
        OTEL_TRACES_EXPORTER="console",
        OTEL_SERVICE_NAME="kgc-worker",
        OTEL_BSP_SCHEDULE_DELAY="100",
        **smtp_server.env(),
    )
    with out.open("w") as stdout, err.open("w") as stderr:
        worker = subprocess.Popen(  # noqa: S603 - our own manage.py
            [sys.executable, str(ROOT / "manage.py"), "runworkers", "--queues", "expiry-notification,email",
             "--shutdown-timeout", "5"],
            cwd=ROOT, env=env, stdout=stdout, stderr=stderr, text=True,
        )  # fmt: skip
        try:
            wait_for(
                lambda: OutboundEmail.objects.filter(status="sent").count() == 3 or worker.poll() is not None,
                timeout=90,
                message="the three emails to be sent",
            )
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)  # at exit the worker exports the spans it still holds
    assert OutboundEmail.objects.filter(status="sent").count() == 3, err.read_text()[-3000:]
    assert len(smtp_server.received) == 3

    here = [in_memory(span) for span in spans.get_finished_spans()]
    (request,) = [span for span in here if span["kind"] == "SpanKind.SERVER"]
    (defer,) = [span for span in here if span["name"] == "defer expiry-notification"]
    trace_id = request["context"]["trace_id"]
    trace = [span for span in here + worker_spans(out) if span["context"]["trace_id"] == trace_id]
    print(tree(trace))  # shown when the test fails, or with -s

    assert request["name"] == "POST api/v1/jobs/expiry-check" and request["parent_id"] is None
    assert defer["parent_id"] == request["context"]["span_id"]
    assert defer["attributes"]["messaging.message.id"] == str(job_id)
    (run,) = [span for span in trace if span["name"] == "process expiry-notification"]
    assert run["parent_id"] == defer["context"]["span_id"]
    assert run["resource"]["attributes"]["service.name"] == "kgc-worker"
    assert run["kind"] == "SpanKind.CONSUMER"
    assert {key: run["attributes"][key] for key in (
        "messaging.system", "messaging.destination.name", "messaging.message.id", "messaging.procrastinate.job.attempt",
        "messaging.procrastinate.job.outcome", "kgc.tenant_id",
    )} == {
        "messaging.system": "procrastinate", "messaging.destination.name": "expiry-notification",
        "messaging.message.id": str(job_id), "messaging.procrastinate.job.attempt": 1,
        "messaging.procrastinate.job.outcome": "succeeded", "kgc.tenant_id": tenant.pk,
    }  # fmt: skip
    sends = [span for span in trace if span["name"] == "send email"]
    emails = {email.pk: email.message_id for email in OutboundEmail.objects.all()}
    assert len(sends) == 3
    for send in sends:
        assert send["parent_id"] == run["context"]["span_id"]
        assert send["attributes"]["kgc.email.outcome"] == "sent"
        assert send["attributes"]["kgc.email.provider_message_id"] == emails[send["attributes"]["kgc.email.id"]]
        assert send["attributes"]["messaging.message.id"] == str(send["attributes"]["kgc.email.id"])
        assert send["attributes"]["kgc.tenant_id"] == tenant.pk
    # The task's queries (psycopg's instrumentation), in the run's span.
    assert any(span["kind"] == "SpanKind.CLIENT" and span["parent_id"] == run["context"]["span_id"] for span in trace)
