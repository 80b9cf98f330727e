"""Running worker processes: one in this process, or several under one supervising parent.

``runworkers --processes N`` (default: one per CPU) starts N children, each a complete
worker (its own registration, heartbeat and duties, a candidate for the leader's
lease), so that every core runs jobs; limits, pauses and the schedule are shared
through PostgreSQL as with separate machines. The parent:

* forwards SIGTERM, SIGINT and SIGHUP to the children and waits for them to drain;
* restarts a child that dies (killed, crashed) after a capped backoff;
* exits non-zero when a child gave up (``EXIT_UNRECOVERABLE``) or when children keep
  dying for longer than the recovery timeout, so that the process manager sees it.

A child dies with its parent (Linux's parent-death signal), so that killing the parent,
even with SIGKILL, leaves no worker running unsupervised.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from procrastinate import App

from kgc.queue import tracing
from kgc.queue.config import WorkerConfig
from kgc.queue.supervisor import backoff_delay
from kgc.queue.worker import EXIT_UNRECOVERABLE, Worker

logger = logging.getLogger("kgc.worker")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PR_SET_PDEATHSIG = 1
CHILD_BACKOFF_MAX = 30.0
# How long past their shutdown timeout children get (to requeue, write outcomes, unregister).
SHUTDOWN_GRACE = 30.0


def worker_run(app: App, config: WorkerConfig) -> int:
    """Run one worker in this process until a stop signal; return its exit code."""
    return asyncio.run(worker_serve(app, config))


async def worker_serve(app: App, config: WorkerConfig, *, handle_signals: bool = True) -> int:
    """Run one worker on this event loop until a stop signal (when ``handle_signals``) or a
    give-up; return its exit code. Exits the process at once if jobs were put back."""
    worker = Worker(app, config)
    if handle_signals and threading.current_thread() is threading.main_thread():
        # Under --reload the worker runs in a thread of Django's reloader, which handles signals.
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, worker.stop)
    code = await worker.run()
    if worker.abandoned:
        # Put-back jobs may still be running in pool threads, which cannot be stopped and
        # which the interpreter would wait for at exit: exit now (they run again elsewhere).
        tracing.flush()
        logging.shutdown()
        os._exit(code)
    return code


def parent_death_signal(parent_pid: int, signum: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``signum`` to this process when its parent dies (no-op elsewhere).

    ``parent_pid`` is the parent that started us: if it is not our parent any more, it died
    before the call. (Comparing with 1 would not do: in a container the parent *is* pid 1.)
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signum)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signum)


@dataclass
class _Child:
    index: int
    process: subprocess.Popen[bytes] | None = None
    failing_since: float | None = None
    failures: int = 0
    restart_at: float = 0.0
    started_at: float = field(default_factory=time.monotonic)


class ProcessGroup:
    """N worker children of this process, kept running (see the module docstring)."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        processes: int,
        recovery_timeout: float,
        shutdown_timeout: float,
        spawn: Callable[[Sequence[str]], subprocess.Popen[bytes]] | None = None,
    ) -> None:
        self.command = list(command)
        self.children = [_Child(index) for index in range(processes)]
        self.recovery_timeout = recovery_timeout
        self.shutdown_timeout = shutdown_timeout
        self.spawn = spawn or (lambda cmd: subprocess.Popen(cmd))  # noqa: S603 - our own manage.py
        self.stopping: int | None = None
        self.stop_deadline = 0.0
        self.exit_code = 0

    def stop(self, signum: int) -> None:
        if self.stopping is None:
            logger.info(
                f"stopping {len(self.children)} worker process(es) ({signal.Signals(signum).name})",
                extra={"event": "workers_stopping"},
            )
            self.stop_deadline = time.monotonic() + self.shutdown_timeout + SHUTDOWN_GRACE
        self.stopping = signum
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    def run(self) -> int:
        for signum in STOP_SIGNALS:
            signal.signal(signum, lambda received, frame: self.stop(received))
        logger.info(
            f"starting {len(self.children)} worker processes", extra={"event": "workers_started", "pid": os.getpid()}
        )
        while True:
            now = time.monotonic()
            alive = 0
            for child in self.children:
                alive += self._tend(child, now)
            if self.stopping is not None and alive == 0:
                return self.exit_code
            if self.stopping is not None and now > self.stop_deadline:
                self._kill_stragglers()
            time.sleep(0.2)

    def _kill_stragglers(self) -> None:
        """Children still running well past their shutdown timeout are killed (their jobs are rescued)."""
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                logger.error(
                    f"worker process {child.index} did not stop in time: killed", extra={"event": "worker_killed"}
                )
                child.process.kill()

    def _tend(self, child: _Child, now: float) -> int:
        """Start, watch or restart one child; return 1 while it runs."""
        if child.process is None:
            if self.stopping is not None or now < child.restart_at:
                return 0
            child.process = self.spawn(self.command)
            child.started_at = now
            return 1
        code = child.process.poll()
        if code is None:
            if child.failing_since is not None and now - child.started_at > 60:
                child.failing_since, child.failures = None, 0  # it has been up for a while: recovered
            return 1
        child.process = None
        if self.stopping is not None:
            self.exit_code = max(self.exit_code, code if code > 0 else 0)
            return 0
        return self._died(child, code, now)

    def _died(self, child: _Child, code: int, now: float) -> int:
        how = f"exit code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
        if code == EXIT_UNRECOVERABLE:
            logger.critical(
                f"worker process {child.index} gave up ({how}): stopping all", extra={"event": "worker_gave_up"}
            )
            self.exit_code = EXIT_UNRECOVERABLE
            self.stop(signal.SIGTERM)
            return 0
        child.failures += 1
        child.failing_since = child.failing_since or now
        if now - child.failing_since > self.recovery_timeout:
            logger.critical(
                f"worker process {child.index} keeps dying ({how}) for {now - child.failing_since:.0f} s: stopping all",
                extra={"event": "worker_gave_up"},
            )
            self.exit_code = EXIT_UNRECOVERABLE
            self.stop(signal.SIGTERM)
            return 0
        delay = backoff_delay(child.failures, minimum=1.0, maximum=CHILD_BACKOFF_MAX)
        logger.error(
            f"worker process {child.index} died ({how}); restarting in {delay:g} s",
            extra={"event": "worker_process_died", "restarts": child.failures},
        )
        child.restart_at = now + delay
        return 0
