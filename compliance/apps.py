from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the scoring settings' system check (compliance.E001).
        from compliance import conf  # noqa: F401
