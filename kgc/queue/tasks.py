"""The queue layer's own periodic task: retention."""

from __future__ import annotations

from procrastinate.contrib.django import app

from kgc.queue import jobs
from kgc.queues import MAINTENANCE, SCHEDULES


@app.periodic(cron=SCHEDULES["kgc.retention"], periodic_id="hourly")
@jobs.task(queue=MAINTENANCE, name="kgc.retention")
def retention(timestamp: int | None = None) -> dict[str, dict[str, int]]:
    """Delete finished jobs older than each queue's retention (kgc/queues.py)."""
    return {name: vars(result) for name, result in jobs.retention_apply().items()}
