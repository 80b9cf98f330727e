"""Create (or reset) the development admin user and print its credentials."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser

from kgc.commands import ProjectCommand


class Command(ProjectCommand):
    help = "Create or reset a superuser with a new random password and print it (development only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--email", default="admin@example.com")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("ensure_admin prints a password and is for development: set DEBUG=true", returncode=2)
        password = secrets.token_urlsafe(12)
        user, created = get_user_model().objects.get_or_create(
            username=options["username"], defaults={"email": options["email"]}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(
            f"Admin user {'created' if created else 'reset'}: username {user.username}  password {password}"
        )
