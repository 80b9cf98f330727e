"""The email dispatcher: the consumer of the email queue's outbox in every worker process.

A worker process serving the ``email`` queue runs it beside its job loop
(``kgc/queue/rows.py``), with three supervised duties:

* ``dispatch``: claims queued emails in line order (``notifications/outbox.py``), as many
  as the process has send slots free (the email queue's concurrency), in one statement,
  and starts a send for each at once: nothing waits in a local buffer, so a pause or a
  newly queued urgent email is seen by the next claim. It claims while slots are free and
  the line is not empty; otherwise it waits for a notification (a new email, a resume) or
  the poll interval. A claim whose answer was lost is given back (``_reconcile``).
* ``record``: writes outcomes in batches, every 10 ms or 500 outcomes, each only from the
  attempt that claimed the row, with its notification's mirror.
* ``outbox-sweep``: fails as "delivery unknown" the rows left in ``sending`` by workers
  that are gone, and folds the outbox's counts.

Sends wait on the network, not on threads or database connections: SMTP is spoken on the
event loop (``notifications/transports.py``) with up to ``concurrency`` sessions open, and
the dispatcher's two connections serve every send. On shutdown it stops claiming, gives
the sends in flight the shutdown timeout, then settles each one still running: never
handed over, it goes back in line unspent; handed over, its delivery is unknown.

``emails_send`` runs the same claim, send and record once, in the calling thread, on
Django's connection: the manual trigger and the tests' way in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from django.db import connection

from kgc.queue import tracing
from kgc.queue.config import MAINTENANCE_PERIOD, STATEMENT_TIMEOUT
from kgc.queue.db import Link, severed_backends_end
from kgc.queue.retry import backoff_seconds
from kgc.queue.rows import ConsumerContext
from kgc.queue.supervisor import Duty, DutyHandle
from kgc.queues import EMAIL, queue_get
from notifications import delivery, rendering
from notifications.outbox import (
    CLAIM_SQL,
    FOLD_PARAMS,
    FOLD_SQL,
    OUTBOX_CHANNEL,
    RECORD_SQL,
    SWEEP_SQL,
    UNKNOWN_AFTER_LOSS,
    ClaimedEmail,
    EmailOutcome,
    claim_params,
    claimed_from_row,
    outcome_decide,
    record_params,
)
from notifications.tracing import email_send_ended, email_send_span
from notifications.transports import BackendTransport, SendResult, Transport, transport_for

logger = logging.getLogger("notifications.email")

NOT_REGISTERED = "KGC01"
CLAIM_BATCH_WINDOW = 0.02  # how long a claim may wait for more free slots (see _batch_pending)
FLUSH_DELAY = 0.01  # how long an outcome may wait for others to share its statement
BATCH_MAX = 500
RECONCILE_PERIOD = 30.0
FOLD_PERIOD = 60.0

# Rows in "sending" under this worker that it does not hold: a claim whose answer was lost
# (the statement committed, its connection severed). They were never seen here, so never
# sent: back in line, their attempt not counted.
RECONCILE_SQL = """
UPDATE notifications_outboundemail SET status = 'queued', attempts = attempts - 1
 WHERE status = 'sending' AND claimed_by = %(worker_id)s AND NOT (id = ANY(%(held)s::bigint[]))
RETURNING id
"""


@dataclass
class _Send:
    """One attempt in flight: the row as claimed, the worker it was claimed under, and
    whether its message has been handed to the server (from then on, never given back)."""

    email: ClaimedEmail
    worker_id: int
    handed_over: bool = False
    started: float = field(default_factory=time.monotonic)

    def hand_over(self) -> None:
        """Called by the transport as the message goes out: from then on it is never given back."""
        self.handed_over = True


def _now() -> datetime:
    return datetime.now(tz=UTC)


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=backoff_seconds(queue_get(EMAIL).retry, attempts - 1))


async def attempt_email(email: ClaimedEmail, transport: Transport, send: _Send | None = None) -> EmailOutcome:
    """Build one claimed email's message, hand it over, and decide the row's next state; with
    tracing on, in a span of its own (``notifications/tracing.py``)."""
    if not tracing.enabled():
        return await _attempt_email(email, transport, send)
    with email_send_span(email) as span:
        outcome = await _attempt_email(email, transport, send)
        email_send_ended(span, outcome)
        return outcome


async def _attempt_email(email: ClaimedEmail, transport: Transport, send: _Send | None) -> EmailOutcome:
    if email.suppressed_as:
        return outcome_decide(email, kind="suppressed", now=_now(), backoff=timedelta(0),
                              reason=delivery.suppressed_reason(email.suppressed_as))  # fmt: skip
    try:
        message = delivery.email_message_build(email)
    except (delivery.HeaderInjection, delivery.MessageBuildError, rendering.EmailDataError) as exc:
        return outcome_decide(email, kind="unbuildable", reason=str(exc)[:500], now=_now(), backoff=timedelta(0))
    result: SendResult = await transport.send(message, handover=send.hand_over if send is not None else None)
    return outcome_decide(
        email,
        kind=result.kind,
        reason=result.reason,
        now=_now(),
        backoff=_backoff(email.attempts),
        message_id=result.message_id or delivery.own_message_id(message),
        address_gone=result.address_gone,
    )


def outcome_log(email_fields: dict[str, Any], outcome: EmailOutcome, *, delivers: bool) -> None:
    fields = {**email_fields, "attempt": outcome.attempts}
    if outcome.status == "sent":
        # The console backend (development) has logged the email itself: one line per email.
        if delivers and logger.isEnabledFor(logging.INFO):
            logger.info("email sent", extra={**fields, "message_id": outcome.message_id, "event": "email_sent"})
    elif outcome.status == "retrying":
        logger.warning(f"email not sent, will retry: {outcome.last_error}", extra={**fields, "event": "email_retry"})
    elif outcome.status == "suppressed":
        logger.info("email not sent: address suppressed", extra={**fields, "event": "email_suppressed"})
    elif outcome.status == "queued":
        logger.info("email given back to the queue unsent (shutdown)", extra={**fields, "event": "email_requeued"})
    else:
        event = "email_unknown" if outcome.delivery_unknown else "email_failed"
        logger.error(f"email failed: {outcome.last_error}", extra={**fields, "event": event})


def _log_fields(email: ClaimedEmail) -> dict[str, Any]:
    return {
        "outbound_email_id": email.pk,
        "tenant_id": email.tenant_id,
        "template": email.template,
        "to_domain": email.to_email.rpartition("@")[2],
    }


def _delivers(transport: Transport) -> bool:
    return not (isinstance(transport, BackendTransport) and transport.name == "ConsoleSummaryBackend")


class EmailDispatcher:
    """The email queue's consumer in one worker process (see the module's docstring)."""

    channels: tuple[str, ...] = (OUTBOX_CHANNEL,)

    def __init__(self, context: ConsumerContext) -> None:
        self.context = context
        self.capacity = max(context.concurrency, 1)
        self.claim_link = Link("outbox", context.connection_params)
        self.record_link = Link("outbox-record", context.connection_params, shared=True)  # and the sweep
        self.transport: Transport | None = None
        self._sends: dict[asyncio.Task[None], _Send] = {}
        self._held: set[int] = set()  # rows claimed here whose outcome is not yet written
        self._outcomes: deque[tuple[EmailOutcome, int, ClaimedEmail]] = deque()
        self._outcome_ready = asyncio.Event()
        self._writing = asyncio.Lock()
        self._claiming = asyncio.Lock()  # a claim under way: shutdown waits for its sends to start
        self._wake = asyncio.Event()
        self._stopping = False
        self._drained_until = 0.0
        self._notified_at = 0.0
        self._slot_freed_at: float | None = None
        self._reconciled_at = 0.0
        self._folded_at = 0.0
        self.refused = 0

    # --- QueueConsumer ------------------------------------------------------------------------

    def duties(self) -> list[Duty]:
        return [
            Duty("dispatch", self._dispatch_duty, stall_after=STATEMENT_TIMEOUT * 2),
            Duty("record", self._record_duty, stall_after=STATEMENT_TIMEOUT * 2),
            Duty("outbox-sweep", self._sweep_duty, stall_after=STATEMENT_TIMEOUT * 4),
        ]

    def wake(self) -> None:
        self._drained_until = 0.0
        self._notified_at = time.monotonic()
        self._wake.set()

    def in_hand(self) -> int:
        return len(self._sends)

    def _transport(self) -> Transport:
        if self.transport is None:
            self.transport = transport_for("default", size=self.capacity)
        return self.transport

    # --- Claiming -----------------------------------------------------------------------------

    async def _dispatch_duty(self, handle: DutyHandle) -> None:
        await self._reconcile()
        handle.healthy()
        while not self._stopping:
            self._wake.clear()
            now = time.monotonic()
            if now - self._reconciled_at > RECONCILE_PERIOD:
                await self._reconcile()
            timeout = self.context.poll_interval
            free = self.capacity - len(self._sends)
            worker_id = self.context.worker_id()
            if free > 0 and worker_id is not None and not self.context.fenced() and now >= self._drained_until:
                held_back = self._batch_pending(free, now)
                if held_back is None:
                    claimed = await self._claim(worker_id, free)
                    if claimed < free and self._notified_at < now:
                        self._drained_until = now + self.context.poll_interval
                else:
                    timeout = held_back
            handle.healthy()
            if self._drained_until > now:
                timeout = min(timeout, self._drained_until - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(timeout, 0.001)):
                    await self._wake.wait()

    def _batch_pending(self, free: int, now: float) -> float | None:
        """Seconds to wait for more free slots before claiming (None: claim now): a claim is
        one statement whatever its size, so it waits, at most CLAIM_BATCH_WINDOW after the
        first slot freed, until half the slots are free; an idle dispatcher claims at once."""
        if self._slot_freed_at is None or free >= max(1, self.capacity // 2):
            return None
        left = self._slot_freed_at + CLAIM_BATCH_WINDOW - now
        return left if left > 0 else None

    async def _claim(self, worker_id: int, want: int) -> int:
        async with self._claiming:
            return 0 if self._stopping else await self._claim_now(worker_id, want)

    async def _claim_now(self, worker_id: int, want: int) -> int:
        self._slot_freed_at = None
        try:
            rows = await self.claim_link.execute(
                CLAIM_SQL, claim_params(worker_id=worker_id, want=want), timeout=STATEMENT_TIMEOUT
            )
        except psycopg.Error as exc:
            if exc.sqlstate == NOT_REGISTERED:
                return 0  # declared dead while cut off: the heartbeat registers again
            raise
        transport = self._transport()
        for row in rows:
            email = claimed_from_row(row)
            self._held.add(email.pk)
            send = _Send(email=email, worker_id=worker_id)
            task = asyncio.create_task(self._send(send, transport), name=f"email {email.pk}")
            self._sends[task] = send
        return len(rows)

    async def _send(self, send: _Send, transport: Transport) -> None:
        try:
            try:
                outcome = await attempt_email(send.email, transport, send)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a defect of ours: whether the message left cannot be told
                logger.exception("email send failed unexpectedly", extra=_log_fields(send.email))
                outcome = self._settled(send, reason=f"the send failed unexpectedly: {type(exc).__name__}: {exc}")
            self._outcome_add(outcome, send)
        finally:
            self._sends.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            if self._slot_freed_at is None:
                self._slot_freed_at = time.monotonic()
            self._wake.set()

    def _settled(self, send: _Send, *, reason: str) -> EmailOutcome:
        """A send that did not finish: back in line unspent if its message was never handed
        over, else failed with its delivery unknown."""
        email, now = send.email, _now()
        if not send.handed_over:
            return EmailOutcome(email_id=email.pk, attempts=email.attempts, status="queued", at=now, spent=False)
        return outcome_decide(
            email, kind="unknown", now=now, backoff=timedelta(0), reason=f"delivery unknown: {reason}"
        )

    async def _reconcile(self) -> None:
        self._reconciled_at = time.monotonic()
        worker_id = self.context.worker_id()
        if worker_id is None:
            return
        if self.claim_link.severed_backends:
            await severed_backends_end(self.claim_link, timeout=STATEMENT_TIMEOUT)
        rows = await self.claim_link.execute(
            RECONCILE_SQL, {"worker_id": worker_id, "held": sorted(self._held)}, timeout=STATEMENT_TIMEOUT
        )
        if rows:
            logger.warning(
                f"{len(rows)} email(s) of a claim whose answer was lost put back in line, unsent",
                extra={"event": "emails_reconciled", "email_ids": ",".join(str(row["id"]) for row in rows)},
            )

    # --- Recording ----------------------------------------------------------------------------

    def _outcome_add(self, outcome: EmailOutcome, send: _Send) -> None:
        self._outcomes.append((outcome, send.worker_id, send.email))
        self._outcome_ready.set()

    async def _record_duty(self, handle: DutyHandle) -> None:
        handle.healthy()
        while True:
            if not self._outcomes:
                self._outcome_ready.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._outcome_ready.wait()
                handle.healthy()
                continue
            if len(self._outcomes) < BATCH_MAX:
                await asyncio.sleep(FLUSH_DELAY)
            async with self._writing:
                await self._flush()
            handle.healthy()

    async def _flush(self) -> None:
        batch = [self._outcomes.popleft() for _ in range(min(len(self._outcomes), BATCH_MAX))]
        if not batch:
            return
        try:
            accepted: set[int] = set()
            for worker_id in {worker for _, worker, _ in batch}:
                outcomes = [outcome for outcome, worker, _ in batch if worker == worker_id]
                rows = await self.record_link.execute(
                    RECORD_SQL, record_params(outcomes, worker_id=worker_id), timeout=STATEMENT_TIMEOUT
                )
                accepted |= {row["id"] for row in rows}
        except BaseException:
            self._outcomes.extendleft(reversed(batch))
            raise
        delivers = _delivers(self.transport) if self.transport is not None else True
        for outcome, _, email in batch:
            self._held.discard(email.pk)
            if outcome.email_id in accepted:
                outcome_log(_log_fields(email), outcome, delivers=delivers)
                continue
            self.refused += 1
            logger.warning(
                f"outcome of an earlier attempt refused ({outcome.status}): the email was settled meanwhile "
                "(its worker was declared dead while cut off, and the email's delivery marked unknown)",
                extra={**_log_fields(email), "event": "email_outcome_refused", "outcome": outcome.status},
            )

    async def flush_all(self, *, timeout: float) -> None:
        async with asyncio.timeout(timeout), self._writing:
            while self._outcomes:
                await self._flush()

    # --- Sweeping -----------------------------------------------------------------------------

    async def _sweep_duty(self, handle: DutyHandle) -> None:
        while True:
            rows = await self.record_link.execute(
                SWEEP_SQL, {"dead_after": self.context.dead_after, "reason": UNKNOWN_AFTER_LOSS},
                timeout=STATEMENT_TIMEOUT,
            )  # fmt: skip
            for row in rows:
                logger.error(
                    "email left in sending by a lost worker: delivery unknown",
                    extra={"event": "email_unknown", "outbound_email_id": row["id"], "tenant_id": row["tenant_id"]},
                )
            if time.monotonic() - self._folded_at > FOLD_PERIOD:
                await self.record_link.execute(FOLD_SQL, FOLD_PARAMS, timeout=STATEMENT_TIMEOUT * 2)
                self._folded_at = time.monotonic()
            handle.healthy()
            await asyncio.sleep(MAINTENANCE_PERIOD)

    # --- Shutdown -----------------------------------------------------------------------------

    async def shutdown(self, *, timeout: float) -> None:
        self._stopping = True
        self._wake.set()
        async with self._claiming:  # a claim under way starts its sends first
            pass
        if self._sends:
            logger.info(f"waiting for {len(self._sends)} email(s) in flight", extra={"event": "dispatcher_draining"})
            await asyncio.wait(list(self._sends), timeout=timeout)
        for task, send in list(self._sends.items()):
            task.cancel()
            self._outcome_add(self._settled(send, reason=f"still sending {timeout:g} s after shutdown began"), send)
        self._sends.clear()
        try:
            await self.flush_all(timeout=STATEMENT_TIMEOUT)
        except Exception as exc:  # the sweep settles what could not be written, once this worker is gone
            logger.error(
                f"outcomes of {len(self._outcomes)} email(s) not written at shutdown ({type(exc).__name__}: {exc}); "
                "their delivery will be marked unknown",
                extra={"event": "email_outcomes_lost"},
            )
        if self.transport is not None:
            with contextlib.suppress(Exception):
                await self.transport.close()
        await self.claim_link.drop()
        await self.record_link.drop()


# --- In the calling thread ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SendRun:
    outcomes: list[EmailOutcome]

    def count(self, status: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)


def _rows(cursor: Any) -> list[dict[str, Any]]:
    names = [column.name for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def emails_send(*, want: int = 100, mailer: str = "default") -> SendRun:
    """Claim up to ``want`` queued emails in line order, send them and record the outcomes,
    here and now, on Django's connection (inside the caller's transaction, if any).

    The same statements and rules as the dispatcher's; this process registers as a worker
    for the claim's fencing while it runs.
    """
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id")
        worker_id = cursor.fetchone()[0]
    try:
        with connection.cursor() as cursor:
            cursor.execute(CLAIM_SQL, claim_params(worker_id=worker_id, want=want))
            emails = [claimed_from_row(row) for row in _rows(cursor)]
        if not emails:
            return SendRun(outcomes=[])
        transport = transport_for(mailer, size=min(len(emails), 50))
        outcomes = asyncio.run(_attempt_all(emails, transport))
        with connection.cursor() as cursor:
            cursor.execute(RECORD_SQL, record_params(outcomes, worker_id=worker_id))
        for email, outcome in zip(emails, outcomes, strict=True):
            outcome_log(_log_fields(email), outcome, delivers=_delivers(transport))
        return SendRun(outcomes=outcomes)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM procrastinate_workers WHERE id = %s", [worker_id])


async def _attempt_all(emails: list[ClaimedEmail], transport: Transport) -> list[EmailOutcome]:
    try:
        return list(await asyncio.gather(*(attempt_email(email, transport) for email in emails)))
    finally:
        await transport.close()
