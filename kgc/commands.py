"""What the project's management commands share: argument types and one-line errors.

Each type raises ``argparse.ArgumentTypeError``. Commands derive from ``ProjectCommand``,
whose parser reports bad input as one line on standard error with exit code 2
(``manage.py cleanup_queue: error: argument --completed-age: must not be negative, got '-1d'``)
instead of argparse's usage block followed by the message.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError, CommandParser

_AGE = re.compile(r"^(-?)(\d+)\s*(ms|s|m|h|d|w)$")
_AGE_UNITS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def iso_date(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {raw!r}") from None


def age(raw: str) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w`` or ``500ms``."""
    match = _AGE.match(raw.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"expected an age such as 7d, 12h, 30m or 90s, got {raw!r}")
    if match.group(1):
        raise argparse.ArgumentTypeError(f"must not be negative, got {raw!r}")
    return timedelta(**{_AGE_UNITS[match.group(3)]: int(match.group(2))})


def dash_values_joined(parser: argparse.ArgumentParser, args: Sequence[str]) -> list[str]:
    """``--completed-age -1d`` → ``--completed-age=-1d``.

    argparse takes any word that starts with a dash and is not a plain negative number for
    an option, so ``--completed-age -1d`` would fail with "expected one argument" instead
    of reaching the age type, which says what is wrong with it. Joined to its option, the
    value is the option's, whatever it looks like.
    """
    takes_one = {
        option
        for action in parser._actions  # argparse keeps no public list of the declared options
        if action.option_strings and action.nargs is None
        for option in action.option_strings
    }
    known = set(parser._option_string_actions)
    joined: list[str] = []
    words = iter(args)
    for word in words:
        if word in takes_one:
            value = next(words, None)
            if value is not None and value.startswith("-") and value not in known:
                joined.append(f"{word}={value}")
                continue
            joined.append(word)
            if value is not None:
                joined.append(value)
            continue
        joined.append(word)
    return joined


class OneLineCommandParser(CommandParser):
    """Django's command parser, with bad input reported in one line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        if self.called_from_command_line:
            self.exit(2, f"{self.prog}: error: {message}\n")
        raise CommandError(f"Error: {message}", returncode=2)

    def parse_known_args(  # type: ignore[override]  # argparse's overloads differ only by namespace type
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> Any:
        return super().parse_known_args(None if args is None else dash_values_joined(self, args), namespace)


class ProjectCommand(BaseCommand):
    """The base of the project's commands: one-line errors for bad arguments."""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # Django builds a CommandParser with its own options; the subclass changes only how
        # errors are reported and how option values are read, so the built parser is kept.
        parser.__class__ = OneLineCommandParser
        return parser
