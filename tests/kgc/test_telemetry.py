"""Traces are off unless the standard OTEL_* variables ask for them; what they ask for is checked."""

from __future__ import annotations

import io
import json

import pytest

from kgc import telemetry
from kgc.apps import check_tracing
from kgc.config import ConfigError, Env, otlp_protocol_parse, trace_exporters_parse
from kgc.queue import tracing


@pytest.mark.parametrize(
    ("environ", "exporters"),
    [
        ({}, ()),
        ({"OTEL_SERVICE_NAME": "kgc-web"}, ()),  # naming the service turns nothing on
        ({"OTEL_TRACES_EXPORTER": "console"}, ("console",)),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ("otlp", "console")),
        ({"OTEL_TRACES_EXPORTER": "OTLP"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://jaeger:4318/v1/traces"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, ()),
    ],
)
def test_the_exporters_asked_for(environ, exporters):
    assert trace_exporters_parse(Env(environ)) == exporters


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER: unknown exporter 'jaeger'"),
        ({"OTEL_TRACES_EXPORTER": "none,console"}, "OTEL_TRACES_EXPORTER: none cannot be combined"),
        ({"OTEL_SDK_DISABLED": "maybe"}, "OTEL_SDK_DISABLED: expected true or false"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL: expected http/protobuf or grpc"),
    ],
)
def test_a_bad_value_names_its_variable(environ, message):
    with pytest.raises(ConfigError, match=message):
        trace_exporters_parse(Env(environ))
        otlp_protocol_parse(Env(environ))


@pytest.mark.parametrize(
    ("environ", "protocol"),
    [
        ({}, "http/protobuf"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc"),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
            "http/protobuf",
        ),
    ],
)
def test_the_otlp_protocol(environ, protocol):
    assert otlp_protocol_parse(Env(environ)) == protocol


def test_tracing_is_off_in_a_process_started_without_otel_variables():
    telemetry.telemetry_configure()  # as the kgc app's ready() did
    assert not tracing.enabled()


def test_the_console_exporter_writes_one_json_object_per_span_and_line():
    out = io.StringIO()
    provider = telemetry.provider_build(("console",), out=out)
    with provider.get_tracer("tests").start_as_current_span("outer"), provider.get_tracer("tests").start_span("inner"):
        pass
    provider.shutdown()
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["inner", "outer"]
    assert json.loads(lines[0])["resource"]["attributes"]["service.name"] == "kgc"


def test_otlp_without_its_package_is_a_system_check_error(settings):
    pytest.importorskip("opentelemetry.sdk")
    if telemetry.otlp_package_missing(("otlp",), "http/protobuf") is None:
        pytest.skip("the OTLP exporter is installed here")
    settings.KGC_TRACE_EXPORTERS = ("otlp",)
    settings.KGC_TRACE_OTLP_PROTOCOL = "http/protobuf"
    (error,) = check_tracing()
    assert error.id == "kgc.E004"
    assert "pip install opentelemetry-exporter-otlp-proto-http" in error.msg


def test_console_traces_need_no_extra_package(settings):
    settings.KGC_TRACE_EXPORTERS = ("console",)
    assert check_tracing() == []


def test_without_the_otlp_package_the_provider_exports_nothing_over_otlp_and_says_so(caplog):
    if telemetry.otlp_package_missing(("otlp",), "http/protobuf") is None:
        pytest.skip("the OTLP exporter is installed here")
    provider = telemetry.provider_build(("otlp",))
    provider.shutdown()
    assert "pip install opentelemetry-exporter-otlp-proto-http" in caplog.text


@pytest.mark.django_db
def test_a_request_has_its_server_span_and_probes_have_none(spans, client):
    client.get("/healthz")
    client.get("/api/v1/queues")  # refused without a token: a request all the same
    assert [(span.name, span.kind.name) for span in spans.get_finished_spans()] == [("GET api/v1/queues", "SERVER")]
