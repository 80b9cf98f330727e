"""The console's pure rules: formatting, chart buckets, histogram buckets, cleanup form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kgc.console import collector, dashboard, metrics


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "0s"),
        (59.9, "59s"),
        (60, "1m 0s"),
        (200, "3m 20s"),
        (3600, "1h 0m"),
        (7500, "2h 5m"),
        (4 * 86400 + 3 * 3600 + 7, "4d 3h"),
    ],
)
def test_age_format_shows_the_two_largest_units(seconds, text):
    assert metrics.age_format(seconds) == text


def test_text_table_aligns_columns_under_a_rule():
    table = metrics.text_table(["queue", "waiting"], [["email", 12], ["compliance", 3]])
    assert table.splitlines() == [
        "queue       waiting",
        "----------  -------",
        "email       12",
        "compliance  3",
    ]


def test_chart_origin_ends_the_window_with_the_bucket_holding_now():
    now = datetime(2026, 11, 29, 14, 52, 30, tzinfo=UTC)
    assert metrics.chart_origin(now) == datetime(2026, 11, 28, 14, 55, tzinfo=UTC)


def test_buckets_fill_puts_counts_in_their_bucket_and_zeros_elsewhere():
    origin = datetime(2026, 11, 29, 0, 0, tzinfo=UTC)
    rows = [(origin + timedelta(minutes=5), "succeeded", 4), (origin + timedelta(minutes=5), "failed", 1)]
    buckets = metrics.buckets_fill(rows, origin=origin, count=3, bucket=timedelta(minutes=5))
    assert [(b.completed, b.failed) for b in buckets] == [(0, 0), (4, 1), (0, 0)]


@pytest.mark.parametrize(
    ("bound", "text"),
    [(0.1, "0.1"), (0.5, "0.5"), (1.0, "1"), (1800.0, "1800"), (float("inf"), "+Inf")],
)
def test_bucket_bounds_are_written_as_they_always_were(bound, text):
    assert collector.bound_text(bound) == text


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ((2, 0, 0), [("1", 2.0), ("5", 2.0), ("+Inf", 2.0)]),
        ((0, 2, 0), [("1", 0.0), ("5", 2.0), ("+Inf", 2.0)]),
        ((1, 0, 3), [("1", 1.0), ("5", 1.0), ("+Inf", 4.0)]),
    ],
)
def test_histogram_buckets_are_cumulative(counts, expected):
    assert collector.buckets_cumulative(counts, (1.0, 5.0)) == expected


def test_chart_bars_scale_to_the_busiest_bucket_and_stack_failures_on_top():
    start = datetime(2026, 11, 29, tzinfo=UTC)
    buckets = [metrics.FinishedBucket(start, completed=3, failed=1), metrics.FinishedBucket(start, completed=1)]
    first, second = dashboard.chart_bars(buckets, width=10, height=100)
    assert (first.completed_height, first.failed_height, first.failed_y) == (75.0, 25.0, 0.0)
    assert (second.x, second.completed_height, second.completed_y) == (5, 25.0, 75.0)


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"queue": "nope", "completed_age": "7d"}, "unknown queue 'nope'"),
        ({"queue": "email", "completed_age": "7x"}, "completed age: expected an age"),
        ({"queue": "email"}, "give a completed age, a failed age or both"),
    ],
)
def test_cleanup_form_rejects_bad_input_with_a_reason(form, error):
    with pytest.raises(ValueError, match=error):
        dashboard.cleanup_request_parse(form)


def test_cleanup_form_leaves_a_blank_age_as_keep():
    assert dashboard.cleanup_request_parse({"queue": "email", "failed_age": "30d", "completed_age": " "}) == (
        "email",
        None,
        timedelta(days=30),
    )
