"""The operator console's rules for showing things: pure functions over plain data.

Job states in BullMQ's names, attempts numbered across manual retries, tracebacks opened
at the project's own frames, worker duties in a few words, the chart's geometry. No
database and no clock here: ``selectors`` reads, the screens (``dashboard``, ``jobs_list``,
``job_page``) render.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import models
from django.utils.html import format_html
from django.utils.safestring import SafeString

# --- Job states ---------------------------------------------------------------------------


class JobState(models.TextChoices):
    """The dashboard's names for a job's state (BullMQ's), also used by the jobs list."""

    WAITING = "waiting", "waiting"
    ACTIVE = "active", "active"
    DELAYED = "delayed", "delayed"
    COMPLETED = "completed", "completed"
    FAILED = "failed", "failed"
    PAUSED = "paused", "paused"
    CANCELLED = "cancelled", "cancelled"


FINISHED_STATUSES = ("succeeded", "failed", "cancelled", "aborted")
STATUS_STATES = {
    "doing": JobState.ACTIVE,
    "succeeded": JobState.COMPLETED,
    "failed": JobState.FAILED,
    "cancelled": JobState.CANCELLED,
    "aborted": JobState.CANCELLED,
}


def job_state(*, status: str, scheduled_at: datetime | None, queue_paused: bool, now: datetime) -> JobState:
    """A procrastinate status, told apart as the dashboard's counts do (see ``kgc.queue.jobs.QueueStats``)."""
    if status != "todo":
        return STATUS_STATES.get(status, JobState.CANCELLED)
    if scheduled_at is not None and scheduled_at > now:
        return JobState.DELAYED
    return JobState.PAUSED if queue_paused else JobState.WAITING


@dataclass(frozen=True)
class JobTimes:
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None  # None while it runs again after an earlier attempt ended
    duration_seconds: float | None  # of the last run, once it has ended


def job_times(*, queued_at: datetime | None, started_at: datetime | None, finished_at: datetime | None) -> JobTimes:
    """A job's times from its events: when it was first queued, last started and last ended."""
    if started_at is not None and finished_at is not None and finished_at < started_at:
        finished_at = None  # the last run has not ended: the end seen belongs to an earlier one
    duration = (finished_at - started_at).total_seconds() if started_at and finished_at else None
    return JobTimes(queued_at=queued_at, started_at=started_at, finished_at=finished_at, duration_seconds=duration)


class BadRange(ValueError):
    """A date-range bound the jobs list cannot read."""


def range_bound_parse(raw: str, *, end: bool) -> datetime:
    """``2026-12-01``, ``2026-12-01 14:30`` or an ISO timestamp, in UTC unless it says otherwise.

    A date alone as the end of a range means the whole of that day.
    """
    text = raw.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRange(f"expected a date such as 2026-12-01 or 2026-12-01 14:30, got {raw!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def moment_text(at: datetime, *, now: datetime) -> str:
    """A time in a list's column, always with its day: "5 Dec 14:03:07"; another year's with the
    year instead of the seconds, "5 Dec 2025 14:03" (the exact time is on hover)."""
    if at.year == now.year:
        return f"{at.day} {at:%b %H:%M:%S}"
    return f"{at.day} {at:%b %Y %H:%M}"


def priority_text(stored: int) -> str:
    """A job's stored priority on BullMQ's scale (1 is the highest).

    procrastinate stores the highest first, so kgc stores the negated number. A stored 0 or
    more was not given by kgc: a job deferred with procrastinate's own ``defer()`` and a
    priority of procrastinate's (its scale: higher first), which runs before priority 1.
    """
    if stored < 0:
        return str(-stored)
    return (
        f"above 1: procrastinate's own priority {stored}, given without the job helpers; "
        "it runs before every job deferred with a priority of 1 or lower"
    )


# --- Attempts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptView:
    number: int  # 1, 2, 3... over the job's whole life, manual retries included
    outcome: str


def attempts_numbered(will_retry: Sequence[bool]) -> list[AttemptView]:
    """Failed attempts in the order they failed, numbered over the job's life.

    A failure record keeps the attempt number within its run, and a manual retry starts a
    new run at 1; numbered that way, a job retried by hand showed "Attempt 1" twice.
    """
    views = []
    for index, retried in enumerate(will_retry):
        if retried:
            outcome = "failed; retried automatically"
        elif index < len(will_retry) - 1:
            outcome = "failed for good; retried by hand later"
        else:
            outcome = "failed for good"
        views.append(AttemptView(number=index + 1, outcome=outcome))
    return views


# --- Tracebacks ---------------------------------------------------------------------------

_FRAME = re.compile(r'^  File "(?P<path>[^"]+)", line (?P<line>\d+), in (?P<function>.+)$')
_LIBRARY = re.compile(r"/(site|dist)-packages/|/lib/python3\.\d+/|^<frozen ")


@dataclass
class TracebackBlock:
    """Lines of a traceback that show together: the project's own frame(s), a run of
    framework frames (collapsed), or text (the header, the exception, chained ones)."""

    kind: str  # "own", "framework" or "text"
    lines: list[str] = field(default_factory=list)
    frames: int = 0

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def frame_is_own(path: str) -> bool:
    """A frame of the project's code, rather than of the standard library or an installed package."""
    return not _LIBRARY.search(path)


def traceback_blocks(text: str) -> list[TracebackBlock]:
    """Split a formatted traceback so that the project's frames show and the others fold away."""
    blocks: list[TracebackBlock] = []
    for line in text.splitlines():
        match = _FRAME.match(line)
        if match:
            kind = "own" if frame_is_own(match.group("path")) else "framework"
            if not blocks or blocks[-1].kind != kind:
                blocks.append(TracebackBlock(kind=kind))
            blocks[-1].lines.append(line)
            blocks[-1].frames += 1
        elif line.startswith("    ") and blocks and blocks[-1].kind in ("own", "framework"):
            blocks[-1].lines.append(line)  # a frame's source line (and its ^^^ markers)
        else:
            if not blocks or blocks[-1].kind != "text":
                blocks.append(TracebackBlock(kind="text"))
            blocks[-1].lines.append(line)
    return blocks


# --- Small formats ------------------------------------------------------------------------


def duration_format(seconds: float | None) -> str:
    """``None`` → "-"; under a minute with milliseconds ("0.042 s", "12.5 s"), then "3m 20s"."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.3f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    parts = [(whole // 3600, "h"), (whole % 3600 // 60, "m"), (whole % 60, "s")]
    shown = [f"{value}{unit}" for value, unit in parts if value][:2]
    return " ".join(shown)


def text_shorten(text: str, width: int) -> str:
    """One line of at most ``width`` characters, cut with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"


def truncated(text: object, width: int) -> SafeString | str:
    """A list cell's text cut to ``width`` characters, the whole of it on hover (fits 1280 px)."""
    if text is None or text == "":
        return "-"
    full = " ".join(str(text).split())
    if len(full) <= width:
        return full
    return format_html('<span class="kgc-truncate" title="{}">{}</span>', full, text_shorten(full, width))


def date_cell(value: date | datetime | None) -> SafeString | str:
    """A date (or a time's date) as 2026-06-08, which never wraps; the exact time on hover."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return format_html(
            '<span class="kgc-nowrap" title="{} UTC">{}</span>', f"{value:%Y-%m-%d %H:%M:%S}", f"{value:%Y-%m-%d}"
        )
    return format_html('<span class="kgc-nowrap">{}</span>', value.isoformat())


def rate_format(per_minute: float | None) -> str:
    if per_minute is None:
        return "-"
    return f"{per_minute:.1f}/min" if per_minute < 10 else f"{per_minute:.0f}/min"


def percent_format(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio * 100:.1f} %" if ratio < 0.1 else f"{ratio * 100:.0f} %"


# --- Backlogs ------------------------------------------------------------------------------

BACKLOG_LATE_AFTER = 900.0  # seconds the first job in line may wait before the dashboard says so
# The share of its rate limit's window a queue uses while its limit holds it back: the email
# queue's claim paces its limit (a tenth in any tenth of the window), so a busy window counts
# some 85 to 90 starts of 100, not 100.
PACED_FROM = 0.8


def backlog_state(
    *, oldest_waiting_seconds: float | None, window_used_ratio: float | None, late_after: float = BACKLOG_LATE_AFTER
) -> str:
    """How the dashboard marks a queue's oldest waiting job: "" (in time), "paced" (waiting longer
    than ``late_after`` because the queue's rate limit holds it back, as designed: it starts jobs
    as fast as the limit allows) or "late" (waiting longer while the queue does not use its limit:
    stuck, paused, or short of workers). ``window_used_ratio`` is None for a queue without a limit."""
    if oldest_waiting_seconds is None or oldest_waiting_seconds <= late_after:
        return ""
    if window_used_ratio is not None and window_used_ratio >= PACED_FROM:
        return "paced"
    return "late"


def drain_note(*, waiting: int, limit: int | None, per_seconds: float | None) -> str:
    """How long a rate-limited queue takes to start what waits, at its limit ("" without one)."""
    if not limit or not per_seconds or waiting <= 0:
        return ""
    minutes = waiting / (limit * 60 / per_seconds)
    spent = "under a minute" if minutes < 1 else f"about {round(minutes)} min"
    return (
        f"held back by its rate limit ({limit} / {per_seconds:g} s), as designed: "
        f"the {waiting:,} waiting start within {spent}"
    )


# --- Workers ------------------------------------------------------------------------------

DUTY_STATES = ("running", "failing", "standby", "stopped")


@dataclass(frozen=True)
class DutyView:
    name: str
    state: str
    restarts: int
    detail: str  # for the hover text: since when it fails and its last error


def duties_summary(duties: Mapping[str, Any]) -> list[DutyView]:
    """A worker's duties as the worker reported them (``WorkerProcess.duties``), failing ones first."""
    views = []
    for name, reported in duties.items():
        report = reported if isinstance(reported, Mapping) else {}
        state = str(report.get("state", "unknown"))
        restarts = int(report.get("restarts") or 0)
        details = []
        if report.get("failing_since"):
            details.append(f"failing since {report['failing_since']}")
        if restarts:
            details.append(f"{restarts} restart(s)")
        if report.get("last_error"):
            details.append(f"last error: {report['last_error']}")
        views.append(DutyView(name=name, state=state, restarts=restarts, detail="; ".join(details)))
    order = {"failing": 0, "stopped": 1, "running": 2, "standby": 3}
    return sorted(views, key=lambda view: (order.get(view.state, 1), view.name))


# --- The chart ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    name: str
    colour: str
    points: str  # an SVG polyline's points
    total: int


# Distinguishable in light and dark themes alike.
SERIES_COLOURS = ("#4c9be8", "#e8a33c", "#9b6ee8", "#2fb5a3", "#e8607a", "#8a8f98")


def series_lines(counts: Mapping[str, Sequence[int]], *, width: int, height: int) -> list[Series]:
    """One polyline per queue over the same buckets, scaled to the highest count of any queue."""
    peak = max((max(values, default=0) for values in counts.values()), default=0) or 1
    lines = []
    for index, (name, values) in enumerate(counts.items()):
        step = width / max(len(values), 1)
        points = " ".join(
            f"{round(i * step + step / 2, 1)},{round(height - value * height / peak, 1)}"
            for i, value in enumerate(values)
        )
        lines.append(
            Series(name=name, colour=SERIES_COLOURS[index % len(SERIES_COLOURS)], points=points, total=sum(values))
        )
    return lines


def tick_positions(labels: Iterable[str], *, every: int) -> list[tuple[float, str]]:
    """Labels every ``every`` buckets, placed in percent of the chart's width (the chart stretches)."""
    listed = list(labels)
    return [(round(index * 100 / len(listed), 2), label) for index, label in enumerate(listed) if index % every == 0]
