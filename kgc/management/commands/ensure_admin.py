"""The development admin user and API token: create or reset them, or show them again."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from kgc import dev
from kgc.commands import ProjectCommand


class Command(ProjectCommand):
    help = (
        "Create or reset the development superuser and API token and print them (KGC_ADMIN_PASSWORD sets the "
        "password; otherwise the previous one is kept). --show prints the banner again, --api-token the token."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--email", default="admin@example.com")
        parser.add_argument(
            "--show", action="store_true", help="print the banner with URL and credentials; change nothing"
        )
        parser.add_argument("--url", default=dev.DEFAULT_URL, help="the server's address, for the banner")
        parser.add_argument("--api-token", action="store_true", help="print the development API token only")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("ensure_admin prints a password and is for development: set DEBUG=true", returncode=2)
        store = settings.KGC_DATA_DIR
        if options["show"] or options["api_token"]:
            try:
                credentials = dev.dev_credentials_load(store=store)
            except dev.DevCredentialsMissing as exc:
                raise CommandError(str(exc), returncode=2) from None
            if options["api_token"]:
                self.stdout.write(credentials.api_token)
                return
            # The server accepts the configured tokens; the saved one is what bin/dev configures.
            token = settings.KGC_API_TOKENS[0] if settings.KGC_API_TOKENS else credentials.api_token
            banner = dev.banner_render(
                url=options["url"],
                credentials=credentials,
                api_token=token,
                password_valid=dev.dev_password_valid(credentials),
            )
            self.stdout.write(banner)
            return
        credentials, done = dev.dev_admin_ensure(
            username=options["username"],
            email=options["email"],
            password=settings.KGC_ADMIN_PASSWORD,
            store=store,
        )
        what = {"created": "created", "reset": "reset", "kept": "unchanged"}[done]
        self.stdout.write(f"Admin user {what}: username {credentials.username}  password {credentials.password}")
