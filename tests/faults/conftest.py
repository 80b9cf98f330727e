"""A private PostgreSQL cluster to break: restart it, stop it, kill its connections.

The cluster runs the machine's PostgreSQL binaries (``pg_config --bindir``) on a port of
its own, as the ``postgres`` OS user when the tests run as root; the machine's own
server is never touched. The project's migrations are applied once, to a template
database, and each test gets a fresh copy. Worker processes connect to it through
DATABASE_URL, like in production.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import psycopg
import pytest

from tests.helpers import FAST_FAULTS, ROOT, manage, manage_popen, subprocess_env, wait_for

TEMPLATE = "kgc_fault_template"

pytestmark = [pytest.mark.slow, pytest.mark.fault]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class Cluster:
    """One PostgreSQL server in a temporary directory (see the module docstring)."""

    def __init__(self) -> None:
        self.bindir = Path(subprocess.check_output(["pg_config", "--bindir"], text=True).strip())
        self.root = Path(tempfile.mkdtemp(prefix="kgc-fault-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        os.chmod(self.root, 0o755)  # noqa: S103 - the postgres user must reach its data directory
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            _as_postgres([str(self.bindir / args[0]), *args[1:]]),
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        settings = {
            "port": self.port,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": 150,
            "shared_buffers": "'64MB'",
            # A test server: durability is not what these tests break.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        # pg_ctl needs a log file (-l), or the server keeps the caller's pipes open.
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def crash(self) -> None:
        """Stop the server as a crash would (no checkpoint, unwritten WAL lost), then start it."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")
        self.start()

    def restart(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "-t", "60", "restart")

    def is_running(self) -> bool:
        with contextlib.suppress(psycopg.OperationalError), psycopg.connect(self.url("postgres"), connect_timeout=2):
            return True
        return False

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if shutil.which("pg_config") is None:
        pytest.skip("pg_config is not on PATH (PostgreSQL's server binaries are needed)")
    server = Cluster()
    server.init()
    server.start()
    try:
        with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        result = manage("migrate", "-v", "0", env=subprocess_env(DATABASE_URL=server.url(TEMPLATE)), timeout=300)
        assert result.returncode == 0, result.stderr
        yield server
    finally:
        server.destroy()


@pytest.fixture
def fault_db(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database on the private cluster; its URL."""
    if not cluster.is_running():
        cluster.start()  # a test that failed while the server was stopped
    name = f"kgc_fault_{abs(hash(request.node.nodeid)) % 10**8}"
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield cluster.url(name)
    if not cluster.is_running():
        cluster.start()
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Database:
    """Statements on the test's database, each on a short-lived connection (the server may restart)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def value(self, statement: str, params: Any = None) -> Any:
        rows = self.rows(statement, params)
        return rows[0][0] if rows else None

    def defer(self, task: str, queue: str, count: int = 1, **kwargs: Any) -> list[int]:
        """Insert waiting jobs with procrastinate's own SQL function (what a defer does)."""
        return [
            row[0]
            for row in self.rows(
                """SELECT unnest(procrastinate_defer_jobs_v1(array_agg(
                       ROW(%s, %s, -100, NULL, NULL, %s::jsonb, NULL)::procrastinate_job_to_defer_v1)))
                     FROM generate_series(1, %s)""",
                [queue, task, psycopg.types.json.Jsonb(kwargs), count],
            )
        ]

    def statuses(self, ids: list[int]) -> list[str]:
        found = dict(self.rows("SELECT id, status::text FROM procrastinate_jobs WHERE id = ANY(%s)", [ids]))
        return [found.get(i, "missing") for i in ids]

    def all_succeeded(self, ids: list[int]) -> bool:
        return self.statuses(ids) == ["succeeded"] * len(ids)

    def safely(self, check: Any) -> Any:
        """``check()``, or False while the server is unreachable (for wait_for)."""
        try:
            return check()
        except psycopg.OperationalError:
            return False


@pytest.fixture
def database(fault_db: str) -> Database:
    return Database(fault_db)


# Timings scaled down so that faults play out in seconds, not minutes.
FAST = {
    **FAST_FAULTS,
    "KGC_POLL_INTERVAL": "0.5",
    "KGC_RECOVERY_TIMEOUT": "120",
    "KGC_SHUTDOWN_TIMEOUT": "5",
}


class FaultWorkers:
    """``runworkers`` processes against the private cluster, stopped (SIGKILL if need be) at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.processes: list[subprocess.Popen[str]] = []
        self.logs: list[IO[str]] = []

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        if "--processes" not in args:
            args = (*args, "--processes", "1")
        log = tempfile.NamedTemporaryFile("w+", prefix="kgc-worker-", suffix=".log")  # noqa: SIM115 - closed in stop_all
        environment = subprocess_env(
            DATABASE_URL=env.pop("DATABASE_URL", self.url),
            KGC_EXTRA_TASK_MODULES="tests.kgc.sample_tasks",
            **{**FAST, **env},
        )
        process = manage_popen("runworkers", *args, env=environment, output=log)
        self.processes.append(process)
        self.logs.append(log)
        return process

    def log(self, process: subprocess.Popen[str]) -> str:
        log = self.logs[self.processes.index(process)]
        log.flush()
        return Path(log.name).read_text()

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, log in zip(self.processes, self.logs, strict=True):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
            print(f"--- worker {process.args[2:]} exited {process.returncode} ---\n{self.log(process)[-8000:]}")
            log.close()


@pytest.fixture
def fault_workers(fault_db: str) -> Iterator[FaultWorkers]:
    group = FaultWorkers(fault_db)
    yield group
    group.stop_all()


def registered(database: Database, process: subprocess.Popen[str]) -> int | None:
    """The worker id a process currently runs under (None: not registered)."""
    return database.safely(
        lambda: database.value("SELECT worker_id FROM kgc_workerprocess WHERE pid = %s", [process.pid])
    )


def wait_registered(database: Database, process: subprocess.Popen[str], *, timeout: float = 60) -> int:
    return wait_for(
        lambda: registered(database, process) or (process.poll() is not None and pytest.fail("worker exited")),
        timeout=timeout,
        message=f"worker {process.pid} to register",
    )


def health(url: str) -> tuple[int, dict[str, Any]]:
    """``manage.py health --json`` against the cluster: (exit code, checks)."""
    import json

    result = manage("health", "--json", env=subprocess_env(DATABASE_URL=url), timeout=60)
    return result.returncode, json.loads(result.stdout)["checks"] if result.stdout.strip() else {}


class FreezingProxy:
    """A TCP proxy to the cluster that can freeze: its connections then stay open and pass
    nothing, ever, like a peer that vanished without closing (a half-open connection).
    Connections opened after ``thaw()`` pass traffic again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.frozen = threading.Event()
        self.generation = 0
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def freeze(self) -> None:
        self.generation += 1
        self.frozen.set()

    def thaw(self) -> None:
        self.frozen.clear()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            self._serve()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._keep(client)
            if self.frozen.is_set():
                continue  # accepted, and never answered
            upstream = self._keep(socket.create_connection(("127.0.0.1", self.target_port)))
            generation = self.generation
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink, generation), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, generation: int) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if self.frozen.is_set() or self.generation != generation:
                    self._stopped.wait()  # frozen for good: hold the bytes, never pass them on
                    return
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)

    def _keep(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            if self._stopped.is_set():
                sock.close()
                raise OSError("the proxy is closed")
            self._sockets.append(sock)
        return sock

    def close(self) -> None:
        with self._lock:
            self._stopped.set()
            sockets = [self.listener, *self._sockets]
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._acceptor.join(timeout=5)


@pytest.fixture
def proxy(cluster: Cluster) -> Iterator[FreezingProxy]:
    freezing = FreezingProxy(cluster.port)
    yield freezing
    freezing.close()


__all__ = ["ROOT", "Cluster", "Database", "FaultWorkers", "FreezingProxy", "health", "registered", "wait_registered"]


class Bouncer:
    """A PgBouncer in session pooling in front of the cluster (run as the postgres user)."""

    def __init__(self, cluster: Cluster) -> None:
        self.port = free_port()
        self.config = cluster.root / "pgbouncer.ini"
        self.config.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={cluster.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {cluster.root}\n"
            "auth_type = trust\n"
            f"auth_file = {cluster.root / 'users.txt'}\n"
            "pool_mode = session\nmax_client_conn = 500\ndefault_pool_size = 100\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {cluster.root / 'pgbouncer.log'}\n"
        )
        (cluster.root / "users.txt").write_text('"postgres" ""\n')
        if os.geteuid() == 0:
            for path in (self.config, cluster.root / "users.txt"):
                shutil.chown(path, "postgres", "postgres")
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        self.process = subprocess.Popen(  # noqa: S603 - the machine's pgbouncer, our config
            _as_postgres([binary, str(self.config)]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self._answers, timeout=30, message="pgbouncer to listen")

    def _answers(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True
        return False

    def url(self, database_url: str) -> str:
        database = database_url.rsplit("/", 1)[1]
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def pgbouncer(cluster: Cluster) -> Iterator[Bouncer]:
    if not (shutil.which("pgbouncer") or os.path.exists("/usr/sbin/pgbouncer")):
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    bouncer = Bouncer(cluster)
    yield bouncer
    bouncer.stop()
