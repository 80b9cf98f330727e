"""Traces with OpenTelemetry: off unless the standard ``OTEL_*`` variables ask for them.

``telemetry_configure`` runs once per process, from the ``kgc`` app's ``ready()`` (so in the
web servers, the workers and every management command). With no exporter asked for
(``settings.KGC_TRACE_EXPORTERS``, read from ``OTEL_TRACES_EXPORTER`` and the OTLP endpoint
variables) it does nothing, and costs nothing after: the queue layer and the apps check
``kgc.queue.tracing.enabled()`` before any span.

Turned on, it builds the SDK's tracer provider (the SDK reads ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*`` and the exporters'
``OTEL_EXPORTER_OTLP_*`` itself), with a batch processor per exporter:

* ``otlp``: the OTLP exporter, over ``http/protobuf`` or ``grpc``
  (``OTEL_EXPORTER_OTLP_PROTOCOL``), from its package (``opentelemetry-exporter-otlp-proto-http``
  or ``-grpc``), which is not a requirement: the system check ``kgc.E004`` names it when it is
  missing, and the process serves on without traces;
* ``console``: one JSON object per span and line, on standard output.

It then instruments Django (a server span per request, leaving out ``/healthz``, ``/readyz``,
``/metrics`` and ``/favicon.ico`` unless ``OTEL_PYTHON_DJANGO_EXCLUDED_URLS`` says otherwise)
and psycopg (a span per query of Django's connections) where their instrumentation packages
are installed, and hands the provider to the queue layer (``kgc/queue/tracing.py``: defers,
runs, and the apps' row queues). A process already traced by an agent
(``opentelemetry-instrument``) keeps the agent's provider and instrumentation.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from typing import IO, Any

from kgc.queue import tracing

logger = logging.getLogger("kgc")

DEFAULT_SERVICE_NAME = "kgc"
# OTLP protocol: (the exporter's module, its package)
OTLP_EXPORTERS = {
    "http/protobuf": (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry-exporter-otlp-proto-http",
    ),
    "grpc": ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "opentelemetry-exporter-otlp-proto-grpc"),
}

_instrumented: list[Any] = []


def otlp_package_missing(exporters: tuple[str, ...], protocol: str) -> str | None:
    """The OTLP exporter's package, when ``otlp`` is asked for and the package is not installed."""
    module, package = OTLP_EXPORTERS[protocol]
    if "otlp" not in exporters:
        return None
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    return None if found else package


def telemetry_configure() -> None:
    """Turn tracing on in this process if the ``OTEL_*`` variables ask for it (see the module)."""
    from django.conf import settings
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    if tracing.enabled():
        return
    exporters: tuple[str, ...] = settings.KGC_TRACE_EXPORTERS
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # an agent's: it instruments, we add our spans
        tracing.tracing_start(current)
        return
    if not exporters:
        return
    provider = provider_build(exporters, protocol=settings.KGC_TRACE_OTLP_PROTOCOL)
    trace.set_tracer_provider(provider)
    tracing_on(provider)


def provider_build(exporters: tuple[str, ...], *, protocol: str = "http/protobuf", out: IO[str] | None = None) -> Any:
    """The SDK's tracer provider with a batch processor per exporter (``out``: the console's stream)."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create()  # OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    for name in exporters:
        if name == "console":
            exporter: Any = ConsoleSpanExporter(
                out=out or sys.stdout, formatter=lambda span: span.to_json(indent=None) + os.linesep
            )
        elif (missing := otlp_package_missing(exporters, protocol)) is not None:
            logger.error(
                f"OTEL_TRACES_EXPORTER: otlp needs the package {missing} (pip install {missing}): no spans are "
                "exported over OTLP",
                extra={"event": "tracing_exporter_missing"},
            )
            continue
        else:
            module = importlib.import_module(OTLP_EXPORTERS[protocol][0])
            exporter = module.OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def tracing_on(provider: Any) -> None:
    """Spans to ``provider``: Django's and psycopg's instrumentations where installed, and the
    queue layer's and the apps' own spans."""
    try:
        from opentelemetry.instrumentation.django import DjangoInstrumentor
    except ImportError:
        pass
    else:
        from django.conf import settings

        _instrument(DjangoInstrumentor(), tracer_provider=provider, excluded_urls=settings.KGC_TRACE_UNTRACED_URLS)
    try:
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    except ImportError:
        pass
    else:
        _instrument(PsycopgInstrumentor(), tracer_provider=provider)
    tracing.tracing_start(provider)


def tracing_off() -> None:
    """Undo ``tracing_on`` (the tests' way out; a process keeps its tracing for its life)."""
    tracing.tracing_stop()
    while _instrumented:
        _instrumented.pop().uninstrument()


def _instrument(instrumentor: Any, **options: Any) -> None:
    if instrumentor.is_instrumented_by_opentelemetry:
        return
    instrumentor.instrument(**options)
    _instrumented.append(instrumentor)
