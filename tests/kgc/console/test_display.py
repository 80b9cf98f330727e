"""The console's pure rules: job states, attempts, tracebacks, formats, duties, chart lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kgc.console import display

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "scheduled_at", "queue_paused", "state"),
    [
        ("todo", None, False, "waiting"),
        ("todo", NOW - timedelta(minutes=1), False, "waiting"),
        ("todo", None, True, "paused"),
        ("todo", NOW + timedelta(minutes=5), False, "delayed"),
        ("todo", NOW + timedelta(minutes=5), True, "delayed"),
        ("doing", None, False, "active"),
        ("succeeded", None, False, "completed"),
        ("failed", None, False, "failed"),
        ("cancelled", None, False, "cancelled"),
        ("aborted", None, False, "cancelled"),
    ],
)
def test_job_states_use_the_dashboards_names(status, scheduled_at, queue_paused, state):
    assert display.job_state(status=status, scheduled_at=scheduled_at, queue_paused=queue_paused, now=NOW) == state


@pytest.mark.parametrize(
    ("will_retry", "expected"),
    [
        ([False], [(1, "failed for good")]),
        (
            [True, True, False],
            [(1, "failed; retried automatically"), (2, "failed; retried automatically"), (3, "failed for good")],
        ),
        ([False, False], [(1, "failed for good; retried by hand later"), (2, "failed for good")]),
    ],
)
def test_attempts_are_numbered_over_the_jobs_life(will_retry, expected):
    assert [(a.number, a.outcome) for a in display.attempts_numbered(will_retry)] == expected


TRACEBACK = """Traceback (most recent call last):
  File "/usr/lib/python3.12/site-packages/procrastinate/worker.py", line 300, in run_job
    result = await task_result
  File "/usr/lib/python3.12/asyncio/threads.py", line 25, in to_thread
    return await loop.run_in_executor(None, func_call)
  File "/srv/kgc/compliance/tasks.py", line 30, in refresh_tenant
    tenant = tenant_get(tenant_id)
             ^^^^^^^^^^^^^^^^^^^^^
  File "/srv/kgc/compliance/selectors.py", line 48, in tenant_get
    raise UnknownTenant(reference)
compliance.exceptions.UnknownTenant: no active tenant with id or slug 7"""


def test_traceback_framework_frames_fold_and_project_frames_show():
    blocks = display.traceback_blocks(TRACEBACK)
    assert [(block.kind, block.frames) for block in blocks] == [("text", 0), ("framework", 2), ("own", 2), ("text", 0)]
    assert blocks[2].lines[1] == "    tenant = tenant_get(tenant_id)"
    assert blocks[2].lines[2].strip() == "^^^^^^^^^^^^^^^^^^^^^"
    assert blocks[-1].text == "compliance.exceptions.UnknownTenant: no active tenant with id or slug 7"


@pytest.mark.parametrize(
    ("path", "own"),
    [
        ("/srv/kgc/notifications/delivery.py", True),
        ("/work/app/.venv/lib/python3.12/site-packages/django/db/utils.py", False),
        ("/usr/lib/python3/dist-packages/psycopg/cursor.py", False),
        ("/usr/lib/python3.12/smtplib.py", False),
        ("<frozen importlib._bootstrap>", False),
    ],
)
def test_frames_of_the_project_are_told_from_library_frames(path, own):
    assert display.frame_is_own(path) is own


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.0421, "0.042 s"), (12.54, "12.5 s"), (200, "3m 20s"), (7320, "2h 2m"), (3600, "1h")],
)
def test_durations_are_short(seconds, text):
    assert display.duration_format(seconds) == text


@pytest.mark.parametrize(
    ("text", "width", "shortened"),
    [("short", 10, "short"), ("a  long\nmessage here", 10, "a long me…"), ("exactly 10", 10, "exactly 10")],
)
def test_text_is_shortened_to_one_line(text, width, shortened):
    assert display.text_shorten(text, width) == shortened


@pytest.mark.parametrize(
    ("queued", "started", "finished", "shown_finished", "duration"),
    [
        (NOW, NOW + timedelta(seconds=1), NOW + timedelta(seconds=3), NOW + timedelta(seconds=3), 2.0),
        (NOW, NOW + timedelta(seconds=5), NOW + timedelta(seconds=3), None, None),  # running again
        (NOW, None, NOW + timedelta(seconds=3), NOW + timedelta(seconds=3), None),  # cancelled before it started
        (NOW, None, None, None, None),
    ],
)
def test_job_times_belong_to_its_last_run(queued, started, finished, shown_finished, duration):
    times = display.job_times(queued_at=queued, started_at=started, finished_at=finished)
    assert (times.finished_at, times.duration_seconds) == (shown_finished, duration)


@pytest.mark.parametrize(
    ("raw", "end", "expected"),
    [
        ("2026-12-01", False, datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12-01", True, datetime(2026, 12, 2, tzinfo=UTC)),
        ("2026-12-01 14:30", True, datetime(2026, 12, 1, 14, 30, tzinfo=UTC)),
        ("2026-12-01T14:30:00+02:00", False, datetime(2026, 12, 1, 12, 30, tzinfo=UTC)),
    ],
)
def test_range_bounds_are_read_in_utc(raw, end, expected):
    assert display.range_bound_parse(raw, end=end) == expected


def test_a_bad_range_bound_says_what_was_expected():
    with pytest.raises(display.BadRange, match="expected a date such as 2026-12-01 .* got 'yesterday'"):
        display.range_bound_parse("yesterday", end=False)


def test_duties_are_summarised_failing_first_with_their_details():
    duties = {
        "listener": {"state": "running", "restarts": 0, "failing_since": None, "last_error": ""},
        "heartbeat": {"state": "failing", "restarts": 3, "failing_since": "2026-12-01T11:59:00Z", "last_error": "down"},
        "scheduler": {"state": "standby", "restarts": 0, "failing_since": None, "last_error": ""},
    }
    views = display.duties_summary(duties)
    assert [(v.name, v.state) for v in views] == [
        ("heartbeat", "failing"),
        ("listener", "running"),
        ("scheduler", "standby"),
    ]
    assert views[0].detail == "failing since 2026-12-01T11:59:00Z; 3 restart(s); last error: down"


def test_series_lines_share_one_scale():
    lines = display.series_lines({"email": [0, 10], "compliance": [5, 0]}, width=100, height=50)
    assert [(line.name, line.points, line.total) for line in lines] == [
        ("email", "25.0,50.0 75.0,0.0", 10),
        ("compliance", "25.0,25.0 75.0,50.0", 5),
    ]


def test_chart_ticks_are_placed_in_percent():
    assert display.tick_positions(["00:00", "00:05", "00:10", "00:15"], every=2) == [(0.0, "00:00"), (50.0, "00:10")]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Short name", "Short name"),
        (None, "-"),
        (
            "A name far too long for its column",
            '<span class="kgc-truncate" title="A name far too long for its column">A name far…</span>',
        ),
    ],
)
def test_list_cells_cut_long_text_and_keep_it_on_hover(text, shown):
    assert display.truncated(text, 11) == shown


def test_dates_in_lists_are_iso_dates():
    assert display.date_cell(datetime(2026, 6, 8, 9, 30, tzinfo=UTC)) == (
        '<span class="kgc-nowrap" title="2026-06-08 09:30:00 UTC">2026-06-08</span>'
    )


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (datetime(2026, 12, 5, 14, 3, 7, tzinfo=UTC), "5 Dec 14:03:07"),  # today: with its day all the same
        (datetime(2026, 1, 30, 9, 0, 0, tzinfo=UTC), "30 Jan 09:00:00"),
        (datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC), "31 Dec 2025 23:59"),
    ],
)
def test_list_times_carry_their_day(at, expected):
    assert display.moment_text(at, now=datetime(2026, 12, 5, 15, 0, tzinfo=UTC)) == expected


@pytest.mark.parametrize(
    ("stored", "expected"),
    [(-1, "1"), (-100, "100"), (-5000, "5000")],
)
def test_priorities_show_on_bullmqs_scale(stored, expected):
    assert display.priority_text(stored) == expected


@pytest.mark.parametrize("stored", [0, 7])
def test_a_priority_of_procrastinates_own_scale_says_where_it_stands(stored):
    text = display.priority_text(stored)
    assert text.startswith("above 1: procrastinate's own priority") and f" {stored}," in text


@pytest.mark.parametrize(
    ("oldest", "used", "state"),
    [
        (None, None, ""),
        (600.0, None, ""),
        (900.0, 1.0, ""),
        (1200.0, None, "late"),  # no rate limit: nothing but a stall explains it
        (1200.0, 0.2, "late"),  # a limit it does not use
        (1200.0, 0.85, "paced"),  # starting jobs as fast as its (paced) limit allows
        (1200.0, 0.5, "late"),
        (1200.0, 1.0, "paced"),
    ],
)
def test_a_backlog_held_back_by_the_rate_limit_is_told_from_a_stuck_one(oldest, used, state):
    assert display.backlog_state(oldest_waiting_seconds=oldest, window_used_ratio=used) == state


def test_a_paced_backlog_says_how_long_the_rest_takes_at_the_limit():
    note = display.drain_note(waiting=1592, limit=100, per_seconds=60)
    assert note == "held back by its rate limit (100 / 60 s), as designed: the 1,592 waiting start within about 16 min"
    assert display.drain_note(waiting=30, limit=100, per_seconds=60).endswith("within under a minute")
    assert display.drain_note(waiting=30, limit=None, per_seconds=None) == ""
