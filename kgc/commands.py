"""Argument types shared by the management commands.

Each raises ``argparse.ArgumentTypeError``, which Django's command parser turns into
one line on standard error and exit code 2.
"""

from __future__ import annotations

import argparse
import re
from datetime import date, timedelta

_AGE = re.compile(r"^(\d+)\s*(ms|s|m|h|d|w)$")
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
    return timedelta(**{_AGE_UNITS[match.group(2)]: int(match.group(1))})
