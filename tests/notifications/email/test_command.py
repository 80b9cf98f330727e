"""``manage.py send_test_email ADDRESS [--template NAME]``."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from tests.helpers import manage


@pytest.mark.parametrize(
    "template", ["document-expiry", "filing-reminder", "compliance-alert", "custom", "daily-digest"]
)
def test_sends_a_sample_of_the_template_and_prints_the_outcome(db, smtp_mailer, template):
    out = io.StringIO()
    call_command("send_test_email", "ops@example.com", "--template", template, stdout=out)
    assert out.getvalue().startswith(f"sent {template} sample to ops@example.com via ")
    assert [r.rcpt_tos for r in smtp_mailer.received] == [["ops@example.com"]]


def test_refused_send_is_reported_not_raised(db, smtp_mailer):
    smtp_mailer.handler.rcpt_replies.append("550 5.1.1 No such user")
    with pytest.raises(CommandError, match="permanent failure.*550") as raised:
        call_command("send_test_email", "ops@example.com")
    assert raised.value.returncode == 1


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["not-an-address"], "recipient_email: 'not-an-address' is not a valid email address"),
        (["ops@example.com", "--template", "newsletter"], "template: unknown template 'newsletter'"),
    ],
)
def test_bad_address_or_template_is_one_line_and_exit_2(db, args, problem):
    result = manage("send_test_email", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"CommandError: {problem}")
