from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The operator console, an app of its own: Django finds its admin screens, templates and static files."""

    name = "kgc.console"
    label = "kgc_console"
    verbose_name = "Jobs console"
