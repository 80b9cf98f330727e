"""120 days of hourly ticks over five firms on four continents, through two daylight-saving changes.

Firms in Pacific/Auckland (NZ ends DST on 4 April 2027), Asia/Kolkata, Africa/Nairobi,
America/Los_Angeles (US starts DST on 14 March 2027) and UTC, with holiday calendars,
their own thresholds, members reading digests or not (and one changing their mind), a
renewal between a morning and its digest, and an overdue filing escalated until filed.

Each hourly tick runs the two fan-outs the scheduler runs (morning checks, digests) with
the tick's time, then the jobs they deferred, in this process, against the real
PostgreSQL; the application's clock stands at the tick (time-machine), since
notifications record their creation time. The expected reminders come from an oracle
written here day by day, independent of the services. What the issue asks:

* every due reminder reaches every recipient exactly once: immediately, or in exactly one
  digest on the same local day;
* nothing is sent at another local hour than the firm's;
* no item text disagrees with its digest's date;
* a Saturday-due and a holiday-due filing count to their business day;
* an escalation repeats weekly and stops at filing.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from procrastinate.contrib.django.models import ProcrastinateJob

from compliance.calendars import calendar_of, effective_due_date, long_day
from compliance.models import Filing
from notifications import tasks
from notifications.digests import digests_fan_out
from notifications.models import Digest, DigestRun, MorningRun, Notification, NotificationPreference, OutboundEmail
from notifications.mornings import mornings_fan_out
from notifications.rendering import email_render
from notifications.rules import when
from tests.factories import (
    ClientFactory,
    DocumentFactory,
    DocumentTypeFactory,
    FilingFactory,
    FilingTaskFactory,
    TenantFactory,
)

pytestmark = pytest.mark.django_db

START = datetime(2027, 2, 14, 12, tzinfo=UTC)
HOURS = 120 * 24
END = START + timedelta(hours=HOURS)
TASKS = {
    "notifications.check_expiry": tasks.check_expiry,
    "notifications.send_filing_reminders": tasks.send_filing_reminders,
    "notifications.escalate_overdue_filings": tasks.escalate_overdue_filings,
    "notifications.send_digests": tasks.send_digests,
}
EXPIRY_ROLES = {"admin", "manager"}  # of the members below (no compliance officer)
FILING_ROLES = {"admin", "manager", "tax_preparer"}
ESCALATION_ROLES = {"admin", "manager"}


@dataclass
class Firm:
    tenant: object
    people: dict[str, object] = field(default_factory=dict)  # role -> user
    documents: list[tuple[object, int]] = field(default_factory=list)  # (document, days after start)
    filings: list[object] = field(default_factory=list)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tenant.timezone)

    def mornings(self) -> list[date]:
        """The local days whose 08:00 falls inside the simulation."""
        first = START.astimezone(self.zone).date() - timedelta(days=1)
        days = (first + timedelta(days=n) for n in range(123))
        return [d for d in days if START <= datetime.combine(d, time(8), tzinfo=self.zone) < END]


FIRMS = [
    # zone, calendar, default, thresholds (expiry, filing), a holiday-due filing's statutory date
    ("Pacific/Auckland", ("NZ", ""), "daily_digest", None, None, date(2027, 3, 26)),  # Good Friday
    ("Asia/Kolkata", ("IN", ""), "immediate", None, None, date(2027, 4, 15)),  # Ram Navami
    ("Africa/Nairobi", ("KE", ""), "daily_digest", [45, 10], [10, 2], date(2027, 6, 1)),  # Madaraka Day
    ("America/Los_Angeles", ("US", "CA"), "daily_digest", None, None, None),
    ("UTC", ("", ""), "immediate", None, None, None),
]


@pytest.fixture
def firms(member_of) -> list[Firm]:
    made = []
    tin = DocumentTypeFactory(code="tin", name="TIN Certificate")
    for n, (zone, (country, subdivision), default, expiry_days, filing_days, holiday_due) in enumerate(FIRMS):
        tenant = TenantFactory(
            name=f"Firm {zone}",
            timezone=zone,
            holiday_country=country,
            holiday_subdivision=subdivision,
            notification_email_default=default,
            expiry_reminder_days=expiry_days,
            filing_reminder_days=filing_days,
        )
        firm = Firm(tenant)
        for role in ("admin", "manager", "tax_preparer"):
            firm.people[role] = member_of(tenant, role, username=f"{role}-{n}")
        start_day = START.date()

        def client(label: str, tenant=tenant):
            return ClientFactory(tenant=tenant, name=f"{label} {tenant.pk}")

        for offset in (20, 45, 70, 100):
            doc = DocumentFactory(
                tenant=tenant,
                client=client(f"Doc{offset}"),
                document_type=tin,
                expires_on=start_day + timedelta(days=offset),
            )
            firm.documents.append((doc, offset))
        dues = [start_day + timedelta(days=d) for d in (30, 61)]
        dues.append(date(2027, 5, 15))  # a Saturday
        if holiday_due:
            dues.append(holiday_due)
        for due in dues:
            filing = FilingFactory(
                tenant=tenant, client=client(f"Filing{due:%m%d}"), due_date=due, period=f"{due:%Y-%m}"
            )
            FilingTaskFactory(filing=filing, assignee=firm.people["tax_preparer"])
            firm.filings.append(filing)
        made.append(firm)
    la, utc = made[3], made[4]
    # A US federal filing of the Los Angeles firm follows DC's holidays: Emancipation Day, Friday 16 April 2027.
    federal = FilingFactory(
        tenant=la.tenant,
        client=ClientFactory(tenant=la.tenant, name=f"Federal {la.tenant.pk}"),
        due_date=date(2027, 4, 16),
        holiday_country="US",
        holiday_subdivision="DC",
    )
    la.filings.append(federal)
    # An overdue filing of the UTC firm, filed 25 days late.
    overdue = FilingFactory(
        tenant=utc.tenant,
        client=ClientFactory(tenant=utc.tenant, name=f"Late {utc.tenant.pk}"),
        due_date=date(2027, 2, 24),
    )
    utc.filings.append(overdue)
    # Preferences: a digest reader in an "immediately" firm, someone who turned a kind off,
    # someone who turned escalations off in a digest firm, and a change of mind on day 50.
    NotificationPreference.objects.create(
        tenant=utc.tenant, user=utc.people["tax_preparer"], kind="filing_reminder", email="daily_digest"
    )
    NotificationPreference.objects.create(
        tenant=made[1].tenant, user=made[1].people["manager"], kind="filing_reminder", email="off"
    )
    NotificationPreference.objects.create(
        tenant=made[1].tenant, user=made[1].people["admin"], kind="document_expiry", email="daily_digest"
    )
    NotificationPreference.objects.create(
        tenant=utc.tenant, user=utc.people["manager"], kind="filing_escalation", email="off"
    )
    return made


@dataclass
class Journal:
    """What the simulation saw: each email's tick, and each preference in force when items were made."""

    email_tick: dict[int, datetime] = field(default_factory=dict)


def run_jobs() -> None:
    """Run the product jobs the fan-outs deferred, in this process; then clear the jobs table."""
    deferred = list(ProcrastinateJob.objects.order_by("id").values_list("task_name", "args"))
    for task_name, args in deferred:
        if task_name in TASKS:
            TASKS[task_name](**args)
    if deferred:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM procrastinate_jobs")


def simulate(firms: list[Firm]) -> Journal:
    journal = Journal()
    nairobi, kolkata, utc = firms[2], firms[1], firms[4]
    renewed_doc, _ = nairobi.documents[1]
    overdue = utc.filings[-1]
    last_email = 0
    _already_run_before(firms, START)
    with time_machine.travel(START, tick=False) as clock:
        for hour in range(HOURS):
            tick = START + timedelta(hours=hour)
            clock.move_to(tick)
            mornings_fan_out(at=tick)
            run_jobs()
            digests_fan_out(at=tick)
            run_jobs()
            for pk in OutboundEmail.objects.filter(pk__gt=last_email).values_list("pk", flat=True):
                journal.email_tick[pk] = tick
                last_email = max(last_email, pk)
            _events(tick, nairobi, kolkata, utc, renewed_doc, overdue)
    return journal


def _already_run_before(firms: list[Firm], at: datetime) -> None:
    """The system has been running: the local day under way at the start had its morning and
    digest already if their hour had passed (otherwise the first tick would catch them up)."""
    for firm in firms:
        now = at.astimezone(firm.zone)
        if now.hour >= 8:
            MorningRun.objects.create(tenant=firm.tenant, local_date=now.date())
        if now.hour >= 9:
            DigestRun.objects.create(tenant=firm.tenant, local_date=now.date())


RENEWAL_DAY = date(2027, 3, 21)  # Nairobi's document expiring on 31 March, 10 days left: renewed after its morning
FILED_DAY = date(2027, 3, 22)  # the overdue filing, 26 days past its due date
CHANGE_DAY = date(2027, 4, 5)  # Kolkata's admin turns document expiry emails off


def _events(tick, nairobi, kolkata, utc, renewed_doc, overdue) -> None:
    if tick == datetime.combine(RENEWAL_DAY, time(8, 30), tzinfo=nairobi.zone).astimezone(UTC).replace(minute=0):
        # After the 08:00 morning (its 30-day item waits for the 09:00 digest), before the digest.
        DocumentFactory(
            tenant=nairobi.tenant,
            client=renewed_doc.client,
            document_type=renewed_doc.document_type,
            expires_on=renewed_doc.expires_on + timedelta(days=365),
        )
    if tick == datetime.combine(FILED_DAY, time(12), tzinfo=UTC):
        Filing.objects.filter(pk=overdue.pk).update(status="submitted")
    if tick == datetime.combine(CHANGE_DAY, time(12), tzinfo=UTC):
        NotificationPreference.objects.filter(tenant=kolkata.tenant, user=kolkata.people["admin"]).update(email="off")


# --- The oracle --------------------------------------------------------------------------------


def crossing(days_by_day: list[tuple[date, int]], thresholds: list[int]) -> list[tuple[date, int]]:
    """(day, threshold) sent by daily runs under the crossing rule."""
    sent: list[int] = []
    out = []
    for day, days in days_by_day:
        if days < 0:
            continue
        crossed = [t for t in thresholds if days <= t]
        if not crossed:
            continue
        due = min(crossed)
        if any(t <= due for t in sent):
            continue
        sent.append(due)
        out.append((day, due))
    return out


def expected(firms: list[Firm]) -> set[tuple[str, int, int, int, date]]:
    """(kind, object id, threshold or step, recipient id, local day made) of every due reminder."""
    out = set()
    for firm in firms:
        mornings = firm.mornings()
        people = firm.people
        expiry_days = firm.tenant.expiry_reminder_days or [30, 14, 7]
        filing_days = firm.tenant.filing_reminder_days or [14, 7, 3]
        for doc, _ in firm.documents:
            renewed = firm.tenant.timezone == "Africa/Nairobi" and doc.expires_on == date(2027, 3, 31)
            days = [(d, (doc.expires_on - d).days) for d in mornings if not (renewed and d > RENEWAL_DAY)]
            for day, threshold in crossing(days, expiry_days):
                out |= {("document_expiry", doc.pk, threshold, people[r].pk, day) for r in EXPIRY_ROLES}
        for filing in firm.filings:
            calendar = calendar_of(
                country=firm.tenant.holiday_country,
                subdivision=firm.tenant.holiday_subdivision,
                override_country=filing.holiday_country,
                override_subdivision=filing.holiday_subdivision,
            )
            due = effective_due_date(due=filing.due_date, calendar=calendar).effective
            filed = filing.client.name.startswith("Late")
            for day, threshold in crossing([(d, (due - d).days) for d in mornings], filing_days):
                out |= {("filing_reminder", filing.pk, threshold, people[r].pk, day) for r in FILING_ROLES}
            for day in mornings:
                overdue_by = (day - due).days
                if overdue_by >= 1 and (overdue_by - 1) % 7 == 0 and not (filed and day > FILED_DAY):
                    out |= {("filing_escalation", filing.pk, overdue_by, people[r].pk, day) for r in ESCALATION_ROLES}
    return out


def actual() -> set[tuple[str, int, int, int, date]]:
    out = set()
    for key, recipient, data in Notification.objects.values_list("dedupe_key", "recipient_id", "data"):
        kind, rest = key.split(":", 1)
        object_part, threshold, _ = rest.split(":")
        out.add((kind, int(object_part.split("@")[0]), int(threshold), recipient, date.fromisoformat(data["asOf"])))
    return out


# --- The test ----------------------------------------------------------------------------------


def test_120_days_of_local_mornings_digests_holidays_and_escalations(firms):
    journal = simulate(firms)
    zones = {firm.tenant.pk: firm.zone for firm in firms}
    emails = {
        pk: (tenant_id, template)
        for pk, tenant_id, template in OutboundEmail.objects.values_list("pk", "tenant_id", "template")
    }
    assert set(emails) == set(journal.email_tick)
    local = {pk: tick.astimezone(zones[emails[pk][0]]) for pk, tick in journal.email_tick.items()}

    # Every due reminder, exactly once (the dedupe key is unique; the oracle says which are due).
    assert actual() == expected(firms)

    # ... reaching its recipient once: now, or in one digest of the same local day.
    notifications = list(Notification.objects.select_related("digest__outbound_email"))
    statuses = Counter(n.email_status for n in notifications)
    assert set(statuses) <= {"queued", "digested", "opted_out", "resolved"}, statuses
    emails_of = Counter(OutboundEmail.objects.exclude(notification=None).values_list("notification_id", flat=True))
    for n in notifications:
        made_for = date.fromisoformat(n.data["asOf"])
        if n.email_status == "queued":
            [email_pk] = OutboundEmail.objects.filter(notification=n).values_list("pk", flat=True)
            assert emails_of[n.pk] == 1
            assert (local[email_pk].date(), local[email_pk].hour) == (made_for, 8)
        else:
            assert emails_of[n.pk] == 0
        if n.email_status == "digested":
            sent_at = local[n.digest.outbound_email_id]
            assert (n.digest.local_date, sent_at.date(), sent_at.hour) == (made_for, made_for, 9)
    assert statuses["digested"] > 50 and statuses["queued"] > 50

    # Opted out exactly where the person's choice was off when the item was made.
    kolkata, utc = firms[1], firms[4]
    opted = Counter(
        (n.recipient_id, n.kind, date.fromisoformat(n.data["asOf"]) >= CHANGE_DAY)
        for n in notifications
        if n.email_status == "opted_out"
    )
    assert set(opted) <= {
        (kolkata.people["manager"].pk, "filing_reminder", False),
        (kolkata.people["manager"].pk, "filing_reminder", True),
        (kolkata.people["admin"].pk, "document_expiry", True),
        (utc.people["manager"].pk, "filing_escalation", False),
        (utc.people["manager"].pk, "filing_escalation", True),
    }
    assert (utc.people["manager"].pk, "filing_escalation", False) in opted
    assert (kolkata.people["admin"].pk, "document_expiry", True) in opted

    # Left out of its digest: the Nairobi document renewed between its morning and its digest.
    resolved = [n for n in notifications if n.email_status == "resolved"]
    assert {(n.data["documentId"], n.data["resolvedBecause"]) for n in resolved} == {
        (firms[2].documents[1][0].pk, "renewed")
    }

    # Nothing is sent at another local hour than the firm's.
    hours = Counter((emails[pk][1] == "daily-digest", at.hour) for pk, at in local.items())
    assert set(hours) == {(False, 8), (True, 9)}, hours

    # No item text disagrees with its digest's date.
    for digest in Digest.objects.select_related("outbound_email"):
        _check_digest_text(digest)

    # A Saturday-due filing and a holiday-due filing count to their business day.
    due_dates = {
        (n.data["statutoryDueDate"], n.data["dueDate"], n.data["dueNote"])
        for n in notifications
        if n.kind == "filing_reminder"
    }
    assert ("2027-05-15", "2027-05-17", "moved from Saturday 15 May: weekend") in due_dates  # US, KE, IN, NZ
    assert ("2027-05-15", "2027-05-15", "") in due_dates  # the UTC firm has no calendar
    assert ("2027-04-16", "2027-04-19", "moved from Friday 16 April: Emancipation Day, weekend") in due_dates
    assert ("2027-03-26", "2027-03-30", "moved from Friday 26 March: Good Friday, weekend, Easter Monday") in due_dates

    # The escalation repeated weekly and stopped at filing.
    steps = defaultdict(list)
    late = utc.filings[-1]
    for n in notifications:
        if n.kind == "filing_escalation" and n.data["filingId"] == late.pk:
            steps[n.recipient_id].append(n.data["daysOverdue"])
    assert {k: sorted(v) for k, v in steps.items()} == {
        utc.people["admin"].pk: [1, 8, 15, 22],
        utc.people["manager"].pk: [1, 8, 15, 22],
    }


WORDS = re.compile(r"(expires|is due|was due|expired) (today|tomorrow|yesterday|in \d+ days|\d+ days ago)")


def _check_digest_text(digest: Digest) -> None:
    email = digest.outbound_email
    text = email_render(template=email.template, subject=email.subject, data=email.context, tenant_name="F").text
    assert long_day(digest.local_date) in text  # the date line
    expected_words = Counter()
    for data in Notification.objects.filter(digest=digest).values_list("data", flat=True):
        on = date.fromisoformat(data.get("expiresOn") or data["dueDate"])
        verb = "expires" if "expiresOn" in data else "is due"
        expected_words[f"for {data['clientName']} {verb} {when((on - digest.local_date).days)}"] += 1
    found = Counter(
        f"for {m.group(1)} {m.group(2)} {m.group(3)}" for m in re.finditer(r"for (\S+ \d+) " + WORDS.pattern, text)
    )
    assert found == expected_words, (digest.local_date, text)
