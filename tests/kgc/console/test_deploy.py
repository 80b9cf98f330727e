"""docker-compose.yml: a valid file whose worker health check looks at the worker itself."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.helpers import ROOT

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (requirements-dev.txt)")

COMPOSE = ROOT / "docker-compose.yml"


def test_the_worker_container_checks_its_own_worker_processes():
    worker = yaml.safe_load(COMPOSE.read_text())["services"]["worker"]
    assert worker["healthcheck"]["test"] == ["CMD", "python", "manage.py", "health", "--worker"]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed (apt-get)")
def test_docker_compose_accepts_the_file():
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "--quiet"],  # noqa: S607 - Debian's docker-compose
        env={"POSTGRES_PASSWORD": "checked", "SECRET_KEY": "checked", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
