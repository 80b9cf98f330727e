"""Signals of the queue layer."""

from django.dispatch import Signal

# Sent with ``jobs`` (a list of kgc.jobs.RetriedJob) when failed jobs are put back in their
# queue, inside the retry's transaction: an app whose task leaves state behind on failure
# resets it here, so that the retried job does the work again.
jobs_retried = Signal()
