from django.apps import AppConfig


class KgcConfig(AppConfig):
    """The shared queue layer: queue pause state, rate-limit log and failure records."""

    name = "kgc"
    verbose_name = "Queues"
    default_auto_field = "django.db.models.BigAutoField"
