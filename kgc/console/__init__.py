"""The operator console: the queue dashboard and the jobs screens in the Django admin, and the
health and metrics endpoints.

An app of its own (``kgc.console``, label ``kgc_console``, no models), so that Django finds
its admin screens, templates and static files by convention. Its screens are the admin pages
of the queue layer's models and of procrastinate's jobs, so their URLs are ``kgc``'s and
``procrastinate``'s (``/admin/kgc/queuepause/``, ``/admin/procrastinate/procrastinatejob/``).

The screens (``admin`` is what Django imports; it loads them):

* ``dashboard``: the queue dashboard: per queue its counts, capacity, rate-limit use,
  throughput and failure rate; the chart of jobs finished; the workers and the lease; the
  schedules; pause, resume, retry and cleanup, each confirmed on a page of its own;
* ``jobs_list``: the jobs list, fast on a table of millions (estimated counts past 10,000);
* ``job_page``: a job's page: attempts and tracebacks, return value, events, retry and cancel;
* what they share: ``filters`` (the jobs list's filters, and the tenant filter every list
  uses), ``actions`` (the admin log, the retry and cancel actions) and ``job_rows`` (a job's
  annotated row, state and times, its tenant by name and the worker that ran it);
* ``admin_site``: the admin site (its names, its index with the console's links);
* ``triggers``: the manual triggers the apps' admins offer on tenants ("Refresh compliance
  now"), through ``kgc/job_helpers.py`` like any caller.

What they read and show:

* ``metrics``: the counts, the oldest waiting job and the chart's jobs finished, for the
  screens and ``queue_stats``;
* ``collector``: ``/metrics``, one prometheus_client collector reading the same tables at
  scrape time (Prometheus text, or OpenMetrics when asked);
* ``selectors``: what the dashboard reads beyond the counts: capacity, rate-limit use,
  throughput, workers and their running jobs, the chart's series;
* ``display``: the rules for showing things (job states, attempts, tracebacks, durations,
  times with their day, priorities, a backlog held back by its rate limit or late, the chart's
  geometry): pure functions, no database and no clock;
* ``views``: ``/healthz``, ``/readyz`` and ``/metrics``; ``pages``: ``/favicon.ico``;
* ``templates/admin/kgc/`` and ``static/kgc/``: the screens' templates, stylesheet and icons
  (the admin's own look, ``admin/base_site.html``, is the project's, in ``templates/``).

What it guarantees: every query is bounded by an index, a time window or a cap, so the
screens and a scrape stay fast on a jobs table of millions; every action asks for
confirmation, reports what it did and leaves an entry in the admin log; the health
endpoints tell the truth, and ``/metrics`` only to those allowed to hear it.

What it may import: the queue layer (``kgc.queue``) and the project (``kgc.queues``,
``kgc.job_helpers``, ``kgc.commands``, ``kgc.texts``), and the apps' models for the triggers
and for naming a job's tenant (``job_rows``, ``filters``). Never the
API (``kgc.api``); the queue layer never imports the console (``tests/kgc/test_layers.py``).
"""
