"""Traces of the queue layer: a span for each defer and each run, linked through the job.

OpenTelemetry is off unless the project turns it on at start-up (``kgc/telemetry.py``, from
the standard ``OTEL_*`` variables) by handing a tracer provider to ``tracing_start``. While
it is off, ``enabled()`` is False and callers skip everything else here: no span, no
context written into a job, no lookup of the current context.

The spans, named and attributed per OpenTelemetry's messaging conventions:

* ``defer <queue>`` (producer): each job deferred through ``jobs.job_defer`` (so each of a
  fan-out's jobs) and each cron tick the scheduler defers; the job's id is the message id;
* ``process <queue>`` (consumer): each run, the child of its defer's span, so that a trace
  goes from the caller (an API request, the scheduler's tick, a fan-out job) to the run and
  on to what the task does (the jobs it defers, the emails it queues, its queries): the
  system (``procrastinate``), the queue as the destination, the job id as the message id,
  the attempt, the outcome, and the tenant (``kgc.tenant_id``: on spans, never on a
  metric's labels);
* ``row_span``: one item of a row queue (``kgc/queue/rows.py``), such as an email's send,
  the child of the span that queued the item, whose context the app keeps in the row.

The context travels in the job. procrastinate's jobs have no headers, so it rides in the
job's arguments under ``TRACE_CONTEXT_KEY``, as the configured propagator writes it (W3C
trace context by default: ``traceparent``, ``tracestate``). The defer's own INSERT writes
it and the claim, which returns the arguments anyway, reads it: no extra statement, no join
in the claim, no table to clean up; a retried job keeps it. A side table would cost a
write per defer and a lookup per claim. Tasks never see the key: the runner takes it out
before calling them (``kwargs_split``). It shows among the arguments on the console's job
page: a trace id to look up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

TRACE_CONTEXT_KEY = "_trace_context"
MESSAGING_SYSTEM = "procrastinate"
INSTRUMENTATION = "kgc.queue"

_tracer: trace.Tracer | None = None
_provider: Any = None


def tracing_start(provider: Any) -> None:
    """Turn tracing on, with spans going to ``provider`` (an SDK ``TracerProvider``)."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer(INSTRUMENTATION)


def tracing_stop() -> None:
    global _tracer, _provider
    _tracer = _provider = None


def enabled() -> bool:
    return _tracer is not None


def tracer(name: str = INSTRUMENTATION) -> trace.Tracer:
    """A tracer of the provider tracing was started with (a no-op one while it is off)."""
    return _provider.get_tracer(name) if _provider is not None else trace.NoOpTracer()


def flush(timeout_millis: int = 5000) -> None:
    """Export the spans still buffered (before an ``os._exit``, which skips the exit hooks)."""
    if _provider is not None and hasattr(_provider, "force_flush"):
        _provider.force_flush(timeout_millis)


def context_carrier() -> dict[str, str] | None:
    """The current span's context, as the propagator writes it (``{"traceparent": ...}``), to
    keep with a job or a row; None while tracing is off or no span is current."""
    if _tracer is None or not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


def context_json() -> str | None:
    """``context_carrier`` as JSON text, for a statement's ``jsonb`` parameter."""
    carrier = context_carrier()
    return None if carrier is None else json.dumps(carrier)


def context_of(carrier: Mapping[str, Any] | None) -> otel_context.Context | None:
    """The context a carrier holds (None: none, or not one this propagator reads)."""
    if not isinstance(carrier, Mapping):
        return None
    found = propagate.extract({str(key): str(value) for key, value in carrier.items()})
    return found if trace.get_current_span(found).get_span_context().is_valid else None


def kwargs_split(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """A job's arguments without the trace context, and the context (None if it has none)."""
    rest = dict(kwargs)
    return rest, rest.pop(TRACE_CONTEXT_KEY, None)


@dataclass
class Deferral:
    """A defer's span, and its context to write into the job."""

    span: Span
    carrier: dict[str, str]

    def deferred(self, job_id: int, *, created: bool) -> None:
        self.span.set_attribute("messaging.message.id", str(job_id))
        self.span.set_attribute("messaging.procrastinate.job.created", created)


@contextmanager
def defer_span(*, queue: str, task_name: str, tenant_id: Any = None, **attributes: Any) -> Iterator[Deferral]:
    """The span of one defer (a producer's ``send``), current while the job is written."""
    with _active().start_as_current_span(
        f"defer {queue}",
        kind=SpanKind.PRODUCER,
        attributes=_messaging(queue, operation="defer", kind="send", tenant_id=tenant_id, task_name=task_name)
        | attributes,
    ) as span:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield Deferral(span=span, carrier=carrier)


@contextmanager
def run_span(
    *, queue: str, task_name: str, job_id: int | None, attempt: int, carrier: Any, tenant_id: Any = None
) -> Iterator[Span]:
    """The span of one run (a consumer's ``process``), the child of its defer's span when the
    job carries its context. Exceptions are the caller's to record (``run_ended``)."""
    attributes = _messaging(queue, operation="process", kind="process", tenant_id=tenant_id, task_name=task_name)
    attributes["messaging.message.id"] = str(job_id)
    attributes["messaging.procrastinate.job.attempt"] = attempt
    with _active().start_as_current_span(
        f"process {queue}",
        context=context_of(carrier),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def run_ended(span: Span, *, outcome: str, failure: Any = None) -> None:
    """Record how a run ended (succeeded, failed, retry, aborted, unknown_task, abandoned) and,
    for a failure (``runner.Failure``), its exception as the span's ``exception`` event."""
    span.set_attribute("messaging.procrastinate.job.outcome", outcome)
    if failure is None:
        return
    span.set_attribute("error.type", failure.exception_type)
    span.add_event(
        "exception",
        {
            "exception.type": failure.exception_type,
            "exception.message": failure.message,
            "exception.stacktrace": failure.traceback,
        },
    )
    if outcome in ("failed", "retry"):
        span.set_status(Status(StatusCode.ERROR, f"{failure.exception_type}: {failure.message}"[:500]))


@contextmanager
def row_span(
    name: str, *, system: str, queue: str, item_id: int, carrier: Any, tenant_id: Any = None, **attributes: Any
) -> Iterator[Span]:
    """The span of one item of a row queue (a consumer's ``process``), the child of the span
    that queued it when the row kept that span's context."""
    found = {
        "messaging.system": system,
        "messaging.operation.type": "process",
        "messaging.operation.name": name.partition(" ")[0],
        "messaging.destination.name": queue,
        "messaging.message.id": str(item_id),
        **_tenant(tenant_id),
        **attributes,
    }
    with _active().start_as_current_span(
        name, context=context_of(carrier), kind=SpanKind.CONSUMER, attributes=found
    ) as span:
        yield span


def _active() -> trace.Tracer:
    if _tracer is None:
        raise RuntimeError("tracing is off: callers check tracing.enabled() first")
    return _tracer


def _messaging(queue: str, *, operation: str, kind: str, tenant_id: Any, task_name: str) -> dict[str, Any]:
    return {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": kind,
        "messaging.operation.name": operation,
        "messaging.destination.name": queue,
        "messaging.procrastinate.task.name": task_name,
        **_tenant(tenant_id),
    }


def _tenant(tenant_id: Any) -> dict[str, Any]:
    return {"kgc.tenant_id": tenant_id} if isinstance(tenant_id, int | str) and tenant_id != "" else {}
