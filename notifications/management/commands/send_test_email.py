"""Send a sample of an email template through the configured backend and print the outcome."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core import mail
from django.core.management.base import CommandError, CommandParser

from kgc.commands import ProjectCommand
from notifications import rendering
from notifications.delivery import message_compose, provider_message_id, sender_domain
from notifications.services import email_request_errors
from notifications.transports import provider_failure_classify


class Command(ProjectCommand):
    help = "Send a sample email (one of the templates) to ADDRESS through the configured backend."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("address", help="recipient email address")
        parser.add_argument(
            "--template", default="custom", help=f"one of {', '.join(rendering.TEMPLATE_FIELDS)} (default custom)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        address, template = options["address"], options["template"]
        subject = f"KGC Compliance Cloud test email ({template})"
        data = rendering.SAMPLE_DATA.get(template, {})
        errors = email_request_errors(
            recipient_email=address,
            recipient_name="",
            subject=subject,
            template=template,
            data=data,
            templates=tuple(rendering.TEMPLATE_FIELDS),
        )
        if errors:
            raise CommandError("; ".join(f"{field}: {problem}" for field, problem in errors.items()), returncode=2)
        message = message_compose(
            to_email=address,
            to_name="",
            subject=subject,
            template=template,
            data=data,
            tenant_name="KGC test",
            message_id=f"<test-{uuid.uuid4()}@{sender_domain(settings.DEFAULT_FROM_EMAIL)}>",
            headers={"X-KGC-Tenant": "test", "X-KGC-Notification": "none"},
        )
        backend = settings.MAILERS["default"]["BACKEND"]
        connection = mail.mailers.default
        try:
            with connection:  # closed even after a failed login
                connection.send_messages([message])
        except Exception as exc:  # reported, not raised: the outcome is what this command is for
            failure = provider_failure_classify(exc)
            kind = {"failed": "permanent", "retry": "transient", "unknown": "delivery unknown"}.get(failure.kind, "")
            raise CommandError(f"not sent ({kind} failure) via {backend}: {failure.reason}", returncode=1) from None
        self.stdout.write(
            f"sent {template} sample to {address} via {backend}; message id {provider_message_id(message)}"
        )
