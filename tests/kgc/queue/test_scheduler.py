"""Which cron ticks are due: a pure function of the schedules, the last ticks and the time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kgc.queue.scheduler import CATCH_UP_MAX, ticks_due, ticks_missed

NIGHTLY = ("compliance.refresh_all", "nightly")
HOURLY = ("kgc.retention", "hourly")
EVERY_2_S = ("tests.tick", "test")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def ticks(text: list[str]) -> list[int]:
    return [int(at(t)) for t in text]


@pytest.mark.parametrize(
    ("last", "now", "expected"),
    [
        # Never ticked: only the latest tick, if recent enough.
        (None, "2026-12-01 09:00", ["2026-12-01 02:00"]),
        (None, "2026-12-01 23:30", []),  # 21.5 h late: beyond the 20 h catch-up
        # Ticked yesterday: today's tick is due; so is nothing else.
        ("2026-11-30 02:00", "2026-12-01 02:00:30", ["2026-12-01 02:00"]),
        ("2026-12-01 02:00", "2026-12-01 09:00", []),  # already had it
        # Down for two nights: only the tick within the catch-up window.
        ("2026-11-28 02:00", "2026-12-01 03:00", ["2026-12-01 02:00"]),
    ],
)
def test_nightly_schedule(last, now, expected):
    due = ticks_due(
        crons={NIGHTLY: "0 2 * * *"}, last={NIGHTLY: int(at(last))} if last else {}, now=at(now), catch_up=20 * 3600
    )
    assert [tick for _, tick in due] == ticks(expected)


def test_ticks_missed_while_leadership_changed_hands_are_all_caught_up_in_order():
    last = int(at("2026-12-01 10:00:00"))
    due = ticks_due(
        crons={EVERY_2_S: "* * * * * */2"}, last={EVERY_2_S: last}, now=at("2026-12-01 10:00:09"), catch_up=3600
    )
    assert [tick - last for _, tick in due] == [2, 4, 6, 8]


def test_a_tick_exactly_now_is_due():
    due = ticks_due(
        crons={HOURLY: "17 * * * *"},
        last={HOURLY: int(at("2026-12-01 09:17"))},
        now=at("2026-12-01 10:17"),
        catch_up=3600,
    )
    assert [tick for _, tick in due] == ticks(["2026-12-01 10:17"])


def test_catch_up_is_capped_per_schedule():
    due = ticks_due(
        crons={EVERY_2_S: "* * * * * */2"},
        last={EVERY_2_S: int(at("2026-12-01 09:00"))},
        now=at("2026-12-01 10:00"),
        catch_up=7200,
    )
    assert len(due) == CATCH_UP_MAX
    assert due[-1][1] == int(at("2026-12-01 10:00"))  # the latest ones


def test_several_schedules_come_out_oldest_first():
    due = ticks_due(
        crons={NIGHTLY: "0 2 * * *", HOURLY: "17 * * * *"},
        last={NIGHTLY: int(at("2026-11-30 02:00")), HOURLY: int(at("2026-12-01 01:17"))},
        now=at("2026-12-01 03:00"),
        catch_up=20 * 3600,
    )
    assert due == [(NIGHTLY, int(at("2026-12-01 02:00"))), (HOURLY, int(at("2026-12-01 02:17")))]


@pytest.mark.parametrize(
    ("last", "now", "expected"),
    [
        # The current tick runs with catching up off, whether or not the schedule ran before.
        ("2026-11-30 02:00", "2026-12-01 02:00:00", ["2026-12-01 02:00"]),
        ("2026-11-30 02:00", "2026-12-01 02:00:20", ["2026-12-01 02:00"]),
        (None, "2026-12-01 02:00:01", ["2026-12-01 02:00"]),
        # A tick missed by more than a minute is not caught up.
        ("2026-11-30 02:00", "2026-12-01 02:05", []),
    ],
)
def test_with_catching_up_off_only_the_current_tick_runs(last, now, expected):
    due = ticks_due(
        crons={NIGHTLY: "0 2 * * *"}, last={NIGHTLY: int(at(last))} if last else {}, now=at(now), catch_up=0
    )
    assert [tick for _, tick in due] == ticks(expected)


@pytest.mark.parametrize(
    ("last", "now", "catch_up", "expected"),
    [
        ("2026-11-30 02:00", "2026-12-01 02:05", 0, "2026-12-01 02:00"),  # catching up off
        ("2026-11-28 02:00", "2026-12-01 23:00", 20 * 3600, "2026-12-01 02:00"),  # down for three days
        ("2026-11-28 02:00", "2026-12-01 03:00", 20 * 3600, "2026-11-30 02:00"),  # today's ran; yesterday's lost
        ("2026-11-30 02:00", "2026-12-01 03:00", 20 * 3600, None),  # caught up
        (None, "2026-12-01 23:00", 20 * 3600, None),  # never ran: a new schedule misses nothing
    ],
)
def test_the_newest_tick_skipped_for_good_is_reported(last, now, catch_up, expected):
    missed = ticks_missed(
        crons={NIGHTLY: "0 2 * * *"}, last={NIGHTLY: int(at(last))} if last else {}, now=at(now), catch_up=catch_up
    )
    assert missed == ({NIGHTLY: int(at(expected))} if expected else {})


def test_ticks_past_the_catch_up_cap_are_reported_missed():
    missed = ticks_missed(
        crons={EVERY_2_S: "* * * * * */2"},
        last={EVERY_2_S: int(at("2026-12-01 09:00"))},
        now=at("2026-12-01 10:00"),
        catch_up=7200,
    )
    assert missed == {EVERY_2_S: int(at("2026-12-01 10:00")) - 2 * CATCH_UP_MAX}
