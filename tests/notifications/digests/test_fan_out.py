"""The hourly fan-out: each tenant's digests once per local day, from its digest hour, caught up if missed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from procrastinate.contrib.django.models import ProcrastinateJob

from kgc.queues import SCHEDULES
from notifications.digests import digests_fan_out
from notifications.tasks import send_digests_all
from tests.factories import TenantFactory
from tests.notifications.digests.conftest import document_draft

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 11, 29, tzinfo=UTC)


def at(hour: int, *, days: int = 0) -> datetime:
    return DAY + timedelta(days=days, hours=hour)


def digest_jobs() -> list[dict]:
    return [job.args for job in ProcrastinateJob.objects.filter(task_name="notifications.send_digests").order_by("id")]


@pytest.fixture
def something_waiting(tenant, reader, waiting):
    waiting(document_draft(reader()))
    return tenant


def test_the_digest_fan_out_is_an_hourly_schedule():
    assert SCHEDULES["notifications.send_digests_all"] == "0 * * * *"


def test_nothing_before_the_digest_hour(something_waiting):
    assert digests_fan_out(at=at(8)) == []


def test_the_tick_at_the_digest_hour_defers_the_tenants_digests_for_its_local_day(something_waiting):
    assert len(digests_fan_out(at=at(9))) == 1
    assert digest_jobs() == [{"tenant_id": something_waiting.pk, "as_of": "2026-11-29"}]
    assert ProcrastinateJob.objects.get(task_name="notifications.send_digests").queue_name == "expiry-notification"


def test_later_ticks_the_same_local_day_defer_nothing_more(something_waiting):
    digests_fan_out(at=at(9))
    assert digests_fan_out(at=at(10)) == digests_fan_out(at=at(23)) == []
    assert len(digest_jobs()) == 1


def test_a_missed_tick_is_caught_up_by_the_next_one_the_same_local_day(something_waiting):
    # No worker was up at 09:00 or 10:00.
    assert len(digests_fan_out(at=at(11))) == 1
    assert digest_jobs() == [{"tenant_id": something_waiting.pk, "as_of": "2026-11-29"}]


def test_a_day_missed_entirely_is_not_caught_up_after_local_midnight(something_waiting):
    assert digests_fan_out(at=at(1, days=1)) == []


def test_the_next_day_has_its_own_run(something_waiting):
    digests_fan_out(at=at(9))
    assert len(digests_fan_out(at=at(9, days=1))) == 1
    assert [job["as_of"] for job in digest_jobs()] == ["2026-11-29", "2026-11-30"]


def test_each_tenant_at_its_own_digest_hour(reader, waiting):
    kolkata, new_york = TenantFactory(timezone="Asia/Kolkata"), TenantFactory(timezone="America/New_York")
    for tenant in (kolkata, new_york):
        waiting(document_draft(reader(tenant=tenant)), tenant=tenant)
    digests_fan_out(at=at(3))  # 08:30 in Kolkata, 22:00 the day before in New York (its catch-up)
    assert digest_jobs() == [{"tenant_id": new_york.pk, "as_of": "2026-11-28"}]
    digests_fan_out(at=at(4))  # 09:30 in Kolkata
    digests_fan_out(at=at(13))  # 08:00 in New York: not yet
    assert digest_jobs()[1:] == [{"tenant_id": kolkata.pk, "as_of": "2026-11-29"}]
    digests_fan_out(at=at(14))  # 09:00 in New York
    assert digest_jobs()[2:] == [{"tenant_id": new_york.pk, "as_of": "2026-11-29"}]


def test_a_tenant_with_nothing_waiting_gets_no_job(tenant):
    assert digests_fan_out(at=at(9)) == []


def test_an_inactive_tenant_gets_no_job(something_waiting):
    something_waiting.is_active = False
    something_waiting.save()
    assert digests_fan_out(at=at(9)) == []


def test_the_periodic_task_uses_the_ticks_time(something_waiting):
    assert send_digests_all(timestamp=int(at(9).timestamp())) == 1
    assert digest_jobs() == [{"tenant_id": something_waiting.pk, "as_of": "2026-11-29"}]
