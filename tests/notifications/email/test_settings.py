"""Email settings from the environment: the backend is picked by variables, bad ones stop start-up."""

from __future__ import annotations

import pytest

from tests.helpers import manage, subprocess_env

SHOW = "from django.conf import settings; print(settings.MAILERS['default']['BACKEND'])"


@pytest.mark.parametrize(
    ("env", "backend"),
    [
        ({}, "kgc.mail.ConsoleSummaryBackend"),
        ({"EMAIL_CONSOLE_FULL": "true"}, "django.core.mail.backends.console.EmailBackend"),
        ({"SMTP_HOST": "smtp.sendgrid.net"}, "notifications.mime.SMTPBackend"),
        ({"EMAIL_PROVIDER": "postmark", "POSTMARK_SERVER_TOKEN": "t"}, "anymail.backends.postmark.EmailBackend"),
        ({"EMAIL_PROVIDER": "mailgun", "MAILGUN_API_KEY": "k"}, "anymail.backends.mailgun.EmailBackend"),
        ({"EMAIL_PROVIDER": "ses", "AWS_REGION": "eu-west-1"}, "anymail.backends.amazon_ses.EmailBackend"),
    ],
)
def test_environment_picks_the_backend(db, env, backend):
    result = manage("shell", "-c", SHOW, env=subprocess_env(**{"EMAIL_PROVIDER": None, "SMTP_HOST": None, **env}))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == backend


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"EMAIL_PROVIDER": "sendgrid-api"}, "EMAIL_PROVIDER"),
        ({"EMAIL_PROVIDER": "postmark"}, "POSTMARK_SERVER_TOKEN"),
        ({"EMAIL_PROVIDER": "mailgun"}, "MAILGUN_API_KEY"),
        ({"EMAIL_PROVIDER": "ses", "AWS_REGION": None}, "AWS_REGION"),
        ({"SMTP_HOST": "smtp.example.com", "SMTP_TIMEOUT": "soon"}, "SMTP_TIMEOUT"),
        ({"ANYMAIL_WEBHOOK_SECRET": "no-colon"}, "ANYMAIL_WEBHOOK_SECRET"),
        (
            {"DEBUG": "false", "SECRET_KEY": "k" * 60, "EMAIL_PROVIDER": "postmark", "POSTMARK_SERVER_TOKEN": "t"},
            "ANYMAIL_WEBHOOK_SECRET",
        ),
    ],
)
def test_bad_email_variable_stops_startup_naming_it(db, env, variable):
    result = manage("check", env=subprocess_env(**env))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"kgc: configuration error: {variable}:")


def test_amazon_ses_calls_are_made_once_by_botocore(db):
    """botocore's own retries would send again a request that went out and got no answer."""
    show = "from django.conf import settings; print(settings.MAILERS['default']['OPTIONS']['client_params']['config'])"
    result = manage("shell", "-c", show, env=subprocess_env(EMAIL_PROVIDER="ses", AWS_REGION="eu-west-1"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "{'retries': {'total_max_attempts': 1, 'mode': 'standard'}}"


def test_webhooks_stay_shut_without_a_configured_secret(db):
    show = "from django.conf import settings; print(settings.ANYMAIL['WEBHOOK_SECRET'].split(':')[0])"
    result = manage("shell", "-c", show, env=subprocess_env(ANYMAIL_WEBHOOK_SECRET=None))
    assert result.stdout.strip().splitlines()[-1] == "closed"
