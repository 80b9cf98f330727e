"""The favicon, and a development server that logs each request once."""

from __future__ import annotations

import subprocess
import sys
import tempfile

import pytest

from tests.helpers import ROOT, free_port, http_get, subprocess_env, wait_for


def test_favicon_is_served_as_an_icon(client):
    response = client.get("/favicon.ico")
    assert (response.status_code, response["Content-Type"]) == (200, "image/x-icon")
    assert response.content[:4] == b"\x00\x00\x01\x00"  # the ICO signature


def test_admin_pages_name_the_favicon(admin_client):
    assert 'rel="icon"' in admin_client.get("/admin/").content.decode()


@pytest.mark.slow
def test_runserver_logs_a_not_found_request_once(transactional_db):
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=subprocess_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_for(lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, message="runserver")
            assert http_get(f"http://127.0.0.1:{port}/no-such-page")[0] == 404
        finally:
            server.terminate()
            server.wait(timeout=30)
        log.seek(0)
        output = log.read()
    assert [line for line in output.splitlines() if "/no-such-page" in line] == [
        next(line for line in output.splitlines() if '"GET /no-such-page HTTP/1.1" 404' in line)
    ], output
