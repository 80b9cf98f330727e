"""The queue layer's own worker loop.

procrastinate declares the tasks, owns the jobs table (with its triggers: the events
timeline, the notifications) and defers jobs. This package runs them:

* ``worker``: one worker process: claim, run, finish, and its duties;
* ``supervisor``: restarts failed duties with backoff, gives up after the recovery timeout;
* ``leader``: the lease that picks the one process running the singleton duties;
* ``scheduler``: cron ticks, one job each, caught up after a gap;
* ``runner`` and ``completer``: running a job, and writing outcomes in batches;
* ``db`` and ``sql``: the worker's own connections and statements;
* ``process``: one worker in this process, or N children under a supervising parent;
* ``health``: what the health endpoints and metrics read about workers and duties.
"""
