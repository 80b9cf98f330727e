"""Business days: a due date on a weekend or a public holiday moves to the next business day (pure)."""

from __future__ import annotations

from datetime import date

import pytest

from compliance.calendars import (
    HolidayCalendar,
    calendar_errors,
    calendar_of,
    due_phrase,
    effective_due_date,
)

US_DC = HolidayCalendar("US", "DC")


@pytest.mark.parametrize(
    ("due", "calendar", "effective", "reasons"),
    [
        (date(2026, 5, 16), HolidayCalendar("US"), date(2026, 5, 18), ("weekend",)),  # a Saturday
        (date(2026, 5, 17), HolidayCalendar("US"), date(2026, 5, 18), ("weekend",)),  # a Sunday
        (date(2026, 5, 18), HolidayCalendar("US"), date(2026, 5, 18), ()),  # a Monday: stays
        (date(2026, 5, 16), None, date(2026, 5, 16), ()),  # no calendar: nothing moves
        # DC's Emancipation Day (April 16) moves the federal deadline in some years:
        (date(2022, 4, 15), US_DC, date(2022, 4, 18), ("Emancipation Day (observed)", "weekend")),
        (date(2023, 4, 15), US_DC, date(2023, 4, 18), ("weekend", "Emancipation Day")),
        (date(2027, 4, 16), US_DC, date(2027, 4, 19), ("Emancipation Day", "weekend")),  # due on the day itself
        (date(2027, 4, 15), US_DC, date(2027, 4, 15), ()),  # a Thursday before it: stays
        (date(2027, 4, 16), HolidayCalendar("US", "CA"), date(2027, 4, 16), ()),  # not a holiday in California
        (date(2027, 12, 25), HolidayCalendar("KE"), date(2027, 12, 28), ("Christmas Day", "Boxing Day")),
        (date(2027, 1, 26), HolidayCalendar("IN"), date(2027, 1, 27), ("Republic Day",)),
        (date(2027, 4, 23), HolidayCalendar("SA"), date(2027, 4, 25), ("weekend",)),  # Friday and Saturday there
    ],
)
def test_the_effective_due_date_is_the_next_business_day(due, calendar, effective, reasons):
    moved = effective_due_date(due=due, calendar=calendar)
    assert (moved.statutory, moved.effective, moved.reasons) == (due, effective, reasons)


def test_a_moved_date_is_said_with_the_statutory_day_and_why():
    moved = effective_due_date(due=date(2026, 5, 16), calendar=HolidayCalendar("US"))
    assert due_phrase(moved) == "Monday 18 May 2026 (moved from Saturday 16 May: weekend)"
    assert due_phrase(effective_due_date(due=date(2026, 5, 18), calendar=None)) == "Monday 18 May 2026"


@pytest.mark.parametrize(
    ("country", "subdivision", "errors"),
    [
        ("", "", {}),
        ("US", "", {}),
        ("US", "DC", {}),
        ("GB", "ENG", {}),
        ("", "DC", {"subdivision": "needs a country"}),
        ("XX", "", {"country": "'XX' is not a country code the holidays calendar knows (e.g. US, GB, KE, IN, NZ)"}),
    ],
)
def test_calendar_errors_name_the_field(country, subdivision, errors):
    assert calendar_errors(country=country, subdivision=subdivision) == errors


def test_an_unknown_subdivision_lists_the_known_ones():
    [(field, message)] = calendar_errors(country="US", subdivision="ZZ").items()
    assert field == "subdivision" and "'ZZ' is not a subdivision of US; known: " in message and "DC" in message


def test_the_us_calendar_knows_its_57_subdivisions_including_dc():
    from compliance.calendars import supported

    assert len(supported()["US"]) == 57 and "DC" in supported()["US"]


@pytest.mark.parametrize(
    ("firm", "filing", "expected"),
    [
        (("", ""), ("", ""), None),
        (("US", "CA"), ("", ""), HolidayCalendar("US", "CA")),
        (("US", "CA"), ("US", "DC"), HolidayCalendar("US", "DC")),  # a federal filing of a Californian firm
        (("", ""), ("KE", ""), HolidayCalendar("KE")),
    ],
)
def test_a_filings_own_calendar_comes_before_its_firms(firm, filing, expected):
    assert (
        calendar_of(country=firm[0], subdivision=firm[1], override_country=filing[0], override_subdivision=filing[1])
        == expected
    )
