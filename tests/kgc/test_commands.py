"""The commands' shared argument types and their one-line errors."""

from __future__ import annotations

import argparse
from datetime import date, timedelta

import pytest
from django.core.management import CommandError, call_command, load_command_class

from kgc.commands import age, dash_values_joined, iso_date, positive_int
from tests.helpers import manage

# Every command of the project's apps that parses arguments of its own.
PROJECT_COMMANDS = [
    ("kgc", "cleanup_queue", ["email"]),
    ("kgc", "ensure_admin", []),
    ("kgc", "list_failed", []),
    ("kgc", "pause_queue", ["email"]),
    ("kgc", "queue_stats", []),
    ("kgc", "resume_queue", ["email"]),
    ("compliance", "refresh_compliance", []),
    ("compliance", "seed_demo", []),
    ("notifications", "check_expiry", []),
    ("notifications", "send_filing_reminders", []),
    ("notifications", "send_test_email", ["ops@example.com"]),
]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("7d", timedelta(days=7)), ("12h", timedelta(hours=12)), ("500ms", timedelta(milliseconds=500))],
)
def test_ages_are_read_with_their_unit(raw, expected):
    assert age(raw) == expected


@pytest.mark.parametrize(
    ("parse", "raw", "message"),
    [
        (age, "-1d", "must not be negative, got '-1d'"),
        (age, "seven days", "expected an age such as 7d, 12h, 30m or 90s, got 'seven days'"),
        (iso_date, "2026-13-45", "expected a date as YYYY-MM-DD, got '2026-13-45'"),
        (positive_int, "0", "must be at least 1, got 0"),
    ],
)
def test_bad_values_are_refused_with_what_is_wrong(parse, raw, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse(raw)


def test_a_dash_value_is_joined_to_its_option():
    parser = argparse.ArgumentParser()
    parser.add_argument("--completed-age")
    parser.add_argument("--json", action="store_true")
    assert dash_values_joined(parser, ["email", "--completed-age", "-1d", "--json"]) == [
        "email",
        "--completed-age=-1d",
        "--json",
    ]


def test_an_option_after_a_value_taking_option_stays_an_option():
    parser = argparse.ArgumentParser()
    parser.add_argument("--completed-age")
    parser.add_argument("--json", action="store_true")
    assert dash_values_joined(parser, ["--completed-age", "--json"]) == ["--completed-age", "--json"]


@pytest.mark.parametrize(("app", "name", "args"), PROJECT_COMMANDS)
def test_every_command_reports_a_bad_option_in_one_line_with_exit_code_2(capsys, app, name, args):
    command = load_command_class(app, name)
    command._called_from_command_line = True
    parser = command.create_parser("manage.py", name)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args([*args, "--no-such-option"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"manage.py {name}: error: unrecognized arguments: --no-such-option"
    ]


def test_a_bad_value_called_from_code_is_a_command_error_with_exit_code_2():
    with pytest.raises(CommandError, match="argument --as-of: expected a date") as raised:
        call_command("refresh_compliance", "--as-of", "2026-13-45")
    assert raised.value.returncode == 2


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["refresh_compliance", "--as-of", "2026-13-45"],
            "manage.py refresh_compliance: error: argument --as-of: expected a date as YYYY-MM-DD, got '2026-13-45'",
        ),
        (
            ["cleanup_queue", "email", "--completed-age", "-1d"],
            "manage.py cleanup_queue: error: argument --completed-age: must not be negative, got '-1d'",
        ),
    ],
)
def test_bad_input_on_the_command_line_is_one_line_on_stderr(args, line):
    result = manage(*args)
    assert (result.returncode, result.stderr.splitlines()) == (2, [line])


def test_dates_are_read_as_iso():
    assert iso_date("2026-11-29") == date(2026, 11, 29)
