"""The queue layer's spans: a defer's span, its context carried in the job, and tasks that never see it."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from procrastinate.contrib.django.models import ProcrastinateJob

from kgc.queue import jobs, tracing
from kgc.queue.models import JobResult
from tests.helpers import manage, subprocess_env
from tests.kgc.console.conftest import status_of


def traceparent(span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


@pytest.mark.django_db
def test_with_tracing_off_a_job_carries_nothing_more():
    assert not tracing.enabled()
    job_id, _ = jobs.job_defer(task_name="tests.noop_compliance", kwargs={"tenant_id": 7})
    assert ProcrastinateJob.objects.get(pk=job_id).args == {"tenant_id": 7}


@pytest.mark.django_db
def test_a_defer_has_a_producer_span_whose_context_the_job_carries(spans):
    job_id, created = jobs.job_defer(task_name="tests.noop_compliance", kwargs={"tenant_id": 7})
    (span,) = spans.get_finished_spans()
    assert (span.name, span.kind) == ("defer compliance", SpanKind.PRODUCER)
    assert dict(span.attributes) == {
        "messaging.system": "procrastinate",
        "messaging.operation.type": "send",
        "messaging.operation.name": "defer",
        "messaging.destination.name": "compliance",
        "messaging.procrastinate.task.name": "tests.noop_compliance",
        "messaging.message.id": str(job_id),
        "messaging.procrastinate.job.created": True,
        "kgc.tenant_id": 7,
    }
    args = ProcrastinateJob.objects.get(pk=job_id).args
    assert args == {"tenant_id": 7, tracing.TRACE_CONTEXT_KEY: {"traceparent": traceparent(span)}}


@pytest.mark.django_db
def test_a_defer_that_finds_its_job_waiting_says_so(spans):
    first, _ = jobs.job_defer(task_name="tests.noop_compliance", kwargs={}, queueing_lock="refresh:7")
    again, created = jobs.job_defer(task_name="tests.noop_compliance", kwargs={}, queueing_lock="refresh:7")
    assert (again, created) == (first, False)
    second = spans.get_finished_spans()[-1]
    assert second.attributes["messaging.message.id"] == str(first)
    assert second.attributes["messaging.procrastinate.job.created"] is False


@pytest.mark.django_db
def test_each_job_of_a_fan_out_is_deferred_in_a_span_of_the_caller(spans):
    with tracing.tracer("tests").start_as_current_span("nightly tick") as tick:
        ids = jobs.jobs_fan_out(task_name="tests.noop_compliance", kwargs_by_tenant={1: {}, 2: {}})
    defers = [span for span in spans.get_finished_spans() if span.name == "defer compliance"]
    assert [span.attributes["messaging.message.id"] for span in defers] == [str(job_id) for job_id in ids]
    assert {span.parent.span_id for span in defers} == {tick.get_span_context().span_id}
    assert {span.attributes["kgc.tenant_id"] for span in defers} == {1, 2}


@pytest.mark.django_db
def test_an_email_queued_in_a_span_keeps_its_context(spans, tenant):
    from notifications.services import email_enqueue

    with tracing.tracer("tests").start_as_current_span("request") as request:
        email = email_enqueue(
            tenant_id=tenant.pk, recipient_email="pat@example.com", recipient_name="Pat", subject="Hi",
            template="custom", data={"body": "Hello"},
        )  # fmt: skip
    email.refresh_from_db()
    assert email.trace_context == {"traceparent": traceparent(request)}


@pytest.mark.django_db
def test_without_a_current_span_nothing_is_kept(spans, tenant):
    assert trace.get_current_span() is trace.INVALID_SPAN
    assert tracing.context_carrier() is None


@pytest.mark.parametrize(
    ("carrier", "found"),
    [
        ({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, True),
        ({"traceparent": "not a traceparent"}, False),
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", False),  # not a mapping
        (None, False),
    ],
)
def test_a_carried_context_is_read_only_when_it_is_one(carrier, found):
    assert (tracing.context_of(carrier) is not None) is found


def test_the_runner_splits_the_context_from_the_arguments():
    carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    assert tracing.kwargs_split({"tenant_id": 3, tracing.TRACE_CONTEXT_KEY: carrier}) == ({"tenant_id": 3}, carrier)
    assert tracing.kwargs_split({"tenant_id": 3}) == ({"tenant_id": 3}, None)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_task_never_sees_the_context_even_in_a_worker_without_tracing(spans):
    """A job deferred by a traced web process, run by a worker where tracing is off."""
    job_id, _ = jobs.job_defer(task_name="tests.kwargs_seen", kwargs={"tenant_id": 4})
    assert tracing.TRACE_CONTEXT_KEY in ProcrastinateJob.objects.get(pk=job_id).args
    result = manage(
        "procrastinate", "worker", "--queues=maintenance", "--one-shot",
        env=subprocess_env(KGC_EXTRA_TASK_MODULES="tests.kgc.sample_tasks"), timeout=60,
    )  # fmt: skip
    assert status_of(job_id) == "succeeded", result.stdout + result.stderr
    assert JobResult.objects.get(job_id=job_id).value == {"kwargs": ["tenant_id"], "context": ["tenant_id"]}


@pytest.mark.django_db(transaction=True)
def test_a_cron_tick_starts_a_trace_of_its_own_that_its_job_carries(spans):
    import asyncio

    from procrastinate.contrib.django import app

    from kgc.queue.db import Link, connection_params
    from kgc.queue.scheduler import Scheduler

    link = Link("test", connection_params())
    scheduler = Scheduler(app, link, is_leader=lambda: True, worker_id=lambda: 1, catch_up=0, timeout=30)
    key = ("notifications.morning_checks_all", "hourly")

    async def tick() -> None:
        try:
            await scheduler._defer(key, 1_780_000_000)
        finally:
            await link.drop()

    asyncio.run(tick())
    (span,) = [span for span in spans.get_finished_spans() if span.name == "defer maintenance"]
    assert span.parent is None
    assert span.attributes["messaging.procrastinate.periodic_id"] == "hourly"
    assert span.attributes["kgc.schedule.tick"] == 1_780_000_000
    job = ProcrastinateJob.objects.get(pk=int(span.attributes["messaging.message.id"]))
    assert job.args == {"timestamp": 1_780_000_000, tracing.TRACE_CONTEXT_KEY: {"traceparent": traceparent(span)}}


def test_a_failed_run_is_an_error_span_with_its_exception_in_the_callers_trace(spans):
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from opentelemetry.trace import StatusCode
    from procrastinate.contrib.django import app
    from procrastinate.jobs import Job

    import tests.kgc.sample_tasks  # noqa: F401  (registers tests.fail_transiently)
    from kgc.queue.runner import OUTCOME_NAMES, Claim, JobRunner

    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    job = Job(
        id=41, queue="maintenance", task_name="tests.fail_transiently", lock=None, queueing_lock=None, attempts=0,
        task_kwargs={tracing.TRACE_CONTEXT_KEY: {"traceparent": caller}},
    )  # fmt: skip
    with ThreadPoolExecutor(1) as executor:
        runner = JobRunner(app, executor=executor, worker_name="test", queues=["maintenance"])
        outcome = asyncio.run(runner.run(Claim(job=job, worker_id=1)))
    (span,) = [span for span in spans.get_finished_spans() if span.name == "process maintenance"]
    assert (f"{span.context.trace_id:032x}", f"{span.parent.span_id:016x}") == (caller[3:35], caller[36:52])
    assert span.attributes["messaging.procrastinate.job.outcome"] == OUTCOME_NAMES.get(outcome.status, outcome.status)
    assert span.attributes["error.type"] == "ConnectionError"
    assert span.status.status_code is StatusCode.ERROR
    (event,) = span.events
    assert (event.name, event.attributes["exception.message"]) == ("exception", "upstream dropped the connection")
