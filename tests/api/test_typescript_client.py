"""The TypeScript job helpers against a live server, and a job they enqueue run by a worker.

Starts ``manage.py runserver`` on a free local port against the test database,
type-checks clients/typescript with ``tsc --noEmit``, compiles it to a temporary
directory and runs its tests with Node's own test runner; then a real worker
processes the jobs those tests enqueued. TypeScript comes from
clients/typescript/package-lock.json (``npm ci --prefix clients/typescript``).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request

import pytest
from procrastinate.contrib.django.models import ProcrastinateJob

from tests.factories import MembershipFactory, TenantFactory
from tests.helpers import ROOT, subprocess_env

CLIENT = ROOT / "clients" / "typescript"
TOKEN = "live-test-token"
# Bounds for a hung test only; nothing asserts how fast anything was.
STARTUP_TIMEOUT = 90
JOBS_TIMEOUT = 120

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("node") is None, reason="node is not installed: the TypeScript client needs Node 18+"
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen, log) -> str:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
    log.seek(0)
    return log.read()[-5000:]


def wait_until(predicate, *, timeout: float, what: str) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - a local http URL built here
            return response.status == 200
    except OSError:
        return False


def run(command: list[str], *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=CLIENT, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def server_env():
    return subprocess_env(KGC_API_TOKENS=TOKEN, DJANGO_SETTINGS_MODULE="kgc.settings", KGC_SCHEDULER_CATCH_UP_HOURS="0")


@pytest.fixture
def jobs_server(transactional_db, server_env):
    """``manage.py runserver`` on a free local port; its URL. Stopped afterwards."""
    port = free_port()
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=server_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: answers(f"{url}/healthz") or process.poll() is not None, timeout=STARTUP_TIMEOUT, what="runserver"
        )
        assert process.poll() is None, "runserver exited"
        yield url
    finally:
        output = stop(process, log)
        log.close()
        print(f"--- runserver exited {process.returncode} ---\n{output}")


@pytest.fixture
def typescript():
    """clients/typescript's own TypeScript compiler (from its lockfile)."""
    if not (CLIENT / "node_modules" / ".bin" / "tsc").exists():
        pytest.fail("TypeScript is not installed: run `npm ci --prefix clients/typescript` first")
    return ["npx", "--no-install", "tsc", "-p", "."]


def test_typescript_client_type_checks(typescript):
    result = run([*typescript, "--noEmit"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_typescript_client_works_against_the_live_server_and_its_jobs_run(
    typescript, jobs_server, server_env, tmp_path
):
    tenant = TenantFactory()
    member = MembershipFactory(tenant=tenant, role="manager").user
    compiled = run([*typescript, "--outDir", str(tmp_path / "dist")])
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    results = tmp_path / "enqueued.json"
    node_env = {
        **server_env,
        "KGC_JOBS_URL": jobs_server,
        "KGC_JOBS_TOKEN": TOKEN,
        "KGC_TEST_TENANT_ID": str(tenant.pk),
        "KGC_TEST_USER_ID": str(member.pk),
        "KGC_TEST_TENANT_SLUG": tenant.slug,
        "KGC_TEST_RESULTS": str(results),
    }
    tests = run(["node", "--test", str(tmp_path / "dist" / "test" / "job-helpers.test.js")], env=node_env)
    print(tests.stdout[-20000:], tests.stderr[-5000:])
    assert tests.returncode == 0, "node --test failed (output above)"

    enqueued = json.loads(results.read_text())
    job_ids = [int(enqueued["expiryCheckAll"]), int(enqueued["expiryCheckTenant"])]
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runworkers", "--queues", "maintenance,expiry-notification"],
        cwd=ROOT,
        env=server_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def finished() -> bool:
            statuses = set(ProcrastinateJob.objects.filter(id__in=job_ids).values_list("status", flat=True))
            return statuses <= {"succeeded", "failed", "cancelled", "aborted"} or worker.poll() is not None

        wait_until(finished, timeout=JOBS_TIMEOUT, what="the worker to run the jobs the client enqueued")
        statuses = dict(ProcrastinateJob.objects.filter(id__in=job_ids).values_list("id", "status"))
        assert statuses == dict.fromkeys(job_ids, "succeeded")
    finally:
        output = stop(worker, log)
        log.close()
        print(f"--- worker exited {worker.returncode} ---\n{output}")
