"""Business days: when a due date falls on a weekend or a public holiday, it moves.

Most tax authorities take a return due on a Saturday or a public holiday on the next
business day (for US federal filings, IRC §7503, which counts the District of Columbia's
legal holidays such as Emancipation Day). A firm, and optionally a filing, names a holiday
calendar: a country and an optional subdivision (``US`` and ``DC``), through the
``holidays`` package. Without a calendar nothing moves, as before.

Pure functions: no ORM, no clock. A filing keeps its statutory ``due_date``; its
effective date is computed here each time it is needed, so a calendar changed in the
admin (or a newer ``holidays`` release) applies at the next run, with nothing to migrate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import holidays

WEEKEND = "weekend"
# However a calendar stacks weekends and holidays, a due date never moves further than this;
# reads widen their date windows by it (a week-long holiday plus two weekends).
MAX_ROLL_DAYS = 16


@dataclass(frozen=True)
class HolidayCalendar:
    """A country (ISO 3166 alpha-2, ``US``) and optionally one of its subdivisions (``DC``)."""

    country: str
    subdivision: str = ""

    def __str__(self) -> str:
        return f"{self.country}-{self.subdivision}" if self.subdivision else self.country


class CalendarError(ValueError):
    """A country or subdivision the ``holidays`` package does not know; ``errors`` by field."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))


@lru_cache(maxsize=1)
def supported() -> dict[str, tuple[str, ...]]:
    """Every country code the package knows, with its subdivision codes."""
    return {country: tuple(subdivisions) for country, subdivisions in holidays.list_supported_countries().items()}


def calendar_errors(*, country: str, subdivision: str) -> dict[str, str]:
    """What is wrong with a calendar, by field (``country``, ``subdivision``); empty when it is fine.

    An empty country means no calendar, and then there may be no subdivision.
    """
    if not country:
        return {"subdivision": "needs a country"} if subdivision else {}
    known = supported()
    if country not in known:
        return {"country": f"{country!r} is not a country code the holidays calendar knows (e.g. US, GB, KE, IN, NZ)"}
    if subdivision and subdivision not in known[country]:
        choices = ", ".join(known[country]) or "none"
        return {"subdivision": f"{subdivision!r} is not a subdivision of {country}; known: {choices}"}
    return {}


def calendar_of(
    *, country: str, subdivision: str, override_country: str = "", override_subdivision: str = ""
) -> HolidayCalendar | None:
    """The calendar that applies: a filing's own (``override_*``) if it has one, else the firm's, else None."""
    if override_country:
        return HolidayCalendar(override_country, override_subdivision)
    return HolidayCalendar(country, subdivision) if country else None


@lru_cache(maxsize=512)
def _year(calendar: HolidayCalendar, year: int) -> tuple[dict[date, str], frozenset[int]]:
    found = holidays.country_holidays(calendar.country, subdiv=calendar.subdivision or None, years=year)
    return dict(found.items()), frozenset(found.weekend)


def closed_because(*, day: date, calendar: HolidayCalendar) -> str | None:
    """Why ``day`` is not a business day under ``calendar`` (``weekend`` or the holiday's name), or None."""
    named, weekend = _year(calendar, day.year)
    if day in named:
        return named[day]
    return WEEKEND if day.weekday() in weekend else None


@dataclass(frozen=True)
class DueDate:
    """A statutory due date and the business day it is effectively due (the same if it did not move)."""

    statutory: date
    effective: date
    reasons: tuple[str, ...] = ()  # why each skipped day was skipped, in order, without repeats

    @property
    def moved(self) -> bool:
        return self.effective != self.statutory

    @property
    def moved_note(self) -> str:
        """``moved from Saturday 16 May: weekend``, or "" when it did not move."""
        if not self.moved:
            return ""
        return f"moved from {day_and_month(self.statutory)}: {', '.join(self.reasons)}"


def effective_due_date(*, due: date, calendar: HolidayCalendar | None) -> DueDate:
    """The business day ``due`` is effectively due: itself, or the next day that is neither a weekend
    day nor a holiday of ``calendar``. Without a calendar, ``due`` itself."""
    if calendar is None:
        return DueDate(due, due)
    day, reasons = due, dict[str, str]()
    for _ in range(MAX_ROLL_DAYS):
        reason = closed_because(day=day, calendar=calendar)
        if reason is None:
            break
        # A holiday and its observed day are one reason ("weekend, Emancipation Day").
        reasons.setdefault(reason.removesuffix(" (observed)"), reason)
        day += timedelta(days=1)
    return DueDate(due, day, tuple(reasons.values()))


# Cached: a digest writes hundreds of items over a few dozen dates, and strftime's names cost
# more than the rest of an item's text.
@lru_cache(maxsize=4096)
def day_and_month(day: date) -> str:
    """``Saturday 16 May``."""
    return f"{day:%A} {day.day} {day:%B}"


@lru_cache(maxsize=4096)
def long_day(day: date) -> str:
    """``Monday 18 May 2026``."""
    return f"{day_and_month(day)} {day.year}"


def due_phrase(due: DueDate) -> str:
    """``Monday 18 May 2026 (moved from Saturday 16 May: weekend)``, or the plain date when it did not move."""
    return f"{long_day(due.effective)} ({due.moved_note})" if due.moved else long_day(due.effective)
