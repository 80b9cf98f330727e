"""With DATABASE_URL unset the project runs its own PostgreSQL, reuses its data and stops it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import psycopg
import pytest

from kgc.embedded_db import HANDLES_FILE, _forget_dead_processes, handles_read, handles_write
from tests.helpers import ROOT, manage, subprocess_env

pytestmark = pytest.mark.slow

SCRIPT = """
import sys
from pathlib import Path
import psycopg
from kgc.embedded_db import embedded_database_url
url = embedded_database_url(Path(sys.argv[1]))
with psycopg.connect(url, autocommit=True) as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS visits (n int)")
    conn.execute("INSERT INTO visits VALUES (1)")
    print(url, conn.execute("SELECT count(*) FROM visits").fetchone()[0])
"""


def run_embedded(data_dir, *, runtime_dir=None) -> tuple[str, int]:
    env = {**os.environ, **({"XDG_RUNTIME_DIR": str(runtime_dir)} if runtime_dir else {})}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(data_dir)], cwd=ROOT, capture_output=True, text=True, check=True, env=env
    )
    url, visits = out.stdout.split()
    return url, int(visits)


def test_embedded_server_starts_keeps_its_data_and_stops(tmp_path):
    runtime = tmp_path / "runtime"  # the user's runtime directory: nothing is left there
    runtime.mkdir()
    runtime.chmod(0o700)  # platformdirs uses it only then
    url, visits = run_embedded(tmp_path / "data", runtime_dir=runtime)
    tmp_path = tmp_path / "data"
    assert visits == 1
    assert (tmp_path / "pgdata" / "PG_VERSION").exists()
    assert list(runtime.iterdir()) == []
    assert (tmp_path / ".embedded-postgres.lock").exists()  # its start-up lock is the project's
    # The last process using the server has exited: the server is stopped.
    deadline = time.monotonic() + 10
    while not_stopped := (tmp_path / "pgdata" / "postmaster.pid").exists():
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not not_stopped
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    _, visits = run_embedded(tmp_path)
    assert visits == 2


def test_manage_migrates_the_embedded_database_when_database_url_is_unset(tmp_path):
    env = subprocess_env(DATABASE_URL=None, KGC_DATA_DIR=str(tmp_path))
    result = manage("migrate", "--no-input", "-v", "0", env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    result = manage("showmigrations", "compliance", env=env)
    assert "[X] 0002_tenant_boundaries" in result.stdout


def test_embedded_database_runs_a_job_through_a_worker(tmp_path):
    """The smoke test of the default set-up: no DATABASE_URL, migrate, one job through a worker."""
    env = subprocess_env(DATABASE_URL=None, KGC_DATA_DIR=str(tmp_path), KGC_EXTRA_TASK_MODULES="tests.kgc.sample_tasks")
    assert manage("migrate", "--no-input", "-v", "0", env=env, timeout=300).returncode == 0
    script = (
        "import django; django.setup(); from kgc.queue import jobs; import tests.kgc.sample_tasks;"
        "print(jobs.job_defer(task_name='tests.noop_compliance', kwargs={})[0])"
    )
    subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "kgc.settings"}, check=True
    )
    worker = subprocess.Popen([sys.executable, "manage.py", "runworkers", "--queues", "compliance"], cwd=ROOT, env=env)
    try:
        check = (
            "import django; django.setup(); from kgc.queue.jobs import get_queue_stats;"
            "print(get_queue_stats('compliance').completed)"
        )
        deadline = time.monotonic() + 60
        completed = "0"
        while completed != "1" and time.monotonic() < deadline:
            time.sleep(0.5)
            completed = subprocess.run(
                [sys.executable, "-c", check], cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "kgc.settings"},
                capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
        assert completed == "1"
    finally:
        worker.terminate()
        assert worker.wait(timeout=60) == 0


@pytest.mark.parametrize("damage", ["", "[4242, 42", "{}"], ids=["empty", "cut", "not-a-list"])
def test_a_damaged_list_of_the_servers_users_never_stops_a_start(tmp_path, damage):
    """A process killed while writing the list once left it empty: every start then crashed."""
    run_embedded(tmp_path)
    (tmp_path / "pgdata" / HANDLES_FILE).write_text(damage)
    _, visits = run_embedded(tmp_path)
    assert visits == 2


@pytest.mark.parametrize("damage", ["", "[1, 2", "{}", '["1"]', "null"])
def test_a_damaged_list_reads_as_no_process(tmp_path, damage):
    path = tmp_path / HANDLES_FILE
    path.write_text(damage)
    assert handles_read(path) == []


def test_the_list_is_replaced_whole_never_rewritten_in_place(tmp_path):
    """Renamed over the old one: a reader (or a kill) never meets a half-written list."""
    path = tmp_path / HANDLES_FILE
    handles_write(path, [1, 2])
    before = path.stat().st_ino
    handles_write(path, [1, 2, 3])
    assert path.stat().st_ino != before
    assert handles_read(path) == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == [HANDLES_FILE]


def test_a_pid_reused_by_a_process_started_after_the_list_was_written_is_forgotten(tmp_path):
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    registered = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # noqa: S603
    try:
        handles_write(pgdata / HANDLES_FILE, [registered.pid])
        assert _forget_dead_processes(pgdata) == [registered.pid]  # started before it registered
        started_since = psutil.Process(registered.pid).create_time() - 10
        os.utime(pgdata / HANDLES_FILE, (started_since, started_since))  # as if written before it started
        assert _forget_dead_processes(pgdata) == []
    finally:
        registered.kill()
        registered.wait()
