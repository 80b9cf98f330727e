"""Running the project's own commands in subprocesses, against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO
from urllib.parse import quote

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """A DATABASE_URL for the database the tests run on (pytest-django's test database)."""
    params = connection.settings_dict
    host = params["HOST"] or ""
    auth = quote(params["USER"] or "")
    if params["PASSWORD"]:
        auth += ":" + quote(params["PASSWORD"])
    if host.startswith("/"):  # a Unix socket directory (the embedded server)
        return f"postgresql://{auth}@/{params['NAME']}?host={host}" + (
            f"&port={params['PORT']}" if params["PORT"] else ""
        )
    port = f":{params['PORT']}" if params["PORT"] else ""
    return f"postgresql://{auth}@{host}{port}/{params['NAME']}"


# Worker timings scaled down so that faults play out in seconds: a worker is declared dead
# after 3 s of silence instead of 20, and a dead leader's lease expires after 2 s.
FAST_FAULTS = {"KGC_HEARTBEAT_INTERVAL": "0.5", "KGC_WORKER_DEAD_AFTER": "3", "KGC_LEADER_TTL": "2"}


def subprocess_env(**overrides: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": test_database_url(),
        "PYTHONUNBUFFERED": "1",
        # One worker process per runworkers unless a test asks for more (--processes): the
        # process a test signals or kills is then the worker itself.
        "KGC_PROCESSES": "1",
    }
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def manage(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env if env is not None else subprocess_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def manage_popen(
    *args: str, env: dict[str, str] | None = None, output: IO[str] | int = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env if env is not None else subprocess_env(),
        cwd=ROOT,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(predicate, *, timeout: float = 60, interval: float = 0.1, message: str = "condition"):  # noqa: ANN001
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout`` seconds.

    The timeout only bounds a hung test; no test asserts how fast something happened.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def _newest_worker_id() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM procrastinate_workers")
        return cursor.fetchone()[0]


class WorkerProcesses:
    """Worker subprocesses for a test; every one is stopped (SIGKILL if need be) at the end."""

    def __init__(self, **env_overrides: str | None) -> None:
        self.env = subprocess_env(KGC_EXTRA_TASK_MODULES="tests.kgc.sample_tasks", **env_overrides)
        self.processes: list[subprocess.Popen[str]] = []
        self.logs: list[IO[str]] = []

    def start(self, *args: str, entry: str = "runworkers") -> subprocess.Popen[str]:
        """Start a worker process and return once it has registered (so signals find it running)."""
        if entry == "runworkers" and "--processes" not in args:
            args = (*args, "--processes", "1")  # the process is the worker: signals and kills reach it directly
        command = ["runworkers", *args] if entry == "runworkers" else ["procrastinate", "worker", *args]
        log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in stop_all
        newest = _newest_worker_id()
        process = manage_popen(*command, env=self.env, output=log)
        self.processes.append(process)
        self.logs.append(log)
        wait_for(lambda: _newest_worker_id() > newest or process.poll() is not None, timeout=60, message="worker start")
        return process

    def output(self, process: subprocess.Popen[str]) -> str:
        """What a process has logged so far."""
        log = self.logs[self.processes.index(process)]
        log.flush()
        log.seek(0)
        text = log.read()
        log.seek(0, os.SEEK_END)
        return text

    def stop_all(self) -> None:
        for process, log in zip(self.processes, self.logs, strict=True):
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
            log.seek(0)
            # Shown by pytest only when the test failed.
            print(f"--- worker {process.args[2:]} exited {process.returncode} ---\n{log.read()[-5000:]}")
            log.close()


def free_port() -> int:
    """A TCP port nothing listens on now (for a server a test starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, *, timeout: float = 5) -> tuple[int, bytes]:
    """Status and body of a GET (an HTTP error status is returned, not raised); (0, b"") if nothing answers."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - local URLs built by tests
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""
