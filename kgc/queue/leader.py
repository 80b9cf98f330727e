"""Leader election: a lease in PostgreSQL, held by one live worker process of the cluster.

The holder runs the singleton duties (the scheduler, the rescue of dead workers' jobs,
the counter compaction); every process serves its queues whether it leads or not.

* A process tries to take the lease every ``ttl / 5`` seconds: it gets it when it is
  free or expired (``sql.ELECT``; the database's clock decides expiry), and renews it
  at the same pace while it holds it.
* The holder counts its lease from the moment it *sent* the renewal, on its own
  monotonic clock, and stops acting as leader when that runs out, even if it cannot
  reach the database to learn anything: it never overlaps a successor by its own
  reckoning. (The scheduler's ticks are unique in the database besides.)
* A leader that stops resigns (and notifies), so another takes over at once; one that
  dies or loses the database is replaced once its lease expires: within ``ttl``
  plus one election round (12 s with the default 10 s lease).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from kgc.queue import sql
from kgc.queue.db import Link
from kgc.queue.supervisor import DutyHandle

logger = logging.getLogger("kgc.worker")

LEASE = "cluster"
# Stop acting as leader this long before the lease runs out by the holder's own reckoning.
SAFETY_MARGIN = 0.5


class LeaderElector:
    def __init__(
        self,
        link: Link,
        *,
        ttl: float,
        worker_id: Callable[[], int | None],
        fenced: Callable[[], bool],
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.link = link
        self.ttl = ttl
        self.worker_id = worker_id
        self.fenced = fenced
        self.timeout = timeout
        self.clock = clock
        self.lease_until = 0.0
        self.holder: int | None = None  # the worker id we hold the lease under
        self.wake = asyncio.Event()

    def is_leader(self) -> bool:
        return self.holder is not None and self.holder == self.worker_id() and self.clock() < self.lease_until

    async def duty(self, handle: DutyHandle) -> None:
        while True:
            worker_id = self.worker_id()
            if worker_id is None or self.fenced():
                self._lost("this worker cannot reach the database" if worker_id else "not registered")
            else:
                await self.elect_once(worker_id)
            handle.healthy()
            self.wake.clear()
            try:
                async with asyncio.timeout(self.ttl / 5):
                    await self.wake.wait()
            except TimeoutError:
                pass

    async def elect_once(self, worker_id: int) -> bool:
        sent = self.clock()
        rows = await self.link.execute(
            sql.ELECT, {"name": LEASE, "worker_id": worker_id, "ttl": self.ttl}, timeout=self.timeout
        )
        if not rows:
            self._lost("another worker holds the lease")
            return False
        if not self.is_leader():
            logger.info(
                "this worker is now the leader: it runs the scheduler, the rescue and the counter compaction",
                extra={"event": "leader_elected", "worker_id": worker_id},
            )
        self.holder = worker_id
        self.lease_until = sent + self.ttl - SAFETY_MARGIN
        return True

    def _lost(self, why: str) -> None:
        if self.holder is not None:
            logger.warning(f"this worker is no longer the leader: {why}", extra={"event": "leader_lost"})
        self.holder = None
        self.lease_until = 0.0

    async def resign(self) -> None:
        """Give the lease up (shutdown), so another worker takes it at once."""
        holder, self.holder, self.lease_until = self.holder, None, 0.0
        if holder is not None:
            await self.link.execute(sql.RESIGN, {"name": LEASE, "worker_id": holder}, timeout=self.timeout)
            logger.info("leader resigned", extra={"event": "leader_resigned", "worker_id": holder})
