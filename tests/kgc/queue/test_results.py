"""A succeeded job's return value is kept for the console."""

from __future__ import annotations

import json

import pytest

from kgc.queue.models import JobResult
from kgc.queue.results import RESULT_MAX_CHARS, result_json
from tests.helpers import manage, subprocess_env
from tests.kgc.console.conftest import defer, status_of


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ({"clients_scored": 3}, {"clients_scored": 3}),
        (None, None),
        (42, 42),
        ({1, 2}, "{1, 2}"),  # not JSON: its text
        ({(1, 2): "a"}, "{(1, 2): 'a'}"),  # keys JSON cannot have: its repr
    ],
)
def test_a_return_value_is_stored_as_json(value, stored):
    assert json.loads(result_json(value)) == stored


def test_a_long_return_value_is_cut_to_text():
    stored = json.loads(result_json("x" * (RESULT_MAX_CHARS * 2)))
    assert isinstance(stored, str) and stored.endswith("…") and len(stored) == RESULT_MAX_CHARS + 1


def test_a_nul_character_is_dropped():
    assert json.loads(result_json("a\x00b")) == "ab"


def _run_one_worker() -> str:
    result = manage(
        "procrastinate",
        "worker",
        "--queues=maintenance",
        "--one-shot",
        env=subprocess_env(KGC_EXTRA_TASK_MODULES="tests.kgc.sample_tasks"),
        timeout=60,
    )
    return result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_records_what_the_job_returned():
    job_id = defer("maintenance", task="tests.summarise", clients=7)
    output = _run_one_worker()
    assert status_of(job_id) == "succeeded", output
    assert JobResult.objects.get(job_id=job_id).value == {"clients_scored": 7, "levels": {"green": 7}}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_job_that_returns_nothing_records_nothing():
    job_id = defer("maintenance")
    output = _run_one_worker()
    assert status_of(job_id) == "succeeded", output
    assert not JobResult.objects.filter(job_id=job_id).exists()


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (float("nan"), "nan"),  # JSON has no NaN: its repr
        ({"score": float("inf")}, "{'score': inf}"),
        ("a\\u0000b", "a\\u0000b"),  # a backslash and the letters u0000, kept as they are
        ("a\ud800b", "a?b"),  # a lone surrogate, which UTF-8 cannot hold
    ],
)
def test_a_value_postgresql_would_refuse_is_stored_as_text_it_accepts(value, stored):
    text = result_json(value)
    text.encode("utf-8")  # storable
    assert json.loads(text) == stored
