"""Expiry notifications and filing reminders (being built)."""

from __future__ import annotations

from datetime import date
from typing import Any


def expiry_reminders_send(*, tenant: Any, as_of: date) -> Any:
    raise NotImplementedError


def filing_reminders_send(*, tenant: Any, as_of: date) -> Any:
    raise NotImplementedError
