"""The development mail backend: one log line per email at most, nothing sent."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

logger = logging.getLogger("kgc.mail")

# In each window of this many seconds, this many emails get a line of their own; the others
# of that window are counted and summed up in one line when it ends.
WINDOW_SECONDS = 30.0
LINES_PER_WINDOW = 3


class BurstLog:
    """Who would get which email, logged so that one email is one line but a burst (a morning's
    reminders, a digest run) is a few lines and a count, not a screenful per second.

    Thread-safe (a worker sends from a pool of threads). The summary of a window is written by
    a timer when it ends (``schedule``; the tests pass their own), or by the next email after it.
    """

    def __init__(
        self,
        *,
        window: float = WINDOW_SECONDS,
        lines: int = LINES_PER_WINDOW,
        clock: Callable[[], float] = time.monotonic,
        schedule: Callable[[float, Callable[[], None]], None] | None = None,
    ) -> None:
        self.window = window
        self.lines = lines
        self.clock = clock
        self.schedule = schedule or _timer
        self._lock = threading.Lock()
        self._started: float | None = None
        self._shown = 0
        self._held: Counter[str] = Counter()

    def email(self, *, subject: str, to: str, template: str) -> None:
        if logger.isEnabledFor(logging.DEBUG):  # LOG_LEVEL=DEBUG: every email, one line each
            self._line(subject=subject, to=to, template=template)
            return
        now = self.clock()
        with self._lock:
            if self._started is not None and now - self._started >= self.window:
                self._flush_locked()
            if self._started is None:
                self._started = now
                self._shown = 0
                self.schedule(self.window, self.flush)
            show = self._shown < self.lines
            if show:
                self._shown += 1
            else:
                self._held[template] += 1
        if show:
            self._line(subject=subject, to=to, template=template)

    def flush(self) -> None:
        """Sum up the emails of the window that were not shown (none: nothing is written)."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        held, self._held = self._held, Counter()
        self._started = None
        if not held:
            return
        count = sum(held.values())
        templates = ", ".join(f"{template} {n}" for template, n in held.most_common())
        logger.info(
            f"{count} more email{'s' if count != 1 else ''} not sent (console backend) in the last "
            f"{self.window:g} s: {templates}; LOG_LEVEL=DEBUG logs each one",
            extra={"event": "email_console_summary", "emails": count},
        )

    @staticmethod
    def _line(*, subject: str, to: str, template: str) -> None:
        logger.info(
            "email not sent (console backend): %s",
            subject,
            extra={"to": to, "template": template, "event": "email_console"},
        )


def _timer(delay: float, action: Callable[[], None]) -> None:
    timer = threading.Timer(delay, action)
    timer.daemon = True  # a summary never keeps a process from exiting
    timer.start()


_burst_log = BurstLog()


class ConsoleSummaryBackend(BaseEmailBackend):
    """Logs who would get which email (recipient, subject, template) and sends nothing.

    One line per email, and in a burst the first few of each half-minute, then one line
    counting the rest (``BurstLog``): the demo's first morning queues hundreds of emails,
    and a line or two each buried everything else, ``make run``'s banner first.
    ``LOG_LEVEL=DEBUG`` logs every email; ``EMAIL_CONSOLE_FULL=true`` prints whole messages
    instead (Django's console backend).
    """

    log: BurstLog = _burst_log

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        for message in email_messages:
            tags = getattr(message, "tags", None) or ["-"]  # the template, set by notifications.delivery
            self.log.email(subject=str(message.subject), to=", ".join(message.recipients()), template=tags[0])
        return len(email_messages)
