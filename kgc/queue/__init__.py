"""The queue layer: everything that defers, runs and keeps jobs.

procrastinate declares the tasks, owns the jobs table (with its triggers: the events
timeline, the notifications) and defers jobs. This package adds what BullMQ gave the seed
and procrastinate lacks, and runs the jobs with its own worker loop.

Services and wiring:

* ``jobs``: the services every caller uses: defer with priorities and de-duplication
  (``jobs.job_defer(...)``), pause and resume, counts, cleanup by age, retention, failure
  records and retries;
* ``app``: procrastinate's app, wired to this layer (``PROCRASTINATE_ON_APP_READY``):
  ``manage.py procrastinate worker`` runs this worker loop, and a synchronous defer commits
  with the caller's transaction;
* ``retry``: which failures are retried and when (backoff with jitter), and which fail at once;
* ``results``: a succeeded job's return value, as JSON the database can store;
* ``signals``: ``jobs_retried``, sent when failed jobs go back to their queue;
* ``tracing``: a span for each defer and each run (and each item of a row queue) when the
  project turns OpenTelemetry on, the trace context carried in the job's arguments;
* ``models``: the state kept next to procrastinate's tables (pause flags, rate-limit slots,
  job counts, failures, worker processes, the lease, scheduler ticks, results); the ``kgc``
  app's models, so their tables and migrations are ``kgc``'s;
* ``tasks``: the hourly retention task.

The worker loop:

* ``worker``: one worker process: claim, run, finish, and its duties;
* ``supervisor``: restarts failed duties with backoff, gives up after the recovery timeout;
* ``leader``: the lease that picks the one process running the singleton duties;
* ``scheduler``: cron ticks, one job each, caught up after a gap;
* ``runner`` and ``completer``: running a job, and writing outcomes in batches;
* ``db`` and ``sql``: the worker's own connections and statements;
* ``config``: a worker process's settings, read once from Django's settings;
* ``process``: one worker in this process, or N children under a supervising parent;
* ``health``: what the health endpoints and metrics read about workers and duties.

What it guarantees: jobs run at least once (a dead worker's jobs are rescued); an outcome
is accepted only from the attempt that claimed the job; a defer inside
``transaction.atomic()`` commits or rolls back with the caller's rows; pause, rate limits,
leadership and the schedule live in PostgreSQL, so every process on every machine sees the
same.

What it may import: Django, procrastinate, psycopg, OpenTelemetry's API and the standard
library, itself, and of the project the queues' declarations (``kgc.queues``). Never the
console (``kgc.console``), the API (``kgc.api``) or the apps (``compliance``,
``notifications``), directly or through another module: they read this layer, and an app
reacts to it through its signals and hooks (``jobs.retry_hold_register``,
``signals.jobs_retried``). ``tests/kgc/test_layers.py`` holds it to that.
"""
