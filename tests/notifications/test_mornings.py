"""Each firm's own morning: the hourly fan-out defers a tenant's three checks at KGC_REMINDER_HOUR
in its time zone, once per local day, caught up after downtime; a UTC firm gets the seed's 08:00."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from procrastinate.contrib.django.models import ProcrastinateJob

from kgc.queues import SCHEDULES
from notifications.mornings import mornings_fan_out
from notifications.tasks import morning_checks_all
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

DAY = datetime(2027, 3, 1, tzinfo=UTC)
TASKS = {"notifications.check_expiry", "notifications.send_filing_reminders", "notifications.escalate_overdue_filings"}


def at(hour: int, *, days: int = 0) -> datetime:
    return DAY + timedelta(days=days, hours=hour)


def deferred() -> list[tuple[str, int, str]]:
    return sorted(
        (job.task_name, job.args["tenant_id"], job.args["as_of"])
        for job in ProcrastinateJob.objects.filter(task_name__in=TASKS)
    )


def runs(tenant) -> set[tuple[str, str]]:
    return {(task, as_of) for task, tenant_id, as_of in deferred() if tenant_id == tenant.pk}


def test_the_morning_checks_are_an_hourly_schedule_replacing_the_seeds_8_utc_crons():
    assert SCHEDULES["notifications.morning_checks_all"] == "0 * * * *"
    assert (
        "notifications.check_expiry_all" not in SCHEDULES and "notifications.send_filing_reminders_all" not in SCHEDULES
    )


def test_a_utc_firm_gets_its_three_checks_at_08_00_utc_as_from_the_seeds_cron():
    utc = TenantFactory(timezone="UTC")
    assert mornings_fan_out(at=at(7)) == []
    assert len(mornings_fan_out(at=at(8))) == 3
    assert runs(utc) == {(task, "2027-03-01") for task in TASKS}
    queues = set(ProcrastinateJob.objects.values_list("queue_name", flat=True))
    assert queues == {"expiry-notification", "filing-reminder"}


@pytest.mark.parametrize(
    ("zone", "utc_hour", "local_day"),
    [
        ("Pacific/Auckland", 19, "2027-03-02"),  # 08:00 NZDT on 2 March is 19:00 UTC on 1 March
        ("Asia/Kolkata", 3, "2027-03-01"),  # 08:30 IST: the first tick at or after 08:00
        ("Africa/Nairobi", 5, "2027-03-01"),  # 08:00 EAT
        ("America/Los_Angeles", 16, "2027-03-01"),  # 08:00 PST
    ],
)
def test_each_firm_at_its_own_local_morning(zone, utc_hour, local_day):
    tenant = TenantFactory(timezone=zone)
    mornings_fan_out(at=at(utc_hour - 1))
    assert runs(tenant) == set()
    mornings_fan_out(at=at(utc_hour))
    assert runs(tenant) == {(task, local_day) for task in TASKS}


def test_once_per_local_day_however_many_ticks():
    TenantFactory(timezone="UTC")
    mornings_fan_out(at=at(8))
    assert mornings_fan_out(at=at(9)) == mornings_fan_out(at=at(23)) == []
    assert len(mornings_fan_out(at=at(8, days=1))) == 3


def test_a_missed_tick_is_caught_up_the_same_local_day():
    tenant = TenantFactory(timezone="UTC")
    assert len(mornings_fan_out(at=at(13))) == 3  # no worker was up from 08:00 to 12:00
    assert runs(tenant) == {(task, "2027-03-01") for task in TASKS}


def test_an_inactive_firm_gets_nothing():
    TenantFactory(timezone="UTC", is_active=False)
    assert mornings_fan_out(at=at(8)) == []


def test_the_reminder_hour_is_a_setting(settings):
    settings.KGC_REMINDER_HOUR = 6
    TenantFactory(timezone="UTC")
    assert len(mornings_fan_out(at=at(6))) == 3


def test_the_morning_follows_daylight_saving_time():
    tenant = TenantFactory(timezone="America/Los_Angeles")  # PST (UTC-8) until 14 March 2027, then PDT
    mornings_fan_out(at=at(16, days=12))  # 08:00 PST on 13 March
    mornings_fan_out(at=at(15, days=13))  # 08:00 PDT on 14 March
    mornings_fan_out(at=at(14, days=14))  # 07:00 PDT on 15 March: not yet
    assert {as_of for _, as_of in runs(tenant)} == {"2027-03-13", "2027-03-14"}


def test_the_periodic_task_uses_the_ticks_time():
    tenant = TenantFactory(timezone="UTC")
    assert morning_checks_all(timestamp=int(at(8).timestamp())) == 3
    assert runs(tenant) == {(task, "2027-03-01") for task in TASKS}
