"""``bin/dev`` (``make run``): the banner once the server answers, the development API token,
and a stop by SIGINT, SIGTERM or SIGHUP that leaves nothing running, also when started in
the background with SIGINT ignored."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.helpers import ROOT, free_port, http_get, subprocess_env, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Bounds for a hung test only; nothing asserts how fast anything was.
STARTUP_TIMEOUT = 240
STOP_TIMEOUT = 90


class DevRun:
    """``bin/dev`` in a session of its own, its output collected by a thread."""

    def __init__(self, env: dict[str, str], *, sigint_ignored: bool) -> None:
        def background() -> None:
            # What a shell does to a command started with `&`: SIGINT ignored, in every child too.
            signal.signal(signal.SIGINT, signal.SIG_IGN)

        self.process = subprocess.Popen(
            [str(ROOT / "bin" / "dev")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=background if sigint_ignored else None,  # noqa: PLW1509 - no threads touch the fork
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def banner(self) -> dict[str, str]:
        wait_for(
            lambda: "Ctrl+C stops" in self.output or self.process.poll() is not None,
            timeout=STARTUP_TIMEOUT,
            message="the banner",
        )
        assert self.process.poll() is None, self.output[-5000:]
        fields = dict(re.findall(r"^  (Username|Password|API) +(.+)$", self.output, flags=re.MULTILINE))
        fields["token"] = fields["API"].split("token ")[1]
        return fields

    def close(self) -> None:
        """Stop what the test left running (SIGKILL to every process if need be), then close the pipe."""
        if self.process.poll() is None:
            processes = [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):  # then killed below
                self.process.wait(timeout=STOP_TIMEOUT)
            _, alive = psutil.wait_procs(processes, timeout=10)
            for process in alive:
                process.kill()
            self.process.wait(timeout=30)
        # Every writer is gone, so the reader sees the end of the output and finishes.
        self.reader.join(timeout=30)
        assert self.process.stdout is not None
        if not self.reader.is_alive():
            self.process.stdout.close()


@pytest.fixture
def dev_env(tmp_path):
    return subprocess_env(
        PORT=str(free_port()),
        KGC_DATA_DIR=str(tmp_path / "kgc"),
        KGC_API_TOKENS=None,
        KGC_ADMIN_PASSWORD=None,
        KGC_SCHEDULER_CATCH_UP_HOURS="0",
        DEMO_TENANTS="1",
        DEMO_CLIENTS="1",
    )


@pytest.fixture
def start_dev():
    runs: list[DevRun] = []

    def start(env: dict[str, str], *, sigint_ignored: bool = False) -> DevRun:
        runs.append(DevRun(env, sigint_ignored=sigint_ignored))
        return runs[-1]

    yield start
    for run in runs:
        run.close()
        print(f"--- bin/dev exited {run.process.returncode} ---\n{run.output[-8000:]}")


def _stops_everything(run: DevRun, signum: int) -> None:
    descendants = psutil.Process(run.process.pid).children(recursive=True)
    assert len(descendants) >= 3, "expected the workers and runserver (with its reloader's child)"
    os.kill(run.process.pid, signum)
    assert run.process.wait(timeout=STOP_TIMEOUT) == 0, run.output[-5000:]
    _, alive = psutil.wait_procs(descendants, timeout=30)
    assert alive == [], f"still running after bin/dev exited: {[p.pid for p in alive]}"
    assert run.lines[-1] == "kgc: stopped"


@pytest.mark.parametrize(
    ("signum", "sigint_ignored"),
    [(signal.SIGINT, False), (signal.SIGTERM, True), (signal.SIGHUP, True)],
    ids=["ctrl-c", "sigterm-in-the-background", "sighup-in-the-background"],
)
def test_a_signal_stops_the_web_server_and_the_workers(start_dev, dev_env, signum, sigint_ignored):
    run = start_dev(dev_env, sigint_ignored=sigint_ignored)
    run.banner()
    _stops_everything(run, signum)
    assert http_get(f"http://127.0.0.1:{dev_env['PORT']}/healthz")[0] == 0  # nothing listens any more


def test_the_banners_again_line_works_in_a_second_terminal(start_dev, dev_env):
    """A terminal of its own: no DEBUG, no SECRET_KEY (make run sets DEBUG for its own processes only)."""
    run = start_dev(dev_env)
    fields = run.banner()
    [again] = re.findall(r"^  Again +(.+)$", run.output, flags=re.MULTILINE)
    second_terminal = {key: value for key, value in dev_env.items() if key not in ("DEBUG", "SECRET_KEY")}
    shown = subprocess.run(  # noqa: S603 - the banner's own command line, as a person would paste it
        shlex.split(again), cwd=ROOT, env=second_terminal, capture_output=True, text=True, timeout=120, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert f"  Password   {fields['Password']}" in shown.stdout
    listed = subprocess.run(
        [sys.executable, "manage.py", "queue_stats"], cwd=ROOT, env=second_terminal, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr


def test_the_banner_token_opens_the_api(start_dev, dev_env):
    run = start_dev(dev_env)
    token = run.banner()["token"]
    request = urllib.request.Request(  # noqa: S310 - a local URL
        f"http://127.0.0.1:{dev_env['PORT']}/api/v1/queues", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - a local URL
        assert set(json.load(response)) == {"compliance", "expiry-notification", "filing-reminder", "email"}


@pytest.mark.parametrize("users_list", ["kept", "damaged"])
def test_the_embedded_postgresql_stops_with_the_rest(start_dev, dev_env, users_list):
    """Also when the list of the server's users was left damaged (a process killed while writing it)."""
    env = {key: value for key, value in dev_env.items() if key != "DATABASE_URL"}
    run = start_dev(env, sigint_ignored=True)
    run.banner()
    pgdata = Path(env["KGC_DATA_DIR"]) / "pgdata"
    server = psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
    if users_list == "damaged":
        (pgdata / ".handle_pids.json").write_text("")
    _stops_everything(run, signal.SIGTERM)
    server.wait(timeout=30)
    assert not (pgdata / "postmaster.pid").exists()
