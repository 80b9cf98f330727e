"""The outbox through a killed sender and a database crash, counted at a real SMTP server:
no email twice, none recorded sent that the server never took, none left waiting, and no
more of unknown delivery than were in flight."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.faults.conftest import Cluster, Database, FaultWorkers, wait_registered
from tests.helpers import manage, subprocess_env, wait_for
from tests.notifications.email.conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.fault]

CONCURRENCY = 20
_MESSAGE_ID = re.compile(rb"^Message-ID: (<outbound-\d+\.\d+@[^>]+>)", re.MULTILINE)


class CountingServer:
    """Takes every message after a short pause (sends stay in flight a while), noting its Message-ID."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.01)
        found = _MESSAGE_ID.search(envelope.original_content)
        with self._lock:
            self.ids.append(found.group(1).decode() if found else "?")
        return "250 OK"

    def count(self) -> int:
        with self._lock:
            return len(self.ids)


@pytest.fixture
def smtp() -> Iterator[tuple[CountingServer, dict[str, str]]]:
    handler, port = CountingServer(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_STARTTLS": "false"}
    controller.stop()


QUEUE = """
from django.db import transaction
from compliance.models import Tenant
from notifications.models import OutboundEmail
from notifications.outbox import email_places_take
for n in range(3):
    tenant = Tenant.objects.create(name=f"Fault {n}", slug=f"fault-{n}")
    share = COUNT // 3 + (1 if n < COUNT % 3 else 0)
    with transaction.atomic():
        first = email_places_take(tenant_id=tenant.pk, priority=2, count=share)
        OutboundEmail.objects.bulk_create(
            OutboundEmail(tenant=tenant, to_email=f"person{i}@example.com", to_name="Person", subject=f"Note {i}",
                          template="custom", context={"body": "Hello"}, idempotency_key=f"fault:{n}:{i}",
                          fair_key=first + i)
            for i in range(share)
        )
"""


def queue_emails(database: Database, count: int) -> None:
    """``count`` emails of three firms, placed in line as the product places them."""
    result = manage("shell", "-c", QUEUE.replace("COUNT", str(count)), env=subprocess_env(DATABASE_URL=database.url))
    assert result.returncode == 0, result.stderr


def settled(database: Database) -> bool:
    return database.safely(
        lambda: (
            database.value(
                "SELECT count(*) FROM notifications_outboundemail WHERE status IN ('queued', 'retrying', 'sending')"
            )
            == 0
        )
    )


def test_a_killed_sender_and_a_database_crash_send_no_email_twice(
    cluster: Cluster, database: Database, fault_workers: FaultWorkers, smtp
) -> None:
    server, smtp_env = smtp
    env = {**smtp_env, "KGC_CONCURRENCY": f"email={CONCURRENCY}", "KGC_RATE_LIMITS": "email=off"}
    doomed = fault_workers.start("--queues", "email", **env)
    steady = fault_workers.start("--queues", "email", **env)
    for process in (doomed, steady):
        wait_registered(database, process)
    total = 1500
    queue_emails(database, total)

    wait_for(lambda: server.count() >= 300, timeout=120, message="300 emails at the server")
    os.kill(doomed.pid, signal.SIGKILL)  # mid-batch: its sends in flight die with it
    wait_for(lambda: server.count() >= 700, timeout=120, message="700 emails at the server")
    cluster.crash()  # claims and outcomes in flight meet a server that forgets what it had not written
    replacement = fault_workers.start("--queues", "email", **env)
    wait_registered(database, replacement, timeout=120)
    wait_for(lambda: settled(database), timeout=240, message="every email settled")

    rows = database.rows("SELECT status, delivery_unknown, message_id FROM notifications_outboundemail")
    received = collections.Counter(server.ids)
    twice = {message_id: n for message_id, n in received.items() if n > 1}
    assert twice == {}, f"sent more than once: {twice}"
    statuses = collections.Counter((status, unknown) for status, unknown, _ in rows)
    assert sum(statuses.values()) == total
    recorded_sent = {message_id for status, _, message_id in rows if status == "sent"}
    assert recorded_sent <= set(received), f"recorded sent, never received: {recorded_sent - set(received)}"
    assert set(statuses) <= {("sent", False), ("failed", True)}, statuses
    unknown = statuses[("failed", True)]
    # only what was in flight: the killed process's sends, and the sends whose outcome the
    # crash caught between the server's reply and its record (both processes' at most)
    assert unknown <= 3 * CONCURRENCY, statuses
    print(f"sent {statuses[('sent', False)]}, unknown {unknown}, received {len(received)} distinct")
