"""The operator console: the queue dashboard and the jobs screens, in the Django admin.

The screens register themselves with the admin site as Django imports this module:
``dashboard`` (the queue dashboard), ``jobs_list`` (the jobs list, whose model admin also serves
``job_page``, a job's page), sharing ``filters``, ``actions`` and ``job_rows``.
"""

from kgc.console import dashboard, jobs_list

__all__ = ["dashboard", "jobs_list"]
