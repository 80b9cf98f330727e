"""The manual triggers: a readable table by default, JSON with --json, exit code 2 on bad input."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from procrastinate.contrib.django.models import ProcrastinateJob

from kgc.queue import jobs
from tests.helpers import manage
from tests.kgc.console.conftest import defer, events_move, fail, status_of, succeed

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_queue_stats_prints_a_table_of_every_product_queue():
    defer("filing-reminder")
    lines = run("queue_stats").splitlines()
    assert lines[0].split()[:3] == ["queue", "waiting", "active"]
    assert [line.split()[0] for line in lines[2:]] == ["compliance", "expiry-notification", "filing-reminder", "email"]
    assert lines[4].split()[:2] == ["filing-reminder", "1"]


def test_queue_stats_json_has_counts_pause_flag_and_oldest_age():
    defer("filing-reminder")
    jobs.pause_queue("compliance")
    data = json.loads(run("queue_stats", "--json"))
    assert set(data["queues"]) == {"compliance", "expiry-notification", "filing-reminder", "email"}
    assert set(data["queues"]["email"]) == {
        "waiting", "active", "delayed", "completed", "failed", "paused", "cancelled", "is_paused",
        "oldest_waiting_seconds",
    }  # fmt: skip
    assert data["queues"]["filing-reminder"]["waiting"] == 1
    assert data["queues"]["filing-reminder"]["oldest_waiting_seconds"] >= 0
    assert data["queues"]["compliance"]["is_paused"] is True


def test_pause_queue_pauses_and_reports_it():
    assert run("pause_queue", "email").strip() == "email: paused"
    assert jobs.is_paused("email")


def test_pause_queue_json_says_whether_anything_changed():
    jobs.pause_queue("email")
    assert json.loads(run("pause_queue", "email", "--json")) == {"queue": "email", "paused": True, "changed": False}


def test_resume_queue_resumes_and_reports_it():
    jobs.pause_queue("email")
    assert json.loads(run("resume_queue", "email", "--json")) == {"queue": "email", "paused": False, "changed": True}
    assert not jobs.is_paused("email")


def test_cleanup_queue_deletes_jobs_older_than_the_ages():
    old, recent, old_failure = defer("email"), defer("email"), defer("email")
    succeed(old)
    succeed(recent)
    fail(old_failure)
    events_move(old, by=timedelta(days=8))
    events_move(old_failure, by=timedelta(days=8))
    data = json.loads(run("cleanup_queue", "email", "--completed-age", "7d", "--failed-age", "30d", "--json"))
    assert data == {"queue": "email", "deleted": {"completed": 1, "failed": 0}}
    assert set(ProcrastinateJob.objects.values_list("pk", flat=True)) == {recent, old_failure}


def test_cleanup_queue_without_ages_applies_the_queue_retention():
    old = defer("email")
    succeed(old)
    events_move(old, by=timedelta(days=8))  # email keeps completed jobs 7 days
    assert run("cleanup_queue", "email").strip() == "email: deleted 1 completed and 0 failed jobs"


def test_retry_failed_puts_failed_jobs_of_one_queue_back():
    mine, compliance = defer("filing-reminder"), defer("compliance")
    fail(mine)
    fail(compliance)
    assert json.loads(run("retry_failed", "--queue", "filing-reminder", "--json")) == {
        "queue": "filing-reminder",
        "retried": 1,
        "left_out": {"delivery_unknown": 0},
    }
    assert (status_of(mine), status_of(compliance)) == ("todo", "failed")


def test_retry_failed_without_a_queue_retries_all():
    fail(defer("filing-reminder"))
    fail(defer("compliance"))
    assert run("retry_failed").strip() == "all queues: 2 failed jobs put back in the queue"


def test_retry_failed_leaves_out_emails_whose_delivery_is_unknown_and_says_how_many(failed_send_job):
    _, unknown = failed_send_job(delivery_unknown=True)
    _, other = failed_send_job(delivery_unknown=False)
    line = run("retry_failed", "--queue", "email").strip()
    assert line.startswith("email: 1 failed job put back in the queue; 1 left out: emails whose delivery is unknown")
    unknown.refresh_from_db()
    other.refresh_from_db()
    assert (unknown.status, other.status) == ("failed", "queued")


def test_retry_failed_json_counts_the_send_jobs_left_out(failed_send_job):
    failed_send_job(delivery_unknown=True)
    report = json.loads(run("retry_failed", "--json"))
    assert (report["retried"], report["left_out"]) == (0, {"delivery_unknown": 1})


def test_list_failed_prints_each_failed_job_with_its_last_error():
    job_id = defer("email", tenant_id=4)
    fail(job_id, messages=("timeout", "mailbox full"))
    lines = run("list_failed").splitlines()
    assert lines[0].split() == ["id", "queue", "task", "tenant", "attempts", "failed", "at", "error"]
    assert lines[2].split()[:4] == [str(job_id), "email", "tests.noop_email", "4"]
    assert lines[2].endswith("ValueError: mailbox full")


def test_list_failed_json_has_every_attempt_with_its_traceback():
    job_id = defer("email")
    fail(job_id, messages=("timeout", "mailbox full"))
    (job,) = json.loads(run("list_failed", "--queue", "email", "--json"))["jobs"]
    assert (job["id"], job["args"]) == (job_id, {})
    assert [(f["attempt"], f["message"]) for f in job["failures"]] == [(2, "mailbox full"), (1, "timeout")]
    assert all("Traceback" in f["traceback"] for f in job["failures"])


def test_list_failed_says_so_when_nothing_failed():
    assert run("list_failed").strip() == "no failed jobs"


@pytest.mark.parametrize(
    "args",
    [
        ("pause_queue", "nope"),
        ("resume_queue", "nope"),
        ("cleanup_queue", "nope", "--completed-age", "7d"),
        ("retry_failed", "--queue", "nope"),
        ("list_failed", "--queue", "nope"),
    ],
)
def test_an_unknown_queue_is_exit_code_2(args):
    with pytest.raises(CommandError, match="unknown queue 'nope'") as raised:
        call_command(*args)
    assert raised.value.returncode == 2


@pytest.mark.django_db(transaction=True)
def test_an_unknown_queue_is_one_line_on_stderr():
    result = manage("pause_queue", "nope")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "CommandError: unknown queue 'nope'; known queues: compliance, expiry-notification, filing-reminder, "
        "email, maintenance"
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("flag", ["--completed-age", "--failed-age"])
def test_a_bad_age_is_exit_code_2_naming_it(flag):
    result = manage("cleanup_queue", "email", flag, "seven days")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"manage.py cleanup_queue: error: argument {flag}: expected an age such as 7d, 12h, 30m or 90s, "
        "got 'seven days'"
    ]
