from django.apps import AppConfig
from django.core import checks


class KgcConfig(AppConfig):
    """The project's app, whose models are the queue layer's state (kgc/queue/models.py): pause flags,
    rate-limit slots, job counters, failure records, workers, the lease, results."""

    name = "kgc"
    verbose_name = "Queues"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from kgc.telemetry import telemetry_configure

        checks.register(check_rate_limits)
        checks.register(check_worker_settings)
        checks.register(check_tracing)
        console_names()
        telemetry_configure()  # traces, if the OTEL_* variables ask for them


def console_names() -> None:
    """The admin calls procrastinate's section "Jobs" (an app label, so no migration changes)."""
    from django.apps import apps

    apps.get_app_config("procrastinate").verbose_name = "Jobs"


def check_rate_limits(app_configs: object = None, **kwargs: object) -> list[checks.CheckMessage]:
    """KGC_RATE_LIMITS is parsed when the first job is fetched: refuse a bad one at start-up instead."""
    from django.conf import settings

    from kgc.queues import rate_limits_parse

    try:
        rate_limits_parse(settings.KGC_RATE_LIMITS)
    except ValueError as exc:
        return [checks.Error(f"KGC_RATE_LIMITS: {exc}", id="kgc.E001")]
    return []


def check_worker_settings(app_configs: object = None, **kwargs: object) -> list[checks.CheckMessage]:
    """KGC_CONCURRENCY, and fault-tolerance timings that would declare live workers dead."""
    from django.conf import settings

    from kgc.queue.config import concurrency_parse, timing_problems

    errors: list[checks.CheckMessage] = [
        checks.Error(problem, id="kgc.E002")
        for problem in timing_problems(
            heartbeat_interval=settings.KGC_HEARTBEAT_INTERVAL,
            dead_after=settings.KGC_WORKER_DEAD_AFTER,
            leader_ttl=settings.KGC_LEADER_TTL,
        )
    ]
    try:
        concurrency_parse(settings.KGC_CONCURRENCY)
    except ValueError as exc:
        errors.append(checks.Error(f"KGC_CONCURRENCY: {exc}", id="kgc.E003"))
    return errors


def check_tracing(app_configs: object = None, **kwargs: object) -> list[checks.CheckMessage]:
    """OTLP traces asked for without the OTLP exporter's package (it is not a requirement)."""
    from django.conf import settings

    from kgc.telemetry import otlp_package_missing

    missing = otlp_package_missing(settings.KGC_TRACE_EXPORTERS, settings.KGC_TRACE_OTLP_PROTOCOL)
    if missing is None:
        return []
    return [
        checks.Error(
            f"OTEL_TRACES_EXPORTER (or an OTEL_EXPORTER_OTLP_*ENDPOINT) asks for OTLP traces, but {missing} "
            f"is not installed: pip install {missing}",
            id="kgc.E004",
        )
    ]
