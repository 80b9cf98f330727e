from __future__ import annotations

import pytest
from django.db import connection

# The sample tasks register with procrastinate's app, so this process can defer them too.
import tests.kgc.sample_tasks  # noqa: F401
from tests.helpers import WorkerProcesses


@pytest.fixture
def workers(transactional_db):
    """``workers(**env)`` gives a group of worker subprocesses with that environment."""
    groups: list[WorkerProcesses] = []

    def make(**env: str | None) -> WorkerProcesses:
        groups.append(WorkerProcesses(**env))
        return groups[-1]

    yield make
    for group in groups:
        group.stop_all()


@pytest.fixture
def sql():
    """Run one SQL statement on the test database; return all rows (or [] for statements without)."""

    def run(statement: str, params: object = None) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    return run
