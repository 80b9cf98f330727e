"""The project: settings, URLs and the rooms every app shares.

``kgc/`` has four rooms, each opening with a docstring like this one that maps it:

* here, the project itself;
* ``queue/``: the queue layer: defers, runs and keeps jobs (services, procrastinate's
  wiring, the worker loop, retries, results, its tables);
* ``console/``: the operator console in the Django admin, and the health and metrics
  endpoints;
* ``api/``: the JSON API under ``/api/v1/``.

The project's own files:

* ``settings``: every setting, read once from the environment through ``config``'s typed
  reader (a bad value stops start-up with one line naming the variable);
* ``urls``, ``wsgi``, ``asgi``: the routes (the console's pages, the API, the admin) and the
  servers' entry points;
* ``apps``: the ``kgc`` app and its system checks (rate limits, concurrency, fault timings);
* ``models`` and ``tasks``: where Django and procrastinate look for the ``kgc`` app's models
  and tasks; both re-export the queue layer's (``migrations/`` creates its tables);
* ``queues``: the queues, declared once, which every room reads;
* ``job_helpers``: the enqueue contract (the seed's ``job-helpers.ts``), for the apps' callers;
* ``commands`` and ``management/commands/``: the queue's management commands (``runworkers``,
  ``queue_stats``, ``pause_queue``, ``retry_failed``, ``cleanup_queue``, ``health`` ...) and
  what they share;
* ``logs``: the log formatters (text, or JSON with ``LOG_FORMAT=json``);
* ``telemetry``: traces with OpenTelemetry, off unless the ``OTEL_*`` variables ask for them
  (the exporters, Django's and psycopg's instrumentations, the queue layer's spans);
* ``mail``: the development email backend (one log line per email);
* ``dev`` and ``embedded_db``: the development runner's set-up (``make run``) and the embedded
  PostgreSQL used when ``DATABASE_URL`` is unset.

Imports point one way: the console and the API read the queue layer; the queue layer imports
neither, nor the apps (``compliance``, ``notifications``). The project's files may import any
room, except ``queues``, which every room reads and which imports none.
``tests/kgc/test_layers.py`` holds the rooms to it.
"""
