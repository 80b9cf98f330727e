from django.apps import AppConfig
from django.core import checks


class KgcConfig(AppConfig):
    """The shared queue layer: queue pause state, rate-limit log, job counters and failure records."""

    name = "kgc"
    verbose_name = "Queues"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        checks.register(check_rate_limits)
        results_recorded()
        console_names()


def results_recorded() -> None:
    """Every worker built from procrastinate's app records its jobs' return values (kgc.results)."""
    from procrastinate.contrib.django import app

    from kgc.results import job_result_record

    middleware = app.worker_defaults.setdefault("worker_middleware", [])
    if job_result_record not in middleware:
        middleware.append(job_result_record)


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
